"""The one error type of the dataset package."""


class DatasetError(ValueError):
    """A dataset file or key is missing or malformed.

    The message always names the file (relative to the dataset root where possible) or the key, so a
    user can fix the dataset or the configuration without reading a stack trace.
    """

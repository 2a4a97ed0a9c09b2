"""Exceptions the model core raises for problems a user can fix (as opposed to bugs)."""


class CheckpointError(RuntimeError):
    """A run folder, checkpoint or base VLM folder cannot become an InternVLA-M1 model.

    The message always names the file involved and says what was expected, so that front ends
    (the CLI, the ROS nodes) can print it as-is instead of a stack trace.
    """

"""LeRobot v2.x datasets for training and replay: reading, writing, normalisation statistics (ROS-free).

`torch_dataset.TorchLeRobotDataset` (imported on its own, it needs torch) wraps the reader for loaders.
"""

from .errors import DatasetError
from .lerobot import LeRobotDataset, MissingVideo, Sample
from .meta import ColumnSlice, DatasetMeta, Episode
from .replay import ActionError, ActionErrorLog, FrameStamps, ReplayEpisode, read_error_file
from .statistics import (
    DatasetStatistics,
    FeatureStatistics,
    compute_statistics,
    feature_statistics,
    normalize,
    read_statistics,
    write_statistics,
)
from .video import VideoDecoder
from .writer import EpisodeRecord, LeRobotWriter, encode_video, write_dataset, write_jsonl

__all__ = [
    "ActionError",
    "ActionErrorLog",
    "ColumnSlice",
    "DatasetError",
    "DatasetMeta",
    "DatasetStatistics",
    "Episode",
    "EpisodeRecord",
    "FeatureStatistics",
    "FrameStamps",
    "LeRobotDataset",
    "LeRobotWriter",
    "MissingVideo",
    "ReplayEpisode",
    "Sample",
    "VideoDecoder",
    "compute_statistics",
    "encode_video",
    "feature_statistics",
    "normalize",
    "read_error_file",
    "read_statistics",
    "write_dataset",
    "write_jsonl",
    "write_statistics",
]

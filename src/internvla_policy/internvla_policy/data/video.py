"""Frames of one camera's mp4, looked up by timestamp, decoded with PyAV.

LeRobot stores a frame's time in the parquet `timestamp` column and the pixels in the mp4 frame
presented at that time, so frames are found by presentation time, not by counting. Reading an
episode in order (training iteration, replay) must not seek for every frame: the decoder keeps its
position and only seeks (to the keyframe before the target) when asked to go backwards or far ahead.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from .errors import DatasetError

SEEK_AHEAD_S = 1.0
"""Decode forward instead of seeking when the target is at most this far ahead of the last frame."""


class VideoDecoder:
    """Random and sequential access to the RGB frames of one video file."""

    def __init__(self, path: Path, fps: float):
        if not path.is_file():
            raise DatasetError(f"{path}: video file not found")
        self.path = path
        self._tolerance = 0.5 / fps
        try:
            self._container = av.open(str(path))
        except av.error.FFmpegError as err:
            raise DatasetError(f"{path}: cannot open video ({err})") from err
        if not self._container.streams.video:
            self._container.close()
            raise DatasetError(f"{path}: has no video stream")
        self._stream = self._container.streams.video[0]
        self._time_base = float(self._stream.time_base)
        self._start = self._stream.start_time or 0
        self._frames = None
        self._last_time: float | None = None
        self._last_rgb: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames, from the stream header."""
        return self._stream.codec_context.height, self._stream.codec_context.width

    def frame_at(self, timestamp: float) -> np.ndarray:
        """The frame presented at `timestamp` (seconds from the start), as read-only [H, W, 3] uint8 RGB.

        The frame must lie within half a frame period of the timestamp; otherwise the video and the
        parquet disagree and that is reported rather than papered over with a neighbouring frame.
        """
        if self._last_time is not None and abs(self._last_time - timestamp) <= self._tolerance:
            return self._last_rgb
        if (
            self._frames is None
            or self._last_time is None
            or timestamp < self._last_time
            or timestamp > self._last_time + SEEK_AHEAD_S
        ):
            self._seek(timestamp)
        try:
            for frame in self._frames:
                if frame.pts is None:
                    continue
                time = (frame.pts - self._start) * self._time_base
                if time < timestamp - self._tolerance:
                    continue
                if time > timestamp + self._tolerance:
                    raise DatasetError(
                        f"{self.path}: no frame at {timestamp:.4f} s (the next is at {time:.4f} s)"
                    )
                self._last_time = time
                self._last_rgb = frame.to_ndarray(format="rgb24")
                self._last_rgb.flags.writeable = False  # handed out again for the same timestamp
                return self._last_rgb
        except av.error.FFmpegError as err:
            raise DatasetError(f"{self.path}: cannot decode near {timestamp:.4f} s ({err})") from err
        self._frames = None
        raise DatasetError(f"{self.path}: the video ends before {timestamp:.4f} s")

    def _seek(self, timestamp: float) -> None:
        target = max(timestamp - self._tolerance, 0.0)
        try:
            self._container.seek(
                int(target / self._time_base) + self._start,
                stream=self._stream,
                backward=True,
                any_frame=False,
            )
        except av.error.FFmpegError as err:
            raise DatasetError(f"{self.path}: cannot seek to {timestamp:.4f} s ({err})") from err
        self._frames = self._container.decode(self._stream)
        self._last_time = None
        self._last_rgb = None

    def close(self) -> None:
        """Release the file and the decoder."""
        self._container.close()

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""VideoDecoder across several GOPs: forward reads, backward and far seeks all land on the right frame."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_policy.data import DatasetError, VideoDecoder, encode_video

FPS = 20
FRAMES = 60


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """60 frames, keyframe every 8; frame k is a uniform grey of 4 * k."""
    path = tmp_path_factory.mktemp("video") / "grey.mp4"
    frames = np.stack([np.full((16, 24, 3), 4 * k, np.uint8) for k in range(FRAMES)])
    encode_video(path, frames, FPS, gop=8)
    return path


def test_frames_found_by_timestamp_in_any_order(video):
    order = [0, 1, 2, 30, 31, 5, 59, 58, 9, 40, 17, 16, 57]  # forward steps, backward and far jumps
    with VideoDecoder(video, FPS) as decoder:
        assert decoder.size == (16, 24)
        for k in order:
            image = decoder.frame_at(k / FPS)
            assert image.shape == (16, 24, 3)
            assert abs(float(image.mean()) - 4 * k) < 2, k
        assert not decoder.frame_at(57 / FPS).flags.writeable


def test_timestamp_past_the_end_is_reported(video):
    with (
        VideoDecoder(video, FPS) as decoder,
        pytest.raises(DatasetError, match=r"grey\.mp4: the video ends before 3\.0000 s"),
    ):
        decoder.frame_at(FRAMES / FPS)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"absent\.mp4: video file not found"):
        VideoDecoder(tmp_path / "absent.mp4", FPS)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all")
    with pytest.raises(DatasetError, match=r"corrupt\.mp4: cannot open video"):
        VideoDecoder(corrupt, FPS)

"""Image payload decoding and encoding without cv_bridge."""

from __future__ import annotations

import array
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from internvla_policy.vision.imaging import (
    SUPPORTED_ENCODINGS,
    ImageFormatError,
    decode_compressed,
    decode_image,
    depth_to_metres,
    encode_compressed,
    encode_image,
    to_rgb8,
)

RNG = np.random.default_rng(7)


def random_pixels(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    channels, dtype = SUPPORTED_ENCODINGS[encoding]
    shape = (height, width, channels) if channels > 1 else (height, width)
    if dtype.kind == "f":
        return RNG.uniform(0.1, 9.0, shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def fields(encoded, **overrides) -> dict:
    values = {
        "encoding": encoded.encoding,
        "width": encoded.width,
        "height": encoded.height,
        "step": encoded.step,
        "data": encoded.data,
        "is_bigendian": encoded.is_bigendian,
    }
    return {**values, **overrides}


@pytest.mark.parametrize("encoding", list(SUPPORTED_ENCODINGS))
def test_every_encoding_round_trips(encoding):
    pixels = random_pixels(encoding)
    encoded = encode_image(pixels, encoding)
    channels, dtype = SUPPORTED_ENCODINGS[encoding]
    assert (encoded.width, encoded.height) == (7, 5)
    assert encoded.step == 7 * channels * dtype.itemsize
    assert len(encoded.data) == encoded.step * 5
    decoded = decode_image(**fields(encoded))
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, pixels)
    # rclpy hands the payload over as array.array('B'), not bytes.
    np.testing.assert_array_equal(
        decode_image(**fields(encoded, data=array.array("B", encoded.data))), pixels
    )


def test_rows_with_padding_are_cropped_to_the_width():
    pixels = random_pixels("rgb8", 4, 3)
    step = 3 * 3 + 7  # 7 padding bytes per row, as some drivers align rows
    padded = np.zeros((4, step), np.uint8)
    padded[:, :9] = pixels.reshape(4, 9)
    padded[:, 9:] = 255
    decoded = decode_image(encoding="rgb8", width=3, height=4, step=step, data=padded.tobytes())
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian_depth_is_read_in_its_byte_order(encoding):
    pixels = random_pixels(encoding)
    big = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    itemsize = pixels.dtype.itemsize
    decoded = decode_image(
        encoding=encoding, width=7, height=5, step=7 * itemsize, data=big, is_bigendian=True
    )
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.dtype.isnative


def test_colour_conversions_to_rgb():
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    assert to_rgb8(rgb, "rgb8").tolist() == [[[10, 20, 30]]]
    assert to_rgb8(np.array([[[30, 20, 10]]], np.uint8), "bgr8").tolist() == [[[10, 20, 30]]]
    assert to_rgb8(np.array([[[10, 20, 30, 99]]], np.uint8), "rgba8").tolist() == [[[10, 20, 30]]]
    assert to_rgb8(np.array([[[30, 20, 10, 99]]], np.uint8), "bgra8").tolist() == [[[10, 20, 30]]]
    assert to_rgb8(np.array([[77]], np.uint8), "mono8").tolist() == [[[77, 77, 77]]]
    with pytest.raises(ImageFormatError, match="'16UC1' is not a colour encoding"):
        to_rgb8(np.zeros((1, 1), np.uint16), "16UC1")


def test_depth_in_metres_marks_missing_readings_nan():
    millimetres = np.array([[0, 1000, 65535]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(millimetres, "16UC1"), [[np.nan, 1.0, 65.535]], rtol=1e-6)
    metres = np.array([[np.nan, np.inf, -1.0, 0.0, 2.5]], np.float32)
    np.testing.assert_array_equal(depth_to_metres(metres, "32FC1"), [[np.nan, np.nan, np.nan, np.nan, 2.5]])
    assert np.isnan(metres[0, 0]) and metres[0, 4] == 2.5  # the input is not modified
    with pytest.raises(ImageFormatError, match="not a depth encoding"):
        depth_to_metres(np.zeros((1, 1), np.uint8), "mono8")


GOOD = {"encoding": "rgb8", "width": 4, "height": 2, "step": 12, "data": bytes(24)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
        ({"encoding": ""}, "unsupported encoding ''"),
        ({"width": 0, "step": 0, "data": b""}, r"zero-size image \(0x2\)"),
        ({"height": 0, "data": b""}, r"zero-size image \(4x0\)"),
        ({"step": 11, "data": bytes(22)}, "step 11 is smaller than width \\* bytes per pixel = 12"),
        ({"data": bytes(23)}, "data has 23 bytes, expected step \\* height = 12 \\* 2"),
        ({"data": bytes(25)}, "data has 25 bytes"),
        ({"encoding": "16UC1", "step": 9, "data": bytes(18)}, "not a multiple of the 2-byte element"),
    ],
)
def test_inconsistent_fields_are_rejected(overrides, message):
    with pytest.raises(ImageFormatError, match=message):
        decode_image(**{**GOOD, **overrides})


def test_the_pixel_budget_is_checked_before_the_data():
    # An 8000x8000 header with no data: rejected for its size, the data is never looked at.
    with pytest.raises(ImageFormatError, match="8000x8000 exceeds the limit of 16777216 pixels"):
        decode_image(encoding="rgb8", width=8000, height=8000, step=24000, data=b"", max_pixels=4096 * 4096)


@pytest.mark.parametrize(
    ("pixels", "encoding", "message"),
    [
        (np.zeros((2, 2), np.uint8), "rgb8", "does not fit rgb8"),
        (np.zeros((2, 2, 3), np.float32), "rgb8", "float32 does not fit rgb8"),
        (np.zeros((2, 2, 3), np.uint8), "16UC1", "does not fit 16UC1"),
        (np.zeros((0, 2, 3), np.uint8), "rgb8", "zero-size"),
    ],
)
def test_encoding_checks_the_array(pixels, encoding, message):
    with pytest.raises(ImageFormatError, match=message):
        encode_image(pixels, encoding)


def test_png_round_trip_is_exact_and_jpeg_is_close():
    rgb = RNG.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    np.testing.assert_array_equal(decode_compressed(encode_compressed(rgb, "png")), rgb)
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    jpeg = decode_compressed(encode_compressed(smooth, "jpeg", quality=95))
    assert jpeg.shape == (48, 64, 3)
    assert np.abs(jpeg.astype(int) - smooth).mean() < 2.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_compressed_images_of_any_mode_come_out_rgb(mode):
    buffer = io.BytesIO()
    PILImage.new(mode, (5, 3)).save(buffer, format="PNG")
    decoded = decode_compressed(buffer.getvalue())
    assert decoded.shape == (3, 5, 3) and decoded.dtype == np.uint8


def png_without_pixels(width: int, height: int) -> bytes:
    """A PNG that claims width x height but whose image data is empty (cheap to send, cannot decode)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_compressed_pixel_budget_is_checked_from_the_header():
    start = time.perf_counter()
    with pytest.raises(ImageFormatError, match="8000x8000 exceeds the limit"):
        decode_compressed(png_without_pixels(8000, 8000), max_pixels=4096 * 4096)
    assert time.perf_counter() - start < 0.5  # nothing was decompressed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "cannot decode compressed image"),
        (b"not an image at all", "cannot decode compressed image"),
        (png_without_pixels(4, 4), "cannot decode compressed image"),  # no IDAT: truncated
    ],
)
def test_undecodable_compressed_data(data, message):
    with pytest.raises(ImageFormatError, match=message):
        decode_compressed(data)


def test_truncated_jpeg_and_other_formats_are_rejected():
    jpeg = encode_compressed(RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8), "jpeg")
    with pytest.raises(ImageFormatError, match="cannot decode"):
        decode_compressed(jpeg[: len(jpeg) // 2])
    gif = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(ImageFormatError, match="compressed data is GIF, expected JPEG or PNG"):
        decode_compressed(gif.getvalue())
    with pytest.raises(ImageFormatError, match="unsupported compressed format 'webp'"):
        encode_compressed(np.zeros((2, 2, 3), np.uint8), "webp")

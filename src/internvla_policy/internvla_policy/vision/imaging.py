"""sensor_msgs image payloads <-> numpy, without cv_bridge (not installable from the registries).

Works on the message's fields (encoding, width, height, step, data, is_bigendian) so it needs no
ROS import and can be tested on plain bytes. Every size field is checked against the others before
the data is touched, and the pixel budget is checked before anything is allocated or decompressed:
a malformed or oversized frame from the network must cost nothing and raise ImageFormatError,
never crash the caller.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

SUPPORTED_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    # encoding: (channels, element type)
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "16UC1": (1, np.dtype(np.uint16)),
    "32FC1": (1, np.dtype(np.float32)),
}
COLOR_ENCODINGS = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "mono8"})
DEPTH_ENCODINGS = frozenset({"16UC1", "32FC1"})
COMPRESSED_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class ImageFormatError(ValueError):
    """The fields of an image message do not describe an image we can use."""


@dataclass(frozen=True)
class EncodedImage:
    """The payload fields of a sensor_msgs/Image (little-endian, rows packed: step = width * pixel bytes)."""

    encoding: str
    width: int
    height: int
    step: int
    data: bytes
    is_bigendian: bool = False


def check_size(width: int, height: int, max_pixels: int | None = None) -> None:
    """Reject empty images and images over the pixel budget before their data is looked at."""
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"zero-size image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageFormatError(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")


def decode_image(
    *,
    encoding: str,
    width: int,
    height: int,
    step: int,
    data,
    is_bigendian: bool = False,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Return the pixels as [H, W, C] (colour) or [H, W] (mono, depth) in native byte order.

    `data` is any bytes-like object (rclpy gives array.array). The result may be a read-only
    view of `data`: copy it before writing.
    """
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageFormatError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    check_size(width, height, max_pixels)
    channels, dtype = SUPPORTED_ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width * bytes per pixel = {row_bytes} for {width} px of {encoding}"
        )
    if step % dtype.itemsize:
        raise ImageFormatError(
            f"step {step} is not a multiple of the {dtype.itemsize}-byte element of {encoding}"
        )
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != step * height:
        raise ImageFormatError(f"data has {raw.size} bytes, expected step * height = {step} * {height}")
    rows = raw.reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if is_bigendian else "<"))
    pixels = pixels.astype(dtype, copy=False)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def to_rgb8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Colour pixels as decoded by decode_image -> [H, W, 3] uint8 RGB (alpha dropped, mono replicated)."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageFormatError(
            f"{encoding!r} is not a colour encoding (expected one of {sorted(COLOR_ENCODINGS)})"
        )
    if encoding == "rgb8":
        return pixels
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding == "rgba8":
        return pixels[:, :, :3]
    return pixels[:, :, 2::-1]  # bgr8 and bgra8: channels 2, 1, 0


def depth_to_metres(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Depth pixels -> float32 metres, NaN where there is no valid reading.

    REP-118: 16UC1 is millimetres with 0 = no reading; 32FC1 is metres with NaN/inf = no
    reading. Zero or negative metres are also treated as invalid.
    """
    if encoding == "16UC1":
        metres = pixels.astype(np.float32) * np.float32(0.001)
    elif encoding == "32FC1":
        metres = pixels.astype(np.float32, copy=True)
    else:
        raise ImageFormatError(
            f"{encoding!r} is not a depth encoding (expected one of {sorted(DEPTH_ENCODINGS)})"
        )
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def encode_image(pixels: np.ndarray, encoding: str) -> EncodedImage:
    """Pack an array as the payload of a sensor_msgs/Image with the given encoding."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageFormatError(f"unsupported encoding {encoding!r}")
    channels, dtype = SUPPORTED_ENCODINGS[encoding]
    expected_ndim = 3 if channels > 1 else 2
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ImageFormatError(
            f"array of shape {pixels.shape} does not fit {encoding} ({channels} channel(s))"
        )
    if pixels.dtype != dtype:
        raise ImageFormatError(f"array of {pixels.dtype} does not fit {encoding} ({dtype})")
    height, width = pixels.shape[:2]
    check_size(width, height)
    data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<")).tobytes()
    return EncodedImage(encoding, width, height, width * channels * dtype.itemsize, data)


def decode_compressed(data, max_pixels: int | None = None) -> np.ndarray:
    """JPEG or PNG bytes (a sensor_msgs/CompressedImage payload) -> [H, W, 3] uint8 RGB.

    The format comes from the data itself, not the message's free-form `format` string. The
    header is read first so that an oversized image is rejected before it is decompressed.
    """
    try:
        with PILImage.open(io.BytesIO(bytes(data))) as image:
            if image.format not in COMPRESSED_FORMATS.values():
                raise ImageFormatError(f"compressed data is {image.format}, expected JPEG or PNG")
            check_size(image.width, image.height, max_pixels)
            return np.asarray(image.convert("RGB"))
    except ImageFormatError:
        raise
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise ImageFormatError(f"cannot decode compressed image: {exc}") from exc


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """[H, W, 3] uint8 RGB -> JPEG or PNG bytes."""
    if fmt not in COMPRESSED_FORMATS:
        raise ImageFormatError(
            f"unsupported compressed format {fmt!r} (supported: {', '.join(COMPRESSED_FORMATS)})"
        )
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt == "jpeg" else {}
    PILImage.fromarray(rgb, "RGB").save(buffer, format=COMPRESSED_FORMATS[fmt], **options)
    return buffer.getvalue()

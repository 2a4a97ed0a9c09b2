"""msgpack frames with numpy arrays, encoded the way openpi's and upstream's clients encode them.

An array travels as the map ``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": <numpy dtype
string>, b"shape": [...]}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": <item>,
b"dtype": ...}`` (openpi-client's ``msgpack_numpy``; upstream InternVLA-M1 ships a copy). Anything
that speaks that format interoperates with the server and the remote backend.

Decoding is strict because the bytes come from the network: only bool, integer and float dtypes,
a shape that is a short list of non-negative integers, and exactly as many data bytes as the shape
and dtype need. Anything else is a :class:`WireError`, never an object array or a crash.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

ARRAY_KINDS = "biuf"
"""numpy dtype kinds an array may have: bool, signed and unsigned integers, floats."""
MAX_ARRAY_DIMS = 8


class WireError(ValueError):
    """Bytes that are not a msgpack frame of this protocol (malformed, or an unsupported array)."""


def pack(obj: Any) -> bytes:
    """One msgpack frame; numpy arrays and scalars inside ``obj`` use openpi's array encoding."""
    return msgpack.packb(obj, default=_encode)


def unpack(data: bytes) -> Any:
    """Decode one frame; raises WireError for anything that is not well-formed msgpack of this protocol."""
    try:
        return msgpack.unpackb(data, object_hook=_decode)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise WireError(f"not a msgpack frame: {type(err).__name__}: {err}") from None


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        _check_dtype(array.dtype)
        return {
            b"__ndarray__": True,
            b"data": array.tobytes(),
            b"dtype": array.dtype.str,
            b"shape": array.shape,
        }
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return _decode_array(obj)
    if b"__npgeneric__" in obj:
        dtype = _read_dtype(obj.get(b"dtype"))
        value = obj.get(b"data")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WireError("numpy scalar: data must be a number")
        try:
            return dtype.type(value)
        except (OverflowError, ValueError) as err:
            raise WireError(f"numpy scalar: {err}") from None
    return obj


def _decode_array(obj: dict) -> np.ndarray:
    dtype = _read_dtype(obj.get(b"dtype"))
    shape, data = obj.get(b"shape"), obj.get(b"data")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_ARRAY_DIMS:
        raise WireError(f"array: shape must be a list of at most {MAX_ARRAY_DIMS} sizes")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WireError(f"array: shape {shape!r} must hold non-negative integers")
    if not isinstance(data, bytes):
        raise WireError("array: data must be bytes")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise WireError(
            f"array: {len(data)} data bytes for shape {list(shape)} of {dtype} ({expected} needed)"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _read_dtype(text: Any) -> np.dtype:
    if not isinstance(text, str) or len(text) > 8:
        raise WireError("array: dtype must be a short numpy dtype string such as '|u1' or '<f4'")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise WireError(f"array: unknown dtype {text!r}") from None
    _check_dtype(dtype)
    return dtype


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"unsupported dtype {dtype.str!r}: only bool, integer and float arrays travel")

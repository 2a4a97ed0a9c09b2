"""Deterministic messages with a non-default value in every field, for round-trip tests.

Filling fields by introspection instead of by hand means a field added to a .msg file is
covered by the round-trip test without anyone remembering to extend it.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from internvla_msgs.msg import (
    ActionChunk,
    BoundingBox2D,
    Keypoint2D,
    Point2D,
    PolicyStatus,
    SpatialPrompt,
    Trace2D,
)
from internvla_msgs.srv import Ground

MESSAGE_TYPES = (Point2D, BoundingBox2D, Keypoint2D, Trace2D, SpatialPrompt, ActionChunk, PolicyStatus)

_INTEGER_TYPES = {
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "byte",
    "octet",
    "char",
}
_FLOAT_TYPES = {"float", "double", "float32", "float64"}


def _message_class(type_name: str) -> type:
    package, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _value(type_name: str, seed: int, field: str) -> Any:
    """A value that differs from the field's default and is exact in float32."""
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<") : -1].split(",")[0]
        return [_value(inner, seed + i + 1, field) for i in range(2)]
    fixed_array = re.fullmatch(r"(.+)\[(\d+)\]", type_name)
    if fixed_array:
        return [_value(fixed_array[1], seed + i + 1, field) for i in range(int(fixed_array[2]))]
    if type_name in _INTEGER_TYPES:
        return 1 + seed % 100
    if type_name in _FLOAT_TYPES:
        return seed + 0.5
    if type_name == "boolean":
        return True
    if type_name.startswith("string"):
        return f"{field}-{seed}"
    return fill(_message_class(type_name)(), seed)


def fill(message: Any, seed: int = 1) -> Any:
    """Set every field of ``message`` (recursively) to a seed-dependent non-default value."""
    for index, (field, type_name) in enumerate(message.get_fields_and_field_types().items()):
        setattr(message, field, _value(type_name, seed * 7 + index, field))
    return message


def differs_everywhere(message: Any, default: Any, path: str = "") -> list[str]:
    """Names of fields (dotted paths) still equal to the default; empty when all differ."""
    same = []
    for field in message.get_fields_and_field_types():
        value, reference = getattr(message, field), getattr(default, field)
        if hasattr(value, "get_fields_and_field_types"):
            same += differs_everywhere(value, reference, f"{path}{field}.")
        elif value == reference:
            same.append(path + field)
    return same


def ground_request() -> Ground.Request:
    return fill(Ground.Request(), seed=11)


def ground_response() -> Ground.Response:
    return fill(Ground.Response(), seed=13)

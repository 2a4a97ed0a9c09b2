"""What travels over the socket: requests as upstream's and openpi's clients send them, and replies.

Every frame is one msgpack map (``wire.py``). The server sends its metadata map first, right after
the websocket handshake. Requests then come in one of two shapes, routed as upstream's
``WebsocketPolicyServer`` routes them:

- typed: ``{"type": "ping" | "init" | "reset" | "infer", "request_id": ..., "payload": {...}}``
  (without ``payload`` the message's own keys are the payload);
- upstream's evaluation clients' plain map, no ``type``: a ``device`` key means init, a ``reset``
  key means reset, anything else is an inference payload.

An inference payload holds the keyword arguments of upstream's ``predict_action``: ``batch_images``
(per sample a list of HxWx3 uint8 views), ``instructions`` (one per sample), ``unnorm_key``,
``cfg_scale``, ``use_ddim``, ``num_ddim_steps``, ``do_sample`` (accepted and ignored, as upstream
does), plus two of ours: ``seed`` (the request's noise seed) and ``prompt_template`` (false: no CoT
template, the policy node's ``off`` spatial-prompt mode).

Replies keep upstream's envelope ``{"status", "ok", "type", "request_id", ...}``. An inference
reply's ``data`` holds ``normalized_actions`` [B, horizon, A] float32 (upstream's key), ``actions``
(unnormalised with the request's ``unnorm_key``, float64, gripper 0/1), ``unnorm_key``, ``timing``
(seconds: queue, forward, total) and ``batch`` (which forward served it and with how many others).
An error reply has ``status "error"``, ``ok false``, a ``message`` and ``error: {code, message,
field}``; upstream instead sends a traceback as a text frame and closes the connection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from internvla_policy.control.instruction import MAX_INSTRUCTION_LENGTH, instruction_problem

PROTOCOL = "internvla-m1-websocket/1"
REQUEST_TYPES = ("ping", "init", "reset", "infer")
MAX_REQUEST_ID_LENGTH = 128
MAX_SEED = 2**63 - 1


class ErrorCode:
    """The ``error.code`` values a client can branch on."""

    BAD_REQUEST = "bad_request"
    """The request is malformed or out of bounds; sending it again will fail again."""
    MALFORMED = "malformed_frame"
    """The frame is not msgpack of this protocol (or a text frame)."""
    INTERNAL = "internal"
    """The server failed on a valid request; the server log has the traceback."""
    SHUTTING_DOWN = "shutting_down"


class RequestError(ValueError):
    """A request the server refuses: a code, a message that says what to fix, and the offending field."""

    def __init__(self, message: str, field: str = "", code: str = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Limits:
    """Bounds on one inference request: the work and memory any one message can cause."""

    max_samples: int = 8
    max_views: int = 4
    max_image_side: int = 2048
    """Pixels; the shorter side must be at least ``min_image_side``."""
    min_image_side: int = 28
    """Pixels: Qwen's resize works in 28-pixel units."""
    max_instruction_length: int = MAX_INSTRUCTION_LENGTH
    max_cfg_scale: float = 100.0


@dataclass(frozen=True)
class InferRequest:
    """One validated inference request: B samples sharing the sampling settings and the unnorm key."""

    images: list[list[np.ndarray]]
    instructions: list[str]
    unnorm_key: str | None
    cfg_scale: float
    ddim_steps: int
    seed: int | None
    prompt_template: bool

    @property
    def size(self) -> int:
        return len(self.instructions)

    @property
    def view_sizes(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each view of the first sample (validation made every sample match it)."""
        return tuple((view.shape[1], view.shape[0]) for view in self.images[0])


@dataclass(frozen=True)
class Request:
    kind: str
    request_id: str | int
    infer: InferRequest | None = None


def request_id_of(message: Any) -> str | int:
    """The request id to echo, or upstream's ``"default"`` when there is none or it is unusable."""
    if isinstance(message, Mapping):
        rid = message.get("request_id", "default")
        if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= MAX_SEED:
            return rid
        if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID_LENGTH:
            return rid
    return "default"


def parse_request(message: Any, limits: Limits) -> Request:
    """Route and validate a decoded frame; raises RequestError naming the field at fault."""
    if not isinstance(message, Mapping):
        raise RequestError(f"a request is a msgpack map, got {_kind(message)}")
    rid = request_id_of(message)
    if "request_id" in message and message["request_id"] is not rid:
        raise RequestError(
            f"request_id must be a string of at most {MAX_REQUEST_ID_LENGTH} characters or an integer",
            "request_id",
        )
    if "type" in message:
        kind = message["type"]
        if not isinstance(kind, str) or kind not in REQUEST_TYPES:
            raise RequestError(f"type must be one of {list(REQUEST_TYPES)}, got {_short(kind)}", "type")
        payload = message.get("payload", message)
        where = "payload." if "payload" in message else ""
    else:
        kind = "init" if "device" in message else "reset" if "reset" in message else "infer"
        payload, where = message, ""
    if not isinstance(payload, Mapping):
        raise RequestError(f"payload must be a map, got {_kind(payload)}", "payload")
    if kind != "infer":
        return Request(kind, rid)
    return Request(kind, rid, parse_infer(payload, limits, where))


def parse_infer(payload: Mapping, limits: Limits, where: str = "") -> InferRequest:
    """An inference payload, every field checked (types, sizes, image dimensions, instruction text)."""
    images = _images(payload.get("batch_images"), limits, where + "batch_images")
    instructions = payload.get("instructions")
    if not isinstance(instructions, list) or len(instructions) != len(images):
        raise RequestError(
            f"instructions must be a list of {len(images)} strings, one per sample", where + "instructions"
        )
    for i, text in enumerate(instructions):
        if not isinstance(text, str):
            raise RequestError(f"expected a string, got {_kind(text)}", f"{where}instructions[{i}]")
        problem = instruction_problem(text, limits.max_instruction_length)
        if problem is not None:
            raise RequestError(problem, f"{where}instructions[{i}]")
    unnorm_key = _optional(payload, "unnorm_key", str, where)
    if payload.get("use_ddim", True) is not True:
        raise RequestError("only DDIM sampling is served: use_ddim must be true", where + "use_ddim")
    _optional(payload, "do_sample", bool, where)
    cfg_scale = _optional(payload, "cfg_scale", float, where, default=1.5)
    if not 0.0 <= cfg_scale <= limits.max_cfg_scale:
        raise RequestError(f"cfg_scale must be within [0, {limits.max_cfg_scale}]", where + "cfg_scale")
    ddim_steps = _optional(payload, "num_ddim_steps", int, where, default=10)
    seed = _optional(payload, "seed", int, where)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise RequestError(f"seed must be within [0, 2**63 - 1], got {seed}", where + "seed")
    template = _optional(payload, "prompt_template", bool, where, default=True)
    return InferRequest(images, list(instructions), unnorm_key, cfg_scale, ddim_steps, seed, template)


def ok_reply(kind: str, request_id: str | int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Upstream's success envelope: ``type`` is ``pong``, ``init_result``, ``reset_result`` or
    ``inference_result``."""
    result_type = {"ping": "pong", "infer": "inference_result"}.get(kind, f"{kind}_result")
    reply: dict[str, Any] = {"status": "ok", "ok": True, "type": result_type, "request_id": request_id}
    if data is not None:
        reply["data"] = data
    return reply


def error_reply(request_id: str | int, error: RequestError) -> dict[str, Any]:
    """A structured error; the connection stays open for the next request."""
    return {
        "status": "error",
        "ok": False,
        "type": "error",
        "request_id": request_id,
        "message": str(error),
        "error": {"code": error.code, "message": str(error), "field": error.field},
    }


def _images(value: Any, limits: Limits, field: str) -> list[list[np.ndarray]]:
    if not isinstance(value, list) or not 1 <= len(value) <= limits.max_samples:
        raise RequestError(
            f"expected a list of 1 to {limits.max_samples} samples, each a list of views", field
        )
    batch: list[list[np.ndarray]] = []
    for i, views in enumerate(value):
        if not isinstance(views, list) or not 1 <= len(views) <= limits.max_views:
            raise RequestError(f"expected a list of 1 to {limits.max_views} views", f"{field}[{i}]")
        batch.append([_image(view, limits, f"{field}[{i}][{j}]") for j, view in enumerate(views)])
    first = [view.shape for view in batch[0]]
    for i, views in enumerate(batch[1:], start=1):
        if [view.shape for view in views] != first:
            raise RequestError(
                f"every sample needs the same number and sizes of views as sample 0 {first}", f"{field}[{i}]"
            )
    return batch


def _image(value: Any, limits: Limits, field: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise RequestError(f"expected an HxWx3 uint8 numpy array (msgpack-numpy), got {_kind(value)}", field)
    if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        raise RequestError(
            f"expected an HxWx3 uint8 RGB array, got {value.dtype} of shape {list(value.shape)}", field
        )
    height, width = value.shape[:2]
    if min(height, width) < limits.min_image_side or max(height, width) > limits.max_image_side:
        raise RequestError(
            f"image of {width}x{height} pixels: each side must be within "
            f"[{limits.min_image_side}, {limits.max_image_side}]",
            field,
        )
    return value


def _optional(payload: Mapping, key: str, kind: type, where: str, default: Any = None) -> Any:
    """``payload[key]`` checked against ``kind`` (ints accepted for floats, bools never for numbers)."""
    value = payload.get(key)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RequestError(f"expected {kind.__name__}, got {_kind(value)}", where + key)
    if kind is float and not math.isfinite(value):
        raise RequestError(f"must be finite, got {value}", where + key)
    return value


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {list(value.shape)}"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

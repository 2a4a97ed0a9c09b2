"""The worker's `ChunkPolicy` served by an inference server (`internvla-m1 serve`) over its websocket.

Remote inference must keep every safety property of local inference, so nothing the server sends is
trusted: a reply that is an error, late, or whose actions are not a finite float [horizon, 7] chunk
raises, the worker counts it, and no chunk reaches the schedule (the current one runs out, as with a
local model error).

A server that is gone must stop the robot quickly, and the chunk schedule alone would not: it keeps
executing the current chunk for up to its horizon (16 control periods). So the connection is watched
all the time, not only during a request: a reader thread sees a closed connection at once (a killed
server's socket is closed by its kernel), and keepalive pings every ``timeout_s / 4`` find a server
that stopped answering without closing (frozen, network cut) within ``timeout_s`` (pong wait
``timeout_s / 2``: a loaded server's event loop can be that late without being gone). Either way
``on_lost`` fires and the node blocks commands until ``on_connected`` fires again; the thread keeps
reconnecting every ``retry_s``.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from internvla_policy.control.action import DIMENSION_NAMES
from internvla_policy.control.inference import ChunkPrediction
from internvla_policy.model.qwen import fitted_size
from internvla_policy.serving import wire
from internvla_policy.serving.protocol import PROTOCOL
from internvla_policy.serving.server import TOKEN_ENV, TOKEN_SCHEME

OPEN_TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 16 * 2**20
REPLY_TIMEOUTS = 4
"""A request is given up after this many server timeouts or chunk durations, whichever is longer."""


class InvalidReplyError(ValueError):
    """The server answered something that is not a usable chunk (or not this protocol)."""


class RemoteInferenceError(RuntimeError):
    """The server refused or failed the request; its message says why."""


class _Lost:
    """Queued for a waiting request when the connection ends."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RemoteChunkPolicy:
    """One chunk per observation from the inference server at ``uri``, with the node's sampling settings.

    ``on_connected(metadata)`` and ``on_lost(reason)`` are called from the connection thread on every
    change (``on_lost`` also when the first attempt fails). The token comes from ``$INTERNVLA_M1_TOKEN``
    unless given: a ROS parameter would be readable by anyone on the DDS domain.
    """

    def __init__(
        self,
        uri: str,
        *,
        cfg_scale: float,
        ddim_steps: int,
        seed: int | None,
        unnorm_key: str | None,
        prompt_template: bool,
        control_period_s: float,
        timeout_s: float,
        on_connected: Callable[[dict[str, Any]], None],
        on_lost: Callable[[str], None],
        token: str | None = None,
        retry_s: float = 0.5,
    ) -> None:
        self.uri = uri
        self.unnorm_key = unnorm_key
        self._settings = {
            "unnorm_key": unnorm_key,
            "cfg_scale": cfg_scale,
            "num_ddim_steps": ddim_steps,
            "use_ddim": True,
            "seed": seed,
            "prompt_template": prompt_template,
        }
        self._control_period_s = control_period_s
        self._timeout_s = timeout_s
        self._on_connected = on_connected
        self._on_lost = on_lost
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._headers = {"Authorization": f"{TOKEN_SCHEME} {token}"} if token else None
        self._retry_s = retry_s
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._connection: ClientConnection | None = None
        self._metadata: dict[str, Any] = {}
        self._replies: queue.Queue[bytes | _Lost] = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="internvla-remote-policy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._closing.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            connection.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        """As ModelChunkPolicy.view_size, from the resize settings the server sent."""
        with self._lock:
            metadata = self._metadata
        if not metadata:
            raise ConnectionError(f"not connected to the inference server at {self.uri}")
        if metadata["image_size"]:
            width, height = metadata["image_size"]
        return fitted_size(width, height, **metadata["view_resize"])

    def predict(self, images: list[np.ndarray], instruction: str) -> ChunkPrediction:
        with self._lock:
            connection, metadata = self._connection, self._metadata
        if connection is None:
            raise ConnectionError(f"not connected to the inference server at {self.uri}")
        request_id = next(self._ids)
        payload = {**self._settings, "batch_images": [list(images)], "instructions": [instruction]}
        try:
            connection.send(wire.pack({"type": "infer", "request_id": request_id, "payload": payload}))
        except ConnectionClosed as exc:
            raise ConnectionError(f"inference server at {self.uri} closed the connection: {exc}") from None
        # A late chunk costs nothing (the controller skips its past steps); this deadline only frees
        # the worker from a server that keeps the connection alive but never answers.
        timeout_s = REPLY_TIMEOUTS * max(self._timeout_s, metadata["action_horizon"] * self._control_period_s)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                item = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no reply from {self.uri} within {timeout_s:.2f} s") from None
            if isinstance(item, _Lost):
                raise ConnectionError(f"inference server at {self.uri} lost: {item.reason}")
            reply = wire.unpack(item)
            if isinstance(reply, dict) and reply.get("request_id") != request_id:
                continue  # the late answer to a request given up on
            return self._chunk(reply, metadata["action_horizon"])

    def _chunk(self, reply: Any, horizon: int) -> ChunkPrediction:
        """The chunk of a reply, checked: ok, float arrays [1, horizon, 7], finite."""
        if not isinstance(reply, dict) or reply.get("type") not in ("inference_result", "error"):
            raise InvalidReplyError(f"not an inference reply: {str(reply)[:200]}")
        if reply.get("ok") is not True:
            raise RemoteInferenceError(f"the server refused the request: {reply.get('message')}")
        data = reply.get("data")
        if not isinstance(data, dict):
            raise InvalidReplyError("inference reply without a data map")
        expected = (1, horizon, len(DIMENSION_NAMES))
        arrays = {}
        for key in ("actions", "normalized_actions"):
            value = data.get(key)
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.shape != expected:
                shown = f"{value.dtype} {list(value.shape)}" if isinstance(value, np.ndarray) else type(value)
                raise InvalidReplyError(
                    f"{key}: expected a float array of shape {list(expected)}, got {shown}"
                )
            if not np.all(np.isfinite(value)):
                raise InvalidReplyError(f"{key}: non-finite values")
            arrays[key] = value[0]
        return ChunkPrediction(
            arrays["actions"].astype(np.float64), arrays["normalized_actions"].astype(np.float32)
        )

    def _run(self) -> None:
        """Connect, read until the connection ends, report, retry; until closed."""
        reported: str | None = None
        while not self._closing.is_set():
            try:
                with connect(
                    self.uri,
                    additional_headers=self._headers,
                    compression=None,
                    proxy=None,
                    open_timeout=OPEN_TIMEOUT_S,
                    # Worst case from the last sign of life to on_lost: the sum, timeout_s.
                    ping_interval=self._timeout_s / 4,
                    ping_timeout=self._timeout_s / 2,
                    close_timeout=self._timeout_s / 4,
                    max_size=MAX_REPLY_BYTES,
                ) as connection:
                    metadata = self._check_metadata(wire.unpack(connection.recv(timeout=OPEN_TIMEOUT_S)))
                    self._attach(connection, metadata)
                    reported = None
                    self._on_connected(metadata)
                    reason = self._read(connection)
            except Exception as exc:  # whatever happened, the node must hear it and the thread go on
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._attach(None, {})
            self._replies.put(_Lost(reason))
            if not self._closing.is_set() and reason != reported:
                self._on_lost(reason)
                reported = reason
            self._closing.wait(self._retry_s)

    def _attach(self, connection: ClientConnection | None, metadata: dict[str, Any]) -> None:
        with self._lock:
            self._connection, self._metadata = connection, metadata
        if connection is not None:
            while not self._replies.empty():  # a previous connection's leftovers
                self._replies.get_nowait()

    def _read(self, connection: ClientConnection) -> str:
        """Hand every frame to the waiting request; return why the connection ended."""
        try:
            for frame in connection:
                if isinstance(frame, bytes):
                    self._replies.put(frame)
        except ConnectionClosed as exc:
            return f"connection closed ({exc})"
        return "connection closed by the server"

    def _check_metadata(self, metadata: Any) -> dict[str, Any]:
        if not isinstance(metadata, dict) or metadata.get("protocol") != PROTOCOL:
            raise InvalidReplyError(f"{self.uri} is not an internvla-m1 server (protocol {PROTOCOL})")
        horizon = metadata.get("action_horizon")
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise InvalidReplyError(f"the server's metadata has no usable action_horizon: {horizon!r}")
        if metadata.get("action_dim") != len(DIMENSION_NAMES):
            raise InvalidReplyError(
                f"the server's model predicts {metadata.get('action_dim')}-D actions; the policy node "
                f"drives the {len(DIMENSION_NAMES)}-D delta end-effector space"
            )
        key = self._settings["unnorm_key"]
        if key is not None and key not in metadata.get("unnorm_keys", ()):
            raise InvalidReplyError(
                f"unnorm_key {key!r} is not served; the server has {metadata.get('unnorm_keys')}"
            )
        return metadata

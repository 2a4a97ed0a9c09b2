"""The websocket inference server behind ``internvla-m1 serve``: one model, many robots.

Wire protocol: upstream InternVLA-M1's ``deployment/model_server`` (itself openpi's), so upstream's
``WebsocketClientPolicy`` and openpi-client's work unchanged (``protocol.py`` describes the frames).
What this server does differently from upstream's, and why:

- Each request is validated; a bad one gets a structured error reply and the connection stays open
  (upstream sends a traceback and closes, and a malformed frame kills its handler).
- Inference runs on the batching thread (``batching.py``), off the event loop: the loop keeps
  answering keepalive pings, health checks and other clients while a forward runs, and requests that
  arrive together are served by one forward.
- Each connection has at most one request in flight (it is answered before the next frame is
  read), so no client can queue unbounded work; a client that disconnects while waiting has its
  queued request withdrawn.
- Frames larger than ``max_message_bytes`` are refused by the websocket layer from their header
  (close code 1009) before their payload is read.
- With a token set, the handshake must carry ``Authorization: Api-Key <token>`` (what openpi-client's
  and upstream's ``api_key`` send); otherwise it is answered 401 and no websocket opens.
- ``GET /healthz`` answers 200 with a small JSON status, without a token (it tells only that the
  server is up).
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from internvla_policy.serving import wire
from internvla_policy.serving.batching import BatchScheduler, InferenceModel, ServedChunk
from internvla_policy.serving.protocol import (
    PROTOCOL,
    ErrorCode,
    InferRequest,
    Limits,
    RequestError,
    error_reply,
    ok_reply,
    parse_request,
    request_id_of,
)

DEFAULT_PORT = 10093  # upstream's
HEALTH_PATH = "/healthz"
TOKEN_SCHEME = "Api-Key"
TOKEN_ENV = "INTERNVLA_M1_TOKEN"
"""Environment variable holding the shared token, read by the server and the policy node's remote backend."""
log = logging.getLogger("internvla_m1.serve")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    """0 lets the system choose (tests)."""
    token: str | None = None
    max_message_bytes: int = 32 * 2**20
    batch_wait_s: float = 0.005
    max_batch_samples: int = 16
    limits: Limits = field(default_factory=Limits)
    model_name: str = ""
    """What the metadata calls the model (the run folder)."""


@dataclass
class ConnectionStats:
    opened: int = 0
    open: int = 0
    replies: int = 0
    errors: int = 0


class PolicyServer:
    """Serves ``model`` (an ``InternVLAM1`` or its fast path) on ``settings.host:port`` until stopped."""

    def __init__(self, model: InferenceModel, settings: ServerSettings) -> None:
        if settings.max_batch_samples < settings.limits.max_samples:
            raise ValueError("max_batch_samples must be at least limits.max_samples (one whole request)")
        self.settings = settings
        self._model = model
        self._scheduler = BatchScheduler(
            model, max_samples=settings.max_batch_samples, wait_s=settings.batch_wait_s
        )
        self._connections = ConnectionStats()
        self._started = time.monotonic()
        self.metadata = self._metadata()

    def stats(self) -> dict[str, Any]:
        """Counters for the ``ping`` reply and tests: connections, replies, errors, forwards, merges."""
        return {
            "uptime_s": time.monotonic() - self._started,
            "connections": asdict(self._connections),
            "batching": asdict(self._scheduler.stats),
        }

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        """Serve until ``stop`` is set; ``ready`` gets the bound port once connections are accepted."""
        self._scheduler.start()
        try:
            async with serve(
                self._handle,
                self.settings.host,
                self.settings.port,
                process_request=self._check_http,
                max_size=self.settings.max_message_bytes,
                # Frames are answered one at a time, so a client sending ahead gets at most two
                # buffered (each up to max_size), then TCP backpressure; not 16, the library default.
                max_queue=2,
                compression=None,
            ) as server:
                port = next(iter(server.sockets)).getsockname()[1]
                log.info("serving %s on ws://%s:%d", self.settings.model_name, self.settings.host, port)
                if ready is not None:
                    ready(port)
                await stop.wait()
        finally:
            self._scheduler.close()

    def _metadata(self) -> dict[str, Any]:
        core = self._scheduler.core
        config = core.config
        return {
            "protocol": PROTOCOL,
            "server": "internvla-ros internvla-m1 serve",
            "model": self.settings.model_name,
            "action_dim": core.action_dim,
            "action_horizon": core.horizon,
            "unnorm_keys": core.unnorm_keys,
            "image_size": list(config.image_size) if config.image_size else None,
            "view_resize": core.processor.resize_settings(),
            "device": str(self._model.device),
            "dtype": str(self._model.dtype).removeprefix("torch."),
            "limits": asdict(self.settings.limits),
            "max_message_bytes": self.settings.max_message_bytes,
            "batching": {
                "wait_s": self.settings.batch_wait_s,
                "max_samples": self.settings.max_batch_samples,
            },
            "token_required": self.settings.token is not None,
        }

    def _check_http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Health check, then the token: a refused handshake never becomes a websocket."""
        if request.path == HEALTH_PATH:
            body = {"status": "ok", "protocol": PROTOCOL, "model": self.settings.model_name}
            return connection.respond(http.HTTPStatus.OK, json.dumps(body) + "\n")
        token = self.settings.token
        if token is None:
            return None
        sent = request.headers.get("Authorization", "")
        expected = f"{TOKEN_SCHEME} {token}"
        if hmac.compare_digest(sent.encode(), expected.encode()):
            return None
        log.warning("refused a connection from %s: missing or wrong token", connection.remote_address)
        return connection.respond(
            http.HTTPStatus.UNAUTHORIZED, f"send 'Authorization: {TOKEN_SCHEME} <token>'\n"
        )

    async def _handle(self, connection: ServerConnection) -> None:
        stats = self._connections
        stats.opened += 1
        stats.open += 1
        log.info("connection from %s", connection.remote_address)
        try:
            await connection.send(wire.pack(self.metadata))
            async for frame in connection:
                reply = await self._answer(frame, connection)
                if reply is None:
                    break
                stats.replies += 1
                stats.errors += not reply["ok"]
                await connection.send(wire.pack(reply))
        except ConnectionClosed:
            pass
        finally:
            stats.open -= 1
            log.info("connection from %s closed", connection.remote_address)

    async def _answer(self, frame: str | bytes, connection: ServerConnection) -> dict[str, Any] | None:
        """The reply to one frame; None when the client left before its answer was ready."""
        if isinstance(frame, str):
            return error_reply(
                "default", RequestError("send binary msgpack frames, not text", code=ErrorCode.MALFORMED)
            )
        try:
            message = wire.unpack(frame)
        except wire.WireError as err:
            return error_reply("default", RequestError(str(err), code=ErrorCode.MALFORMED))
        request_id = request_id_of(message)
        try:
            request = parse_request(message, self.settings.limits)
            if request.kind == "ping":
                return ok_reply("ping", request_id, self.stats())
            if request.kind == "init":
                return ok_reply("init", request_id, self.metadata)
            if request.kind == "reset":
                return ok_reply("reset", request_id)  # nothing to reset: the server keeps no per-client state
            served = await self._infer(request.infer, connection)
            return None if served is None else ok_reply("infer", request_id, served.as_data())
        except RequestError as err:
            return error_reply(request_id, err)
        except Exception as exc:
            log.exception("request %r failed", request_id)
            return error_reply(
                request_id, RequestError(f"{type(exc).__name__}: {exc}", code=ErrorCode.INTERNAL)
            )

    async def _infer(self, request: InferRequest, connection: ServerConnection) -> ServedChunk | None:
        """Wait for the batch thread's answer, or withdraw the request if the client goes away first."""
        future = asyncio.wrap_future(self._scheduler.submit(self._scheduler.check(request)))
        closed = asyncio.ensure_future(connection.wait_closed())
        try:
            await asyncio.wait({future, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if not future.done():
            future.cancel()  # a queued request is dropped; a running one finishes unseen
            return None
        return future.result()


class ServerThread:
    """A PolicyServer on its own event loop in a background thread (tests, benchmarks, embedding)."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="internvla-serve-loop", daemon=True)

    @property
    def uri(self) -> str:
        return f"ws://{self.server.settings.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error}")
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout_s)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        try:
            self._loop.run_until_complete(self.server.run(self._stop, ready))
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            self._loop.close()

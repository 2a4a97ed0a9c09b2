"""The policy node's remote backend against a real server: same chunks as local inference, a lost
server noticed at once and reconnected, and every malformed reply refused."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as sync_serve

from internvla_policy.control.model_policy import ModelChunkPolicy
from internvla_policy.control.remote_policy import InvalidReplyError, RemoteChunkPolicy, RemoteInferenceError
from internvla_policy.model import InternVLAM1
from internvla_policy.serving import wire
from internvla_policy.serving.protocol import PROTOCOL
from internvla_policy.serving.server import PolicyServer, ServerSettings, ServerThread

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's handshake constant
ROGUE_METADATA = {
    "protocol": PROTOCOL,
    "model": "rogue",
    "device": "cpu",
    "dtype": "float32",
    "action_dim": 7,
    "action_horizon": 16,
    "unnorm_keys": ["franka"],
    "image_size": [224, 224],
    "view_resize": {"factor": 28, "min_pixels": 3136, "max_pixels": 12845056},
}
SETTINGS = {"cfg_scale": 1.5, "ddim_steps": 10, "seed": 11, "unnorm_key": "franka", "prompt_template": True}
PERIOD_S = 0.1


class Events:
    """on_connected / on_lost as a log with arrival times."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float, object]] = []
        self._changed = threading.Condition()

    def connected(self, metadata: dict) -> None:
        self._add("connected", metadata)

    def lost(self, reason: str) -> None:
        self._add("lost", reason)

    def _add(self, kind: str, value: object) -> None:
        with self._changed:
            self.log.append((kind, time.monotonic(), value))
            self._changed.notify_all()

    def wait(self, kind: str, count: int = 1, timeout_s: float = 30.0) -> float:
        """Arrival time of the count-th event of this kind."""
        with self._changed:
            assert self._changed.wait_for(
                lambda: sum(k == kind for k, _, _ in self.log) >= count, timeout_s
            ), self.log
            return [t for k, t, _ in self.log if k == kind][count - 1]


def remote(uri: str, events: Events, timeout_s: float = 1.0, **overrides: object) -> RemoteChunkPolicy:
    policy = RemoteChunkPolicy(
        uri,
        **{**SETTINGS, **overrides},
        control_period_s=PERIOD_S,
        timeout_s=timeout_s,
        on_connected=events.connected,
        on_lost=events.lost,
        retry_s=0.2,
    )
    policy.start()
    return policy


def test_remote_chunks_equal_local_ones_and_survive_a_server_restart(model: InternVLAM1, frame: np.ndarray):
    settings = ServerSettings(port=0)
    server = ServerThread(PolicyServer(model, settings)).start()
    events = Events()
    policy = remote(server.uri, events)
    try:
        events.wait("connected")
        assert policy.view_size(320, 240) == ModelChunkPolicy(model, **SETTINGS).view_size(320, 240)
        local = ModelChunkPolicy(model, **SETTINGS).predict([frame], "pick up the red block.")
        served = policy.predict([frame], "pick up the red block.")
        np.testing.assert_allclose(served.normalized, local.normalized, rtol=0, atol=5e-5)
        np.testing.assert_allclose(served.actions, local.actions, rtol=0, atol=1e-6)
        assert served.actions.shape == (16, 7) and served.actions.dtype == np.float64

        port = server.port
        stopped = time.monotonic()
        server.stop()
        lost = events.wait("lost")
        assert lost - stopped < PERIOD_S, f"loss noticed after {lost - stopped:.3f} s"
        with pytest.raises(ConnectionError):
            policy.predict([frame], "pick up the red block.")

        server = ServerThread(PolicyServer(model, ServerSettings(port=port))).start()
        events.wait("connected", count=2)
        assert policy.predict([frame], "pick up the red block.").actions.shape == (16, 7)
    finally:
        policy.close()
        server.stop()


def test_wrong_server_or_refused_key_never_counts_as_connected(serve, frame: np.ndarray):
    server = serve()
    events = Events()
    policy = remote(server.uri, events, unnorm_key="bridge_dataset")
    try:
        events.wait("lost")
        assert "bridge_dataset" in str(events.log[0][2])
        assert not any(kind == "connected" for kind, _, _ in events.log)
    finally:
        policy.close()


def test_a_silent_server_is_lost_within_the_timeout(frame: np.ndarray):
    """A server that accepts, sends its metadata and then answers nothing, not even pings (frozen,
    or the network cut without a reset): lost within about ``timeout_s``, not after the TCP timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    frozen: list[socket.socket] = []

    def accept() -> None:
        connection, _ = listener.accept()
        request = connection.recv(4096).decode()
        key = next(
            line.split(":", 1)[1].strip()
            for line in request.split("\r\n")
            if line.lower().startswith("sec-websocket-key")
        )
        accept_key = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        connection.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
            ).encode()
        )
        metadata = wire.pack(ROGUE_METADATA)
        connection.sendall(bytes([0x82, 126]) + len(metadata).to_bytes(2, "big") + metadata)
        frozen.append(connection)  # never read from again

    threading.Thread(target=accept, daemon=True).start()
    events = Events()
    policy = remote(f"ws://127.0.0.1:{listener.getsockname()[1]}", events, timeout_s=0.5)
    try:
        connected = events.wait("connected")
        lost = events.wait("lost", timeout_s=10.0)
        print(f"silent server lost {lost - connected:.2f} s after connecting")
        assert lost - connected < 2 * 0.5
        with pytest.raises(ConnectionError):
            policy.predict([frame], "pick up the red block.")
    finally:
        policy.close()
        listener.close()
        for connection in frozen:
            connection.close()


@pytest.fixture
def rogue_server() -> Iterator[Callable[[Callable[[dict], object]], str]]:
    """A server that speaks the handshake and metadata right, then answers with ``answer(request)``."""
    servers = []

    def start(answer: Callable[[dict], object]) -> str:
        def handler(connection: ServerConnection) -> None:
            connection.send(wire.pack(ROGUE_METADATA))
            for frame in connection:
                reply = answer(wire.unpack(frame))
                if reply is not None:
                    connection.send(reply if isinstance(reply, bytes) else wire.pack(reply))

        server = sync_serve(handler, "127.0.0.1", 0, compression=None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"

    yield start
    for server in servers:
        server.shutdown()


def _result(request: dict, **data: object) -> dict:
    return {
        "status": "ok",
        "ok": True,
        "type": "inference_result",
        "request_id": request["request_id"],
        "data": data,
    }


GOOD = np.zeros((1, 16, 7), dtype=np.float32)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda r: _result(r, actions=np.zeros((1, 8, 7)), normalized_actions=GOOD), InvalidReplyError),
        (lambda r: _result(r, actions=np.zeros((1, 16, 6)), normalized_actions=GOOD), InvalidReplyError),
        (
            lambda r: _result(r, actions=np.full((1, 16, 7), np.nan), normalized_actions=GOOD),
            InvalidReplyError,
        ),
        (
            lambda r: _result(r, actions=np.zeros((1, 16, 7), np.int64), normalized_actions=GOOD),
            InvalidReplyError,
        ),
        (lambda r: _result(r, actions=[[0.0] * 7] * 16, normalized_actions=GOOD), InvalidReplyError),
        (lambda r: _result(r), InvalidReplyError),
        (lambda r: {**_result(r), "data": None}, InvalidReplyError),
        (
            lambda r: {"status": "error", "ok": False, "type": "error", "request_id": r["request_id"]},
            RemoteInferenceError,
        ),
        (lambda r: b"\xc1 not msgpack", ValueError),
        (lambda r: ["not", "a", "map"], InvalidReplyError),
        (lambda r: None, TimeoutError),
    ],
    ids=[
        "short",
        "6-D",
        "nan",
        "int",
        "list",
        "no-data",
        "data-none",
        "error",
        "garbage",
        "list-reply",
        "silent",
    ],
)
def test_malformed_replies_raise(rogue_server, frame: np.ndarray, answer, error):
    events = Events()
    policy = remote(rogue_server(answer), events)  # the silent server is given up after 4 x 1.6 s
    try:
        events.wait("connected")
        with pytest.raises(error):
            policy.predict([frame], "pick up the red block.")
    finally:
        policy.close()

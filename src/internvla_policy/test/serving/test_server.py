"""The inference server over real websockets on loopback, with the tiny model: openpi-client and
upstream's request formats, merged forwards, hostile requests, the token."""

from __future__ import annotations

import base64
import os
import socket
import threading
import urllib.request

import msgpack
import numpy as np
import pytest
import websockets.sync.client
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.exceptions import ConnectionClosed, InvalidStatus

from internvla_policy.model import InternVLAM1
from internvla_policy.model.fast import FastInference
from internvla_policy.serving import wire
from internvla_policy.serving.server import PolicyServer, ServerSettings, ServerThread

INSTRUCTION = "pick up the red block."
FLOAT32_ROUNDING = 5e-5
"""Merged forwards run the same float32 arithmetic in other batch shapes: measured up to 1.3e-5."""


def payload(frame: np.ndarray, **extra: object) -> dict:
    """Upstream's evaluation-client map (examples/simplerEnv/m1_server.py) plus our extras."""
    return {
        "batch_images": [[frame]],
        "instructions": [INSTRUCTION],
        "unnorm_key": "franka",
        "do_sample": False,
        "cfg_scale": 1.5,
        "use_ddim": True,
        "num_ddim_steps": 10,
        **extra,
    }


def assert_close(data: dict, normalized: np.ndarray, actions: np.ndarray) -> None:
    """Served chunks against in-process ones: float32 rounding, then the statistics' affine map."""
    np.testing.assert_allclose(data["normalized_actions"], normalized, rtol=0, atol=FLOAT32_ROUNDING)
    np.testing.assert_allclose(data["actions"], actions, rtol=0, atol=1e-6)


def raw_client(uri: str) -> websockets.sync.client.ClientConnection:
    """A plain websocket client, past the metadata frame, for frames openpi-client would not send."""
    connection = websockets.sync.client.connect(uri, compression=None, max_size=None, proxy=None, legacy=True)
    wire.unpack(connection.recv(timeout=10))
    return connection


def ask(connection: websockets.sync.client.ClientConnection, frame: bytes | str) -> dict:
    connection.send(frame)
    return wire.unpack(connection.recv(timeout=60))


def test_openpi_client_gets_the_in_process_actions(
    serve, model: InternVLAM1, frame: np.ndarray, second_key: str
):
    server = serve()
    client = WebsocketClientPolicy(server.uri)
    metadata = client.get_server_metadata()
    assert metadata["action_horizon"] == 16 and metadata["action_dim"] == 7
    assert sorted(metadata["unnorm_keys"]) == ["franka", second_key]

    reply = client.infer({"type": "infer", "request_id": "r1", "payload": payload(frame, seed=7)})
    expected = model.predict_action([[frame]], [INSTRUCTION], seed=7, unnorm_key="franka")

    assert (reply["status"], reply["ok"], reply["type"], reply["request_id"]) == (
        "ok",
        True,
        "inference_result",
        "r1",
    )
    data = reply["data"]
    assert data["normalized_actions"].dtype == np.float32 and data["normalized_actions"].shape == (1, 16, 7)
    assert_close(data, expected.normalized, expected.actions)
    assert data["unnorm_key"] == "franka" and data["timing"]["forward_s"] > 0


def test_upstream_plain_map_and_implicit_routes(serve, frame: np.ndarray):
    """What upstream's simplerEnv client and its WebsocketClientPolicy send, unchanged."""
    client = WebsocketClientPolicy(serve().uri)
    reply = client.infer(payload(frame))
    assert reply["ok"] and reply["type"] == "inference_result" and reply["request_id"] == "default"
    assert reply["data"]["normalized_actions"].shape == (1, 16, 7)
    assert client.infer({"device": "cpu"})["type"] == "init_result"
    assert client.infer({"instruction": INSTRUCTION, "reset": True})["type"] == "reset_result"


def test_typed_ping_init_reset(serve):
    client = WebsocketClientPolicy(serve().uri)
    pong = client.infer({"type": "ping", "request_id": 5})
    assert (pong["type"], pong["request_id"], pong["ok"]) == ("pong", 5, True)
    assert pong["data"]["connections"]["open"] == 1
    init = client.infer({"type": "init", "request_id": "i", "payload": {"device": "cuda"}})
    assert init["type"] == "init_result" and init["data"]["action_horizon"] == 16
    reset = client.infer({"type": "reset", "payload": {"instruction": INSTRUCTION}})
    assert reset == {"status": "ok", "ok": True, "type": "reset_result", "request_id": "default"}


def test_concurrent_clients_share_one_forward(serve, model: InternVLAM1, frame: np.ndarray, second_key: str):
    """Three robots at once, each with its own seed and unnorm key: one forward, everyone's own answer.
    A fourth with a longer prompt is served by another forward (merging it would pad the others)."""
    server = serve(batch_wait_s=1.0)
    requests = [
        payload(frame, seed=1),
        payload(np.ascontiguousarray(frame[::-1]), seed=2, unnorm_key=second_key),
        payload(frame, seed=3, unnorm_key=second_key),
        payload(frame, seed=4, instructions=["pick up the red block and put it in the blue bowl."]),
    ]
    clients = [WebsocketClientPolicy(server.uri) for _ in requests]
    replies: list[dict | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def run(i: int) -> None:
        start.wait()
        replies[i] = clients[i].infer(requests[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    batches = [reply["data"]["batch"] for reply in replies]
    assert [b["requests"] for b in batches] == [3, 3, 3, 1]
    assert batches[0]["forward"] == batches[1]["forward"] == batches[2]["forward"] != batches[3]["forward"]
    for request, reply in zip(requests, replies, strict=True):
        expected = model.predict_action(
            request["batch_images"],
            request["instructions"],
            seed=request["seed"],
            unnorm_key=request["unnorm_key"],
        )
        data = reply["data"]
        assert data["unnorm_key"] == request["unnorm_key"]
        assert_close(data, expected.normalized, expected.actions)
    stats = server.server.stats()["batching"]
    assert (stats["forwards"], stats["requests"], stats["largest_forward_requests"]) == (2, 4, 3)


def test_the_fast_path_serves_merged_requests(model: InternVLAM1, frame: np.ndarray):
    """FastInference (what a GPU server runs; eager float32 on the CPU) takes the merged noise too."""
    fast = FastInference(model)
    with ServerThread(PolicyServer(fast, ServerSettings(port=0, batch_wait_s=1.0))) as server:
        clients = [WebsocketClientPolicy(server.uri) for _ in range(2)]
        replies: list[dict] = [{}, {}]
        threads = [
            threading.Thread(
                target=lambda i=i: replies.__setitem__(i, clients[i].infer(payload(frame, seed=i)))
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    for seed, reply in enumerate(replies):
        assert reply["data"]["batch"]["requests"] == 2
        expected = model.predict_action([[frame]], [INSTRUCTION], seed=seed, unnorm_key="franka")
        assert_close(reply["data"], expected.normalized, expected.actions)


def _bad_array(dtype: str, shape: list[int], data: bytes) -> dict:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def test_bad_requests_get_error_replies_and_the_server_keeps_serving(serve, frame: np.ndarray):
    server = serve()
    nan_image = np.full((240, 320, 3), np.nan, dtype=np.float32)
    typed = [
        ({"instructions": [INSTRUCTION]}, "bad_request", "payload.batch_images"),
        ({**payload(frame), "instructions": INSTRUCTION}, "bad_request", "payload.instructions"),
        ({**payload(frame), "instructions": [3]}, "bad_request", "payload.instructions[0]"),
        ({**payload(frame), "instructions": ["x" * 100_000]}, "bad_request", "payload.instructions[0]"),
        ({**payload(frame), "instructions": ["pick\x1b[2J up"]}, "bad_request", "payload.instructions[0]"),
        ({**payload(frame), "batch_images": [[nan_image]]}, "bad_request", "payload.batch_images[0][0]"),
        ({**payload(frame), "batch_images": [[frame[:, :, 0]]]}, "bad_request", "payload.batch_images[0][0]"),
        ({**payload(frame), "batch_images": [[frame[:10]]]}, "bad_request", "payload.batch_images[0][0]"),
        ({**payload(frame), "batch_images": [frame]}, "bad_request", "payload.batch_images[0]"),
        ({**payload(frame), "cfg_scale": "1.5"}, "bad_request", "payload.cfg_scale"),
        ({**payload(frame), "cfg_scale": float("nan")}, "bad_request", "payload.cfg_scale"),
        ({**payload(frame), "num_ddim_steps": 0}, "bad_request", "num_ddim_steps"),
        ({**payload(frame), "use_ddim": False}, "bad_request", "payload.use_ddim"),
        ({**payload(frame), "unnorm_key": "nowhere"}, "bad_request", "unnorm_key"),
        ({**payload(frame), "seed": -1}, "bad_request", "payload.seed"),
    ]
    connection = raw_client(server.uri)
    for bad, code, field in typed:
        reply = ask(connection, msgpack_numpy.packb({"type": "infer", "request_id": "bad", "payload": bad}))
        assert (reply["ok"], reply["status"], reply["request_id"]) == (False, "error", "bad"), field
        assert (reply["error"]["code"], reply["error"]["field"]) == (code, field), reply["message"]
    frames: list[bytes | str] = [
        b"\xc1\x00\xff",  # not msgpack
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb({"type": "fly"}),
        msgpack.packb({"type": "infer", "request_id": ["a"]}),
        msgpack.packb({**payload(frame), "batch_images": [[_bad_array("|u1", [240, 320, 3], b"\x00" * 9)]]}),
        msgpack.packb({**payload(frame), "batch_images": [[_bad_array("|O", [1], b"\x00" * 8)]]}),
        msgpack.packb({**payload(frame), "batch_images": [[_bad_array("<f4", [-1], b"")]]}),
        "a text frame",
    ]
    for bad in frames:
        reply = ask(connection, bad)
        assert reply["ok"] is False and reply["error"]["code"] in ("bad_request", "malformed_frame"), bad
    assert ask(connection, msgpack.packb({"type": "ping"}))["type"] == "pong"
    reply = WebsocketClientPolicy(server.uri).infer(payload(frame, seed=0))
    assert reply["ok"] and reply["data"]["normalized_actions"].shape == (1, 16, 7)
    connections = server.server.stats()["connections"]
    assert connections["errors"] == len(typed) + len(frames)


def test_oversize_message_closes_that_connection_only(serve, frame: np.ndarray):
    """A 100 MB frame is refused from its header (close 1009); the next client is served."""
    server = serve()
    connection = raw_client(server.uri)
    with pytest.raises((ConnectionClosed, OSError)):
        connection.send(b"\x00" * (100 * 2**20))
        connection.recv(timeout=30)
    assert connection.close_code == 1009
    assert WebsocketClientPolicy(server.uri).infer(payload(frame))["ok"]


def test_disconnect_mid_request_withdraws_it(serve, frame: np.ndarray):
    server = serve(batch_wait_s=0.5)
    leaving = raw_client(server.uri)
    leaving.send(msgpack_numpy.packb(payload(frame)))
    leaving.close()  # within the batching wait: the request is still queued
    assert WebsocketClientPolicy(server.uri).infer(payload(frame))["ok"]
    stats = server.server.stats()["batching"]
    assert (stats["cancelled"], stats["requests"]) == (1, 1)


def test_a_stalled_upload_does_not_block_others(serve, frame: np.ndarray):
    """A client that opens a 1 MB frame and never finishes it: the others are served meanwhile."""
    server = serve()
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    stalled.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101 Switching Protocols" in stalled.recv(4096)
    header = bytes([0x82, 0xFF]) + (2**20).to_bytes(8, "big") + os.urandom(4)  # masked binary, 1 MiB
    stalled.sendall(header + b"\x00" * 100)
    try:
        assert WebsocketClientPolicy(server.uri).infer(payload(frame))["ok"]
    finally:
        stalled.close()


def test_token_is_required_when_set(serve, frame: np.ndarray):
    server = serve(token="s3cret")
    with pytest.raises(InvalidStatus) as refused:
        WebsocketClientPolicy(server.uri)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        WebsocketClientPolicy(server.uri, api_key="wrong")
    client = WebsocketClientPolicy(server.uri, api_key="s3cret")
    assert client.get_server_metadata()["token_required"] is True
    assert client.infer(payload(frame))["ok"]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as health:
        assert health.status == 200

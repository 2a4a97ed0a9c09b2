"""Every custom message and the Ground service survive real Fast DDS between two processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from internvla_msgs.srv import Ground

sys.path.insert(0, str(Path(__file__).parent))
from echo_node import QOS
from message_samples import MESSAGE_TYPES, differs_everywhere, fill, ground_request, ground_response

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def echo_process():
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "echo_node.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    yield process
    process.stdin.close()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def node():
    rclpy.init()
    node = rclpy.create_node("roundtrip_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def test_samples_set_every_field():
    for message_type in MESSAGE_TYPES:
        assert differs_everywhere(fill(message_type()), message_type()) == [], message_type.__name__
    assert differs_everywhere(ground_request(), Ground.Request()) == []
    assert differs_everywhere(ground_response(), Ground.Response()) == []


@pytest.mark.parametrize("message_type", MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_message_round_trip(echo_process, node, message_type):
    topic = f"/roundtrip/{message_type.__name__}"
    sent = fill(message_type(), seed=3)
    received = []
    subscription = node.create_subscription(message_type, topic + "/echo", received.append, QOS)
    publisher = node.create_publisher(message_type, topic, QOS)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not received and time.monotonic() < deadline:
            publisher.publish(sent)
            time.sleep(0.2)
        assert received, f"no echo of {message_type.__name__} within {TIMEOUT_S} s"
        assert received[0] == sent
    finally:
        node.destroy_subscription(subscription)
        node.destroy_publisher(publisher)


def test_ground_service_round_trip(echo_process, node):
    client = node.create_client(Ground, "/roundtrip/ground")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S), "Ground service never appeared"
    future = client.call_async(ground_request())
    deadline = time.monotonic() + TIMEOUT_S
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.done(), "no Ground response"
    assert future.result() == ground_response()

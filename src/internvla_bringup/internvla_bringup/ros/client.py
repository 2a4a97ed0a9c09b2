"""A small rclpy client of the running graph, for the CLI, the demo and the end-to-end tests.

It owns one node spun on a background thread and keeps the newest policy status, spatial
prompt and simulator task status, so callers can poll without writing executor code.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from internvla_msgs.msg import PolicyStatus, SpatialPrompt

INSTRUCTION_QOS = QoSProfile(
    depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)
RELIABLE = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
STATE_NAMES = {
    getattr(PolicyStatus, n): n[len("STATE_") :].lower() for n in dir(PolicyStatus) if n.startswith("STATE_")
}


class GraphClient:
    """Use as ``with GraphClient() as client: ...``; it has its own rclpy context."""

    def __init__(self, name: str = "internvla_cli", instruction_topic: str = "/instruction") -> None:
        self._context = Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node(name, context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self.latest_status: PolicyStatus | None = None
        self.latest_prompt: SpatialPrompt | None = None
        self.latest_task: dict[str, Any] | None = None
        self._instruction_pub = self.node.create_publisher(String, instruction_topic, INSTRUCTION_QOS)
        self.node.create_subscription(PolicyStatus, "/internvla/policy_status", self._on_status, RELIABLE)
        self.node.create_subscription(SpatialPrompt, "/internvla/spatial_prompt", self._on_prompt, RELIABLE)
        self.node.create_subscription(String, "/sim/task_status", self._on_task, RELIABLE)
        self._thread = threading.Thread(target=self._executor.spin, name="graph-client", daemon=True)
        self._thread.start()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    def _on_status(self, message: PolicyStatus) -> None:
        self.latest_status = message

    def _on_prompt(self, message: SpatialPrompt) -> None:
        self.latest_prompt = message

    def _on_task(self, message: String) -> None:
        try:
            self.latest_task = json.loads(message.data)
        except json.JSONDecodeError:
            self.latest_task = {"raw": message.data}

    def send_instruction(self, text: str, wait_for_subscribers_s: float = 10.0) -> int:
        """Publish ``text`` (latched for late joiners); returns how many subscribers were matched."""
        deadline = time.monotonic() + wait_for_subscribers_s
        while self._instruction_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self._instruction_pub.publish(String(data=text))
        return self._instruction_pub.get_subscription_count()

    def set_enabled(
        self, enable: bool, service: str = "/policy/enable", timeout_s: float = 10.0
    ) -> tuple[bool, str]:
        return self._call(SetBool, service, SetBool.Request(data=enable), timeout_s)

    def reset_simulator(self, service: str = "/sim_robot/reset", timeout_s: float = 10.0) -> tuple[bool, str]:
        """A new simulated episode (next seed's layout, the arm at home); the message is its status JSON."""
        return self._call(Trigger, service, Trigger.Request(), timeout_s)

    def _call(self, kind: type, service: str, request: object, timeout_s: float) -> tuple[bool, str]:
        """Call a service whose response has ``success`` and ``message`` (SetBool, Trigger)."""
        client = self.node.create_client(kind, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return False, f"service {service} not available (is the graph running?)"
            future = client.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                return False, f"no answer from {service} within {timeout_s} s"
            return future.result().success, future.result().message
        finally:
            self.node.destroy_client(client)

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll_s)
        return predicate()

    def describe(self) -> str:
        """A human-readable snapshot of the graph."""
        names = sorted(
            f"{ns.rstrip('/')}/{n}"
            for n, ns in self.node.get_node_names_and_namespaces()
            if n != self.node.get_name()
        )
        lines = [f"nodes: {', '.join(names) or '(none)'}"]
        status = self.latest_status
        if status is None:
            lines.append("policy: no status received")
        else:
            latency = status.last_inference_latency.sec + status.last_inference_latency.nanosec * 1e-9
            lines.append(
                f"policy: {STATE_NAMES.get(status.state, status.state)} ({status.detail}); "
                f"instruction {status.instruction!r}; chunks {status.chunk_count}; commands "
                f"{status.commands_published}; dropped inputs {status.dropped_inputs}; last inference "
                f"{latency * 1000:.0f} ms; enabled {status.enabled}; e-stop {status.estopped}"
            )
        prompt = self.latest_prompt
        if prompt is not None:
            labels = [b.label or "?" for b in prompt.boxes] + [p.label or "?" for p in prompt.points]
            lines.append(
                f"grounding: {len(prompt.boxes)} box(es), {len(prompt.points)} point(s), "
                f"{len(prompt.traces)} trace(s) {labels}; status {prompt.status_message or 'ok'}"
            )
        if self.latest_task is not None:
            lines.append(f"simulator: {json.dumps(self.latest_task)}")
        return "\n".join(lines)

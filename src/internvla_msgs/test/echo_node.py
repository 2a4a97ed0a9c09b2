"""The far end of the round-trip test, run as its own process.

Republishes every internvla_msgs message it receives on ``/roundtrip/<Type>`` to
``/roundtrip/<Type>/echo`` and serves ``/roundtrip/ground``, answering the expected
response only when the request arrived intact. Exits when the parent closes stdin.
"""

from __future__ import annotations

import sys
import threading

import rclpy
from message_samples import MESSAGE_TYPES, ground_request, ground_response
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from internvla_msgs.srv import Ground

QOS = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("roundtrip_echo")
    for message_type in MESSAGE_TYPES:
        topic = f"/roundtrip/{message_type.__name__}"
        publisher = node.create_publisher(message_type, topic + "/echo", QOS)
        node.create_subscription(message_type, topic, publisher.publish, QOS)

    def serve(request: Ground.Request, response: Ground.Response) -> Ground.Response:
        if request == ground_request():
            return ground_response()
        response.success = False
        response.message = "request changed in transit"
        return response

    node.create_service(Ground, "/roundtrip/ground", serve)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()

"""The inference server under 1, 2 and 4 concurrent clients: merged forwards against one request at a time,
and the loopback hop against in-process inference, in one run.

    source scripts/env.sh && python src/internvla_policy/bench/bench_serving.py [RUN] [--device cpu]
        [--clients 1 2 4] [--requests 3] [--ddim-steps 10] [--cfg-scale 1.5] [--out bench_out]

Default: the tiny random model on the CPU (under two minutes here). The server runs in this process
on a loopback port; each client is openpi-client's ``WebsocketClientPolicy`` on its own thread,
sending ``--requests`` requests back to back (640x480 frame, one view, the same instruction, its
own seed). Two servers are measured on the same model: ``one_at_a_time`` (a forward per request)
and ``batched`` (requests that arrive within ``--batch-wait-ms`` of each other, or while a forward
runs, share the next one). Per client count and mode: request latency p50/p95 as the client sees
it, throughput (chunks/s over the whole exchange), requests per forward, and ``not_forward``: the
latency minus the server's forward time for that request (queueing behind other requests plus the
loopback hop). A lone client's ``not_forward`` is the hop's overhead, to set beside in-process
``predict_action`` p50/p95 on the same inputs.

Writes <out>/bench_serving.json and prints a table. Numbers on a shared machine move with its
load (recorded). See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from internvla_policy.control.model_policy import set_torch_threads
from internvla_policy.model import InternVLAM1
from internvla_policy.model.cache import inference_for
from internvla_policy.model.tiny import write_tiny_run
from internvla_policy.serving.batching import InferenceModel
from internvla_policy.serving.protocol import Limits
from internvla_policy.serving.server import PolicyServer, ServerSettings, ServerThread

INSTRUCTION = "pick up the red block."


def summary(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


def frame() -> np.ndarray:
    rows, cols = np.mgrid[0:480, 0:640]
    image = np.stack([rows // 2, cols // 3, (rows + cols) // 5], axis=-1).astype(np.uint8)
    image[200:280, 280:380] = (200, 30, 30)
    return image


def drive(uri: str, clients: int, requests: int, payload: dict[str, Any]) -> dict[str, Any]:
    """``clients`` threads, each sending ``requests`` requests back to back after a common start."""
    connections = [WebsocketClientPolicy(uri) for _ in range(clients)]
    latencies: list[float] = []
    overheads: list[float] = []
    sharing: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        start.wait()
        for k in range(requests):
            sent = time.perf_counter()
            reply = connections[index].infer({**payload, "seed": 1000 * index + k})
            took = time.perf_counter() - sent
            assert reply["ok"], reply
            with lock:
                latencies.append(took)
                overheads.append(took - reply["data"]["timing"]["forward_s"])
                sharing.append(reply["data"]["batch"]["requests"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {
        "latency": summary(latencies),
        "not_forward": summary(overheads),
        "chunks_per_s": clients * requests / wall,
        "mean_requests_per_forward": float(np.mean(sharing)),
    }


def measure(model: InferenceModel, args: argparse.Namespace) -> dict[str, Any]:
    image = frame()
    payload = {
        "batch_images": [[image]],
        "instructions": [INSTRUCTION],
        "cfg_scale": args.cfg_scale,
        "num_ddim_steps": args.ddim_steps,
    }
    sampling = {"cfg_scale": args.cfg_scale, "ddim_steps": args.ddim_steps}
    model.predict_action([[image]], [INSTRUCTION], seed=0, **sampling)  # first-call costs
    in_process = []
    for k in range(args.requests):
        started = time.perf_counter()
        model.predict_action([[image]], [INSTRUCTION], seed=k, **sampling)
        in_process.append(time.perf_counter() - started)
    result: dict[str, Any] = {"in_process": summary(in_process)}
    modes = {
        "one_at_a_time": ServerSettings(
            port=0, batch_wait_s=0.0, max_batch_samples=1, limits=Limits(max_samples=1)
        ),
        "batched": ServerSettings(port=0, batch_wait_s=args.batch_wait_ms / 1000),
    }
    for mode, settings in modes.items():
        with ServerThread(PolicyServer(model, settings)) as server:
            result[mode] = {}
            for clients in args.clients:
                result[mode][str(clients)] = drive(server.uri, clients, args.requests, payload)
                print(f"{mode:>14} {clients} clients: {json.dumps(result[mode][str(clients)])}", flush=True)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"in-process predict_action: p50 {result['in_process']['p50_ms']:.0f} ms, "
        f"p95 {result['in_process']['p95_ms']:.0f} ms",
        f"{'mode':<14} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'chunks/s':>9} {'req/fwd':>8} "
        f"{'not forward p50 ms':>19}",
    ]
    for mode in ("one_at_a_time", "batched"):
        for clients, row in result[mode].items():
            lines.append(
                f"{mode:<14} {clients:>7} {row['latency']['p50_ms']:>8.0f} {row['latency']['p95_ms']:>8.0f} "
                f"{row['chunks_per_s']:>9.2f} {row['mean_requests_per_forward']:>8.2f} "
                f"{row['not_forward']['p50_ms']:>19.1f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="run folder (default: the tiny random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=3, help="requests per client per mode")
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--cfg-scale", type=float, default=1.5)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores but one)")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    threads = set_torch_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or write_tiny_run(Path(scratch) / "tiny", seed=0)
        model = inference_for(InternVLAM1.from_pretrained(run, device=args.device, dtype=args.dtype))
        started = time.perf_counter()
        result = measure(model, args)
    result["settings"] = {
        "run": str(args.run or "tiny random"),
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": threads,
        "requests_per_client": args.requests,
        "ddim_steps": args.ddim_steps,
        "cfg_scale": args.cfg_scale,
        "batch_wait_ms": args.batch_wait_ms,
        "frame": "640x480, one view",
        "load_average": os.getloadavg(),
        "seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_serving.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out / 'bench_serving.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

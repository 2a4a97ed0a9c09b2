"""``internvla-m1``: inspect a run, predict an action chunk, answer a prompt, serve, or write the tiny model.

User errors (missing files, a bad checkpoint, wrong images or keys) print one message and exit
with status 1; nothing here prints a stack trace for them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.utils import logging as hf_logging

from ..control.model_policy import set_torch_threads
from ..serving.protocol import Limits
from ..serving.server import DEFAULT_PORT, HEALTH_PATH, TOKEN_ENV, PolicyServer, ServerSettings
from .benchmark import BenchSettings, format_report, run_benchmark
from .cache import inference_for
from .checkpoint import locate_run, match_state_dict, read_state_dict
from .errors import CheckpointError
from .internvla_m1 import InternVLAM1, resolve_device, resolve_dtype
from .preprocessing import as_rgb_image
from .synthetic import DIMS
from .tiny import write_tiny_run

USER_ERRORS = (CheckpointError, FileNotFoundError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    hf_logging.set_verbosity_error()  # transformers warns about harmless legacy config keys
    try:
        return args.handler(args)
    except USER_ERRORS as err:
        print(f"internvla-m1: error: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internvla-m1", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="config summary, parameter counts per module, unnorm keys")
    _add_run_arguments(info)
    info.set_defaults(handler=_info)

    predict = commands.add_parser("predict", help="predict one action chunk and write it as JSON")
    _add_run_arguments(predict)
    _add_runtime_arguments(predict)
    predict.add_argument(
        "--image",
        action="append",
        required=True,
        type=Path,
        metavar="PATH",
        help="camera view (PNG/JPEG, or .npy uint8 HxWx3 RGB); repeat for more views, in order",
    )
    predict.add_argument("--instruction", required=True, help="task instruction")
    predict.add_argument(
        "--unnorm-key", help="dataset statistics to unnormalise with (default: the only one)"
    )
    predict.add_argument("--seed", type=int, help="seed torch's global RNG with this right before predicting")
    predict.add_argument(
        "--cfg-scale", type=float, default=1.5, help="classifier-free guidance (>1 enables it)"
    )
    predict.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps")
    predict.add_argument(
        "--out", required=True, type=Path, metavar="FILE.json", help="where to write the result"
    )
    predict.set_defaults(handler=_predict)

    answer = commands.add_parser(
        "answer", help="print the model's greedy text answer for an image and prompt"
    )
    _add_run_arguments(answer)
    _add_runtime_arguments(answer)
    answer.add_argument("--image", required=True, type=Path, metavar="PATH", help="image (PNG/JPEG or .npy)")
    answer.add_argument("--prompt", required=True, help="prompt, used verbatim")
    answer.add_argument("--max-new-tokens", type=int, default=64, help="generation budget")
    answer.set_defaults(handler=_answer)

    bench = commands.add_parser(
        "bench",
        help="reference path vs fast path on the same inputs: per-stage and end-to-end latency, agreement",
        description=(
            "Time the reference path (float32 weights, autocast on CUDA, processor per call, eager) and "
            "the fast path on the same frame and noise; write <out>/bench.json and print a table. "
            "Default: the tiny model on the CPU. Real dimensions on a GPU: --dims real --device cuda."
        ),
    )
    bench.add_argument(
        "run", nargs="?", type=Path, help="a run folder to benchmark instead of a random-weight model"
    )
    bench.add_argument(
        "--dims", choices=DIMS, default="tiny", help="random-weight model: the tiny one or the real sizes"
    )
    bench.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    bench.add_argument("--out", type=Path, default=Path("bench_out"), help="folder for bench.json")
    bench.add_argument("--repeats", type=int, default=10, help="timed calls per path")
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls per path after the first call")
    bench.add_argument(
        "--answer-tokens", type=int, default=32, help="new tokens for the grounding-answer timing (0: skip)"
    )
    bench.add_argument("--answer-repeats", type=int, default=3, help="timed answers per path")
    bench.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random weights and the frame (call k draws its noise with seed k)",
    )
    bench.add_argument(
        "--fast-dtype", help="fast path weights: float32, bfloat16 (default: bfloat16 on CUDA, else float32)"
    )
    bench.add_argument(
        "--pure-bf16",
        action="store_true",
        help="fast path: activations in bfloat16 too (default: float32 activations, bfloat16 products)",
    )
    bench.add_argument(
        "--compile-dit", action="store_true", help="fast path: torch.compile the DiT before graph capture"
    )
    _add_threads_argument(bench)
    bench.set_defaults(handler=_bench)

    serve = commands.add_parser(
        "serve",
        help="serve the model over upstream's websocket protocol (openpi-client and upstream clients work)",
        description=(
            "Serve action chunks over websocket + msgpack (upstream InternVLA-M1's and openpi's protocol). "
            "Requests that arrive within --batch-wait-ms of each other share one forward. Binds "
            f"127.0.0.1 unless --host says otherwise; with a token (--token, or ${TOKEN_ENV}) clients must "
            "send 'Authorization: Api-Key <token>'. Health check: GET /healthz."
        ),
    )
    _add_run_arguments(serve)
    _add_runtime_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port)")
    serve.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"shared token clients must send (default: ${TOKEN_ENV}; prefer that: argv is visible to all)",
    )
    serve.add_argument("--max-message-mb", type=float, default=32.0, help="largest request frame (MiB)")
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to join its forward",
    )
    serve.add_argument("--max-batch", type=int, default=16, help="most samples in one forward")
    _add_threads_argument(serve)
    serve.set_defaults(handler=_serve)

    tiny = commands.add_parser("tiny", help="write a tiny random model in the released run layout")
    tiny.add_argument("out_dir", type=Path, help="run folder to create")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed")
    tiny.set_defaults(handler=_tiny)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder, or a .pt/.safetensors checkpoint inside one")
    parser.add_argument(
        "--base-vlm", type=Path, help="Qwen2.5-VL folder (overrides framework.qwenvl.base_vlm)"
    )
    parser.add_argument("--step", type=int, help="checkpoint step in a run folder (default: the newest)")


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--dtype", default="float32", help="weight and compute dtype: float32, bfloat16, float16"
    )


def _add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """For `set_torch_threads`: the spare core it leaves by default keeps other work on time."""
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default 0: all cores this process may use but one)",
    )


def _load(args: argparse.Namespace) -> InternVLAM1:
    return InternVLAM1.from_pretrained(
        args.run, base_vlm=args.base_vlm, step=args.step, device=args.device, dtype=args.dtype
    )


def _info(args: argparse.Namespace) -> int:
    files = locate_run(args.run, args.step)
    model = InternVLAM1.skeleton(files, base_vlm=args.base_vlm)
    # Memory-mapped, so checking every key and shape costs little even for the full-size model.
    weights = match_state_dict(
        model, read_state_dict(files.checkpoint), source=files.checkpoint, derived=model.tied_keys()
    )
    stored = ", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in weights.values()}))
    config = model.config
    qwen = model.qwen_vl_interface.model.config.get_text_config()
    size_mb = files.checkpoint.stat().st_size / 1e6
    image_size = f"{config.image_size[0]}x{config.image_size[1]} (w x h)" if config.image_size else "none"
    prompt = f"CoT template {config.cot_prompt!r}" if config.cot_prompt is not None else "raw instruction"
    lines = [
        f"run:          {files.run_dir}",
        f"checkpoint:   {files.checkpoint} ({size_mb:.1f} MB; {len(weights)} tensors in {stored}, "
        "keys and shapes match the config)",
        f"base VLM:     {model.processor.tokenizer.name_or_path} "
        f"(Qwen2.5-VL, {qwen.num_hidden_layers} layers, hidden {qwen.hidden_size})",
        f"DINO:         {config.dino_backbone}, {config.dino_depth} of {config.dino_size.depth} blocks",
        f"Q-Former:     hidden_states[{config.qformer_start_layer}:{config.qformer_end_layer}], "
        f"{config.num_query_tokens} queries, {config.qformer_input_dim} -> {config.qformer_output_dim}",
        f"action head:  {config.action_model_type}, {config.action_dim}-D actions, "
        f"{config.horizon}-step chunks, {config.diffusion_steps} diffusion steps",
        f"image resize: {image_size}",
        f"prompt:       {prompt}",
        "parameters:",
    ]
    counts = model.parameter_counts()
    lines += [f"  {name:<18} {count:>15,}" for name, count in counts.items()]
    lines += [f"  {'total':<18} {sum(counts.values()):>15,}", f"unnorm keys:  {', '.join(model.unnorm_keys)}"]
    print("\n".join(lines))
    return 0


def _predict(args: argparse.Namespace) -> int:
    views = [_read_image(path) for path in args.image]
    model = _load(args)
    if args.seed is not None:
        torch.manual_seed(args.seed)  # the reference fixtures seeded the global RNG right before the call
    prediction = model.predict_action(
        [views],
        [args.instruction],
        cfg_scale=args.cfg_scale,
        ddim_steps=args.ddim_steps,
        unnorm_key=args.unnorm_key,
    )
    result = {
        "normalized_actions": prediction.normalized[0].tolist(),
        "actions": prediction.actions[0].tolist(),
        "unnorm_key": prediction.unnorm_key,
        "instruction": args.instruction,
        "images": [str(path) for path in args.image],
        "seed": args.seed,
        "cfg_scale": args.cfg_scale,
        "ddim_steps": args.ddim_steps,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "timings_s": prediction.timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _answer(args: argparse.Namespace) -> int:
    image = _read_image(args.image)
    print(_load(args).answer(image, args.prompt, max_new_tokens=args.max_new_tokens))
    return 0


def _bench(args: argparse.Namespace) -> int:
    if min(args.repeats, args.answer_repeats) < 1 or min(args.warmup, args.answer_tokens, args.threads) < 0:
        raise ValueError("--repeats and --answer-repeats must be >= 1, --warmup and --answer-tokens >= 0")
    resolve_device(args.device)
    settings = BenchSettings(
        dims=args.dims,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        answer_tokens=args.answer_tokens,
        answer_repeats=args.answer_repeats,
        seed=args.seed,
        compile_dit=args.compile_dit,
        fast_dtype=str(resolve_dtype(args.fast_dtype)).removeprefix("torch.") if args.fast_dtype else None,
        threads=args.threads,
        pure_low_precision=args.pure_bf16,
        run=args.run,
    )
    result = run_benchmark(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(format_report(result))
    print(f"wrote {args.out / 'bench.json'}")
    return 0 if result["agreement_ok"] else 2


def _serve(args: argparse.Namespace) -> int:
    if args.max_message_mb <= 0 or args.batch_wait_ms < 0 or args.max_batch < 1 or args.threads < 0:
        raise ValueError(
            "--max-message-mb must be > 0, --batch-wait-ms >= 0, --max-batch >= 1, --threads >= 0"
        )
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be within [0, 65535], got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per health check otherwise
    set_torch_threads(args.threads)
    model = inference_for(_load(args))
    limits = Limits(max_samples=min(Limits.max_samples, args.max_batch))
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        token=args.token,
        max_message_bytes=int(args.max_message_mb * 2**20),
        batch_wait_s=args.batch_wait_ms / 1000,
        max_batch_samples=args.max_batch,
        limits=limits,
        model_name=str(args.run),
    )
    if settings.token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"internvla-m1: warning: serving on {args.host} without a token: anyone who can reach the port "
            "can run inference",
            file=sys.stderr,
        )
    blank = np.zeros((224, 224, 3), dtype=np.uint8)
    started = time.perf_counter()
    # The first call's one-off costs are paid here, not by the first client.
    model.predict_action([[blank]], ["warm up"], seed=0)
    print(f"warm-up {time.perf_counter() - started:.2f} s", flush=True)
    asyncio.run(_serve_until_signal(PolicyServer(model, settings)))
    return 0


async def _serve_until_signal(server: PolicyServer) -> None:
    """Serve until SIGINT or SIGTERM, then close the connections and finish the running forward."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(port: int) -> None:
        host = server.settings.host
        print(f"serving ws://{host}:{port} (health: http://{host}:{port}{HEALTH_PATH})", flush=True)

    await server.run(stop, ready)


def _tiny(args: argparse.Namespace) -> int:
    print(f"wrote {write_tiny_run(args.out_dir, seed=args.seed)}")
    return 0


def _read_image(path: Path) -> Image.Image:
    """A PNG/JPEG file, or a .npy uint8 (H, W, 3) RGB array, as an RGB PIL image; checked before loading
    the model so a wrong file fails in a second, not after the weights are read."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            return as_rgb_image(np.load(path, allow_pickle=False), str(path))
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable PNG/JPEG image or .npy array ({err})") from err


if __name__ == "__main__":
    sys.exit(main())

"""``internvla eval``: seeded simulated episodes of the task family, with and without spatial guidance.

Runs the policy node's core and the simulator without DDS (see ``internvla_bringup.evaluation``) and
writes ``<out>/eval.json``: ``episodes``, ``success_rate`` (with guidance), ``success_rate_no_guidance``,
a per-task breakdown, episode lengths and ``grounding_iou`` on the held-out scenes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from internvla_bringup.evaluation import GUIDANCE_MODES, NO_GUIDANCE, EvalSettings, evaluate
from internvla_policy.model import CheckpointError

GUIDANCE_CHOICES = {"both": ("guided", NO_GUIDANCE), "on": ("guided",), "off": (NO_GUIDANCE,)}


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="internvla eval", description=__doc__.split("\n")[0])
    result.add_argument("--episodes", type=int, default=50, help="seeded episodes per guidance setting")
    result.add_argument("--seed", type=int, default=10_000, help="first seed (training data uses 0 and up)")
    result.add_argument("--checkpoint", default="builtin", help="run folder, .pt or .safetensors, or builtin")
    result.add_argument(
        "--guidance",
        choices=sorted(GUIDANCE_CHOICES),
        default="both",
        help="spatial guidance on, off or both",
    )
    result.add_argument(
        "--guidance-mode", choices=GUIDANCE_MODES, default="overlay", help="how guidance is given"
    )
    result.add_argument("--max-steps", type=int, default=200, help="control ticks per episode (10 Hz)")
    result.add_argument("--robot", default="franka", help="robot profile (a simulated robot with a gripper)")
    result.add_argument("--out", type=Path, default=Path("eval_out"), help="folder for eval.json")
    result.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    result.add_argument(
        "--workers", type=int, default=1, help="processes sharing the seeds (one torch thread each)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, evaluate, print the summary; 0 on success, 2 on a usage or checkpoint error."""
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = tuple(args.guidance_mode if m == "guided" else m for m in GUIDANCE_CHOICES[args.guidance])
    try:
        settings = EvalSettings(
            checkpoint=args.checkpoint,
            episodes=args.episodes,
            seed=args.seed,
            guidance_mode=args.guidance_mode,
            modes=modes,
            max_steps=args.max_steps,
            robot=args.robot,
        )
        report = evaluate(settings, args.out, args.workers)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    guided, unguided = report["success_rate"], report["success_rate_no_guidance"]
    print(
        f"{report['episodes']} episodes: success {guided} with {args.guidance_mode} guidance, "
        f"{unguided} without"
    )
    print(f"grounding IoU on held-out scenes: {report['grounding_iou']}")
    print(f"wrote {args.out / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

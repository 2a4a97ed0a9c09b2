"""``internvla``: start the graph, talk to it and run the demo where ``ros2`` CLI tools do not exist.

internvla launch franka [--real] [name:=value ...]   the same graph as franka.launch.py
internvla instruct "pick up the red block"           what `ros2 topic pub /instruction` would do
internvla status                                      nodes, policy state, last spatial prompt
internvla enable | disable                            the policy's enable service
internvla demo                                        simulated Franka, one episode, demo_out/
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from internvla_bringup.graph import LAUNCH_ARGUMENTS, GraphArgumentError, GraphOptions, describe_graph
from internvla_bringup.profiles import ProfileError, available_profiles, load_profile
from internvla_bringup.runner import GraphRunner, package_available

DISCOVERY_SETTLE_S = 1.5


def parse_launch_arguments(items: Sequence[str]) -> dict[str, str]:
    """``name:=value`` items, as ``ros2 launch`` takes them."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise GraphArgumentError(f"expected name:=value, got {item!r}")
        values[name] = value
    return values


def _launch(args: argparse.Namespace) -> int:
    values = parse_launch_arguments(args.arguments)
    if args.real:
        values["sim"] = "false"
    profile = load_profile(args.robot)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix=f"internvla-{profile.name}-"))
    options = GraphOptions.from_arguments({"run_dir": str(log_dir), **values})
    specs = describe_graph(profile, options, Path(options.run_dir))
    runnable = []
    for spec in specs:
        if spec.optional and not package_available(spec.package):
            print(
                f"internvla: {spec.package} is not installed here; skipping {spec.name} "
                "(a ROS 2 install or the Docker image has it)"
            )
        else:
            runnable.append(spec)
    with GraphRunner(runnable, log_dir, max_restarts=args.max_restarts) as runner:
        print(
            "internvla: running; Ctrl-C stops the graph. Send an instruction with: "
            'internvla instruct "pick up the red block"'
        )
        runner.wait()
    return 0


def _instruct(args: argparse.Namespace) -> int:
    from internvla_bringup.ros.client import GraphClient

    with GraphClient(instruction_topic=args.topic) as client:
        matched = client.send_instruction(args.text, wait_for_subscribers_s=args.wait)
    if not matched:
        print(
            f"internvla: sent, but no node subscribes to {args.topic} yet (is the graph running?)",
            file=sys.stderr,
        )
        return 1
    print(f"internvla: instruction sent to {matched} subscriber(s): {args.text!r}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from internvla_bringup.ros.client import GraphClient

    with GraphClient() as client:
        # Discovery of every node takes a moment even when the status arrives at once.
        time.sleep(DISCOVERY_SETTLE_S)
        client.wait_for(lambda: client.latest_status is not None, args.timeout)
        print(client.describe())
    return 0 if client.latest_status is not None else 1


def _enable(args: argparse.Namespace, enable: bool) -> int:
    from internvla_bringup.ros.client import GraphClient

    with GraphClient() as client:
        ok, message = client.set_enabled(enable, service=args.service, timeout_s=args.timeout)
    print(f"internvla: {'enabled' if enable else 'disabled'}" if ok else f"internvla: refused: {message}")
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    from internvla_bringup.demo import DemoSettings, run_demo

    settings = DemoSettings(
        out_dir=Path(args.out),
        instruction=args.instruction,
        seed=args.seed,
        max_steps=args.max_steps,
        checkpoint=args.checkpoint,
        timeout_s=args.timeout,
    )
    summary = run_demo(settings)
    return 0 if summary["commands_published"] > 0 else 1


def _eval(args: argparse.Namespace) -> int:
    from internvla_bringup.eval_cli import main as eval_main

    return eval_main(args.passthrough)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="internvla", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    launch = commands.add_parser(
        "launch",
        help="start a robot's graph (the launch file's graph, without ros2 launch)",
        epilog="launch arguments: "
        + "; ".join(f"{a.name} (default {a.default!r}): {a.description}" for a in LAUNCH_ARGUMENTS),
    )
    launch.add_argument(
        "robot", help=f"profile name ({', '.join(available_profiles())}) or a profile .yaml path"
    )
    launch.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    launch.add_argument("--sim", action="store_true", help="simulated robot (the default)")
    launch.add_argument("--real", action="store_true", help="the real robot: same as sim:=false")
    launch.add_argument(
        "--log-dir", help="where node logs and parameter files go (default: a new temp folder)"
    )
    launch.add_argument(
        "--max-restarts", type=int, default=3, help="restarts of a crashed node before giving up"
    )
    launch.set_defaults(func=_launch)

    instruct = commands.add_parser("instruct", help="send an instruction to the running graph")
    instruct.add_argument("text")
    instruct.add_argument("--topic", default="/instruction")
    instruct.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber")
    instruct.set_defaults(func=_instruct)

    status = commands.add_parser("status", help="show the graph's nodes and the policy status")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(func=_status)

    for name, enable in (("enable", True), ("disable", False)):
        sub = commands.add_parser(name, help=f"{name} the policy's commands")
        sub.add_argument("--service", default="/policy/enable")
        sub.add_argument("--timeout", type=float, default=10.0)
        sub.set_defaults(func=lambda a, e=enable: _enable(a, e))

    demo = commands.add_parser(
        "demo", help="simulated Franka with the built-in model: one episode into demo_out/"
    )
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--instruction", default="pick up the red block")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--max-steps", type=int, default=120, help="control ticks before the episode ends")
    demo.add_argument("--checkpoint", default="builtin")
    demo.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit in seconds")
    demo.set_defaults(func=_demo)

    evaluate = commands.add_parser(
        "eval",
        help="seeded simulated episodes with and without spatial guidance (internvla eval --help)",
        add_help=False,
    )
    evaluate.set_defaults(func=_eval)
    return parser


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # SystemExit unwinds the context managers, so the runner stops the graph it started.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.command != "eval" and passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough  # the evaluation command has its own parser
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args)
    except (ProfileError, GraphArgumentError, RuntimeError) as error:
        print(f"internvla: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`internvla-ground`: the grounding parser on the command line, for debugging model answers.

    echo '[{"bbox_2d": [10, 20, 110, 120], "label": "red block"}]' | \\
        internvla-ground parse --source-size 640 480 --model-size 224 168

prints the same geometry the node would publish, in source-image pixels, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from .parsing import CoordinateConvention, parse_answer
from .prompts import GroundingKind


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="internvla-ground", description="Debug InternVLA-M1 grounding answers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser(
        "parse", help="read one model answer from stdin and print boxes/points/traces in source-image pixels"
    )
    parse.add_argument(
        "--source-size",
        nargs=2,
        type=_positive_int,
        required=True,
        metavar=("W", "H"),
        help="size of the camera image the answer is about",
    )
    parse.add_argument(
        "--model-size",
        nargs=2,
        type=_positive_int,
        metavar=("W", "H"),
        help="size the processor resized it to (the pixel space of the answer); "
        "required unless --normalized-1000",
    )
    parse.add_argument(
        "--normalized-1000",
        action="store_true",
        help="the answer's coordinates are normalised to 0..1000 instead of model pixels",
    )
    parse.add_argument(
        "--kind",
        choices=[k.value for k in GroundingKind],
        help="what was asked for; decides whether a list of [x, y] pairs is a trace",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when the JSON was printed (whatever the parse status), 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.normalized_1000 and args.model_size is None:
        parser.error("--model-size W H is required unless --normalized-1000 is given")
    result = parse_answer(
        sys.stdin.read(),
        source_size=tuple(args.source_size),
        model_size=tuple(args.model_size) if args.model_size else None,
        convention=CoordinateConvention.NORMALIZED_1000
        if args.normalized_1000
        else CoordinateConvention.PIXELS,
        kind=GroundingKind(args.kind) if args.kind else None,
    )
    json.dump(result.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The model benchmark: reference path against fast path, per stage and end to end, on the same inputs.

    PYTHONPATH=src/internvla_policy python src/internvla_policy/bench/bench_model.py [RUN] [--dims real]
        [--device cuda] [--out DIR] ...

The same as ``internvla-m1 bench`` (``make bench`` runs it on the CPU with the tiny model); results go
to ``<out>/bench.json``. See docs/PERFORMANCE.md.
"""

import sys

from internvla_policy.model.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

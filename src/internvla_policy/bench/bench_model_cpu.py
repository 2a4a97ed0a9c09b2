"""CPU benchmark of the InternVLA-M1 model core: milliseconds per stage (VLM, DINO, Q-Former, DiT loop)
and the peak resident memory while loading, on the tiny model unless a run folder is given.

    PYTHONPATH=src/internvla_policy python src/internvla_policy/bench/bench_model_cpu.py [RUN] [--out DIR]

The same as ``internvla-m1 bench`` (``make bench``); results go to ``<out>/bench_model_cpu.json``.
"""

import sys

from internvla_policy.model.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

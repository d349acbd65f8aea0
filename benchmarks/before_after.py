"""Two source trees side by side: RF-L open, lazy load, eager load and Predictor cold start.

Usage::

    python benchmarks/before_after.py OLD_SRC NEW_SRC [--model RF-L] [--repeat 5]

Each measurement runs in a fresh interpreter with ``PYTHONPATH`` set to one of
the two ``src`` directories; the two alternate within each repeat so machine
noise falls on both alike. Prints medians (seconds) and the new/old ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CACHE = Path.home() / ".cache" / "treeshard-bench"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
kind, path, rows = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy as np
import treeshard
if kind == "cold":  # fresh process to the first one-row prediction, imports included
    p = treeshard.Predictor(path)
    p.predict(np.load(rows)[:1])
    print(json.dumps(time.perf_counter() - t0)); sys.exit()
treeshard.open(path).info  # imports the API (and, below, sklearn): what follows is timed alone
import sklearn.ensemble, sklearn.tree
t1 = time.perf_counter()
if kind == "open":
    treeshard.open(path).info
elif kind == "lazy":
    treeshard.load(path)
elif kind == "eager":
    treeshard.load(path, lazy=False)
print(json.dumps(time.perf_counter() - t1))
"""

KINDS = ("open", "lazy", "eager", "cold")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--model", default="RF-L")
    parser.add_argument("--codec", default="lz4")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path, rows = CACHE / args.model / f"model.{args.codec}.zip", CACHE / args.model / "rows.npy"
    times: dict[tuple[str, str], list[float]] = {(k, s): [] for k in KINDS for s in ("old", "new")}
    for _ in range(args.repeat):
        for kind in KINDS:
            for side in ("old", "new"):
                env = dict(os.environ, PYTHONPATH=os.path.abspath(getattr(args, side)))
                out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(rows)], env=env, capture_output=True, text=True, check=True)
                times[kind, side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.model} ({path.name}), medians of {args.repeat} fresh processes, seconds")
    print(f"{'':8}{'old':>10}{'new':>10}{'new/old':>9}")
    for kind in KINDS:
        old, new = statistics.median(times[kind, "old"]), statistics.median(times[kind, "new"])
        print(f"{kind:8}{old:10.4f}{new:10.4f}{new / old:9.2f}")


if __name__ == "__main__":
    main()

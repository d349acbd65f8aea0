"""Swapping lazily loaded models in one process: resident memory after each drop.

``python benchmarks/swap_models.py STORE MODE``, MODE one of ``plain`` (drop the model),
``collect`` (drop it, then ``gc.collect()``), ``items`` (also read a third of its trees
before dropping it), ``eager`` (``lazy=False``). Rows from RF-L's cached ``rows.npy``.
"""

import gc
import sys
from pathlib import Path

import numpy as np
import sklearn.ensemble  # noqa: F401 - imported before the baseline

import treeshard


def rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


def main(store: str, mode: str) -> None:
    rows = np.load(Path.home() / ".cache/treeshard-bench/RF-L/rows.npy")[:1000]
    base = rss()
    for i in range(8):
        m = treeshard.load(store, **({"lazy": False} if mode == "eager" else {}))
        m.predict_proba(rows)
        if mode == "items":
            [m.estimators_[k] for k in range(0, 100, 3)]
        del m
        if mode == "collect":
            gc.collect()
        print(i, rss() - base, "MB", flush=True)
    gc.collect()
    print("after gc.collect", rss() - base, "MB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Eager loads of small models from a zarr ``MemoryStore``, a ``.zip`` and a directory.

A zarr ``Store`` object is read through zarr's event loop: each call is a hop to
its thread. Prints the median of ``--repeat`` eager loads (``lazy=False``) of a
300-row ``DecisionTreeClassifier`` and a 10-tree ``RandomForestClassifier``,
and the number of ``zarr.core.sync.sync`` calls (hops) one MemoryStore load makes.
Run it with ``PYTHONPATH`` at the tree to measure (before / after in one sitting):

    PYTHONPATH=src .venv/bin/python benchmarks/store_object_load.py --repeat 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    import numpy as np
    import zarr
    import zarr.core.sync as zarr_sync
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    import treeshard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = (X[:, 0] > 0).astype(int)
    models = {
        "tree": DecisionTreeClassifier(random_state=0).fit(X, y),
        "rf10": RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            for kind in ("zip", "dir", "mem"):
                store = zarr.storage.MemoryStore() if kind == "mem" else f"{tmp}/{name}.zip" if kind == "zip" else f"{tmp}/{name}"
                treeshard.save(model, store)
                times = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    treeshard.load(store, lazy=False)
                    times.append(time.perf_counter() - start)
                line = f"{name} {kind} {statistics.median(times) * 1e3:.2f} ms"
                if kind == "mem":
                    real, hops = zarr_sync.sync, [0]

                    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
                        hops[0] += 1
                        return real(*args, **kwargs)

                    zarr_sync.sync = counting
                    try:
                        treeshard.load(store, lazy=False)
                    finally:
                        zarr_sync.sync = real
                    line += f" ({hops[0]} hops)"
                print(line)


if __name__ == "__main__":
    main()

"""The cost of checking every chunk against the digest record (issue 11): with vs without.

Three measurements on one store (RF-L from ``~/.cache/treeshard-bench`` by default,
as a ``.zip`` and as a directory), each with ``check_chunks=True`` (the default)
and ``check_chunks=False``, interleaved ``--repeat`` times in one run (medians):

- eager load: ``treeshard.load(store, lazy=False)`` in this process (warm page cache);
- one lazy tree: ``treeshard.load(store)`` then ``estimators_[0]``, in this process;
- Predictor cold start: a fresh Python process, timed by this parent from spawn
  to exit, that imports treeshard, builds a ``Predictor`` and predicts one row.

Each is reported as wall time and as CPU time (all threads; for the cold start,
the child's user + system time): on a shared machine the CPU time of the
hashing is the steadier figure, the wall time what a user waits.

    .venv/bin/python benchmarks/chunk_check.py --repeat 7 > result.json
    .venv/bin/python benchmarks/chunk_check.py path/to/model.zip --repeat 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "treeshard-bench" / "RF-L"

PREDICTOR_CHILD = """
import sys
import numpy as np
import treeshard
predictor = treeshard.Predictor(sys.argv[1], check_chunks=sys.argv[2] == "1")
predictor.predict(np.zeros((1, predictor.n_features_in_)))
"""


def _time(fn) -> tuple[float, float]:  # noqa: ANN001
    """``(wall seconds, CPU seconds of this process and of the children it waited for)``."""
    import resource

    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    start, start_cpu = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - start, cpu() - start_cpu


def measure(store: Path, repeat: int) -> dict[str, dict[str, float]]:
    import treeshard

    def eager(check: bool) -> tuple[float, float]:
        return _time(lambda: treeshard.load(store, lazy=False, check_chunks=check))

    def one_tree(check: bool) -> tuple[float, float]:
        return _time(lambda: treeshard.load(store, check_chunks=check).estimators_[0])

    def cold(check: bool) -> tuple[float, float]:
        command = [sys.executable, "-c", PREDICTOR_CHILD, str(store), "1" if check else "0"]
        return _time(lambda: subprocess.run(command, check=True))

    samples: dict[str, dict[bool, list[tuple[float, float]]]] = {name: {True: [], False: []} for name in ("eager load", "one lazy tree", "Predictor cold start")}
    for what, fn in (("eager load", eager), ("one lazy tree", one_tree), ("Predictor cold start", cold)):
        fn(True), fn(False)  # warm-up: page cache, imports
        for i in range(repeat):
            for check in (True, False) if i % 2 == 0 else (False, True):
                samples[what][check].append(fn(check))
    out: dict[str, dict[str, float]] = {}
    for what, by in samples.items():
        out[what] = {}
        for i, clock in enumerate(("wall", "cpu")):
            checked, unchecked = (statistics.median(sample[i] for sample in by[check]) for check in (True, False))
            out[what].update({f"{clock}_checked_s": checked, f"{clock}_unchecked_s": unchecked, f"{clock}_cost_ratio": checked / unchecked - 1})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", default=str(CACHE / "model.lz4.zip"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    source = Path(args.store)
    with tempfile.TemporaryDirectory(prefix="treeshard-chunk-check-") as tmp:
        stores = {source.suffix.lstrip(".") or "directory": source}
        if source.suffix == ".zip":  # the same model as a directory
            folder = Path(tmp) / "model"
            with zipfile.ZipFile(source) as archive:
                archive.extractall(folder)
            stores["directory"] = folder
        results = {kind: measure(path, args.repeat) for kind, path in stores.items()}
    stored = source.stat().st_size if source.is_file() else None
    import os

    load = os.getloadavg()[0]
    print(json.dumps({"store": str(source), "stored_bytes": stored, "repeat": args.repeat, "load_average": load, "python": platform.python_version(), "results": results}, indent=1))


if __name__ == "__main__":
    main()

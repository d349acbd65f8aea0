"""Trees on demand (issue 3): open, partial loads, eager loads and budgeted scoring.

asv runs the classes below; ``python benchmarks/trees_on_demand.py [MODEL ...]``
prints the same figures as a table, each strategy measured side by side in
one run (medians of ``--repeat`` runs; each load in a fresh subprocess where
memory is measured, so one measurement cannot inflate another's peak).

Bytes read are counted by wrapping the store in a counting zarr store (what
a remote object store would transfer).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import models  # noqa: E402

CHILD = r"""
import json, resource, sys, time
kind, path, rows, extra = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
import numpy as np, sklearn.ensemble
X = np.load(rows)
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak: what follows is the load (and scoring)
base = rss()
t0 = time.perf_counter()
if kind == "joblib":
    import joblib
    model = joblib.load(path)
else:
    import treeshard
    model = treeshard.load(path, **extra.get("load", {}))
t1 = time.perf_counter()
prediction = model.predict_proba(X[: extra.get("rows", 1000)]) if extra.get("score") else None
t2 = time.perf_counter()
with open("/proc/self/status") as f:
    peak = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM")][0]
out = {"load": t1 - t0, "score": t2 - t1, "peak": peak - base, "resident": rss() - base}
if prediction is not None:
    np.save(extra["save"], prediction) if extra.get("save") else None
print(json.dumps(out))
"""


def child(kind: str, path: Path, rows: Path, **extra: Any) -> dict[str, float]:
    """Run one load (and optional scoring) in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path), str(rows), json.dumps(extra)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def counting_store(path: Path) -> Any:
    """A zarr store over ``path`` that counts the bytes it returns."""
    import zarr
    from zarr.storage import WrapperStore, ZipStore

    class Counting(WrapperStore):
        bytes_read = 0
        requests = 0

        async def get(self, key, prototype, byte_range=None):  # type: ignore[no-untyped-def]
            value = await super().get(key, prototype, byte_range)
            type(self).requests += 1
            type(self).bytes_read += 0 if value is None else len(value)
            return value

    inner = ZipStore(path, mode="r") if str(path).endswith(".zip") else zarr.storage.LocalStore(path, read_only=True)
    Counting.bytes_read = Counting.requests = 0
    return Counting(inner)


def median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- asv
class TimeOpen:
    """``treeshard.open``: config only, independent of model size."""

    params = (["RF-L", "RF-XL"],)
    param_names = ["model"]
    timeout = 600

    def setup(self, model: str) -> None:
        import treeshard

        self.path = models.ensure(model).path("treeshard-lz4")
        treeshard.open(self.path).close()  # imports done: the figure is the open itself

    def time_open(self, model: str) -> None:
        import treeshard

        treeshard.open(self.path).close()

    def time_lazy_load(self, model: str) -> None:
        import treeshard

        treeshard.load(self.path)


class PartialLoad:
    """Eager partial loads of the first k trees: time and bytes read, about k/n."""

    params = (["RF-L"], ["1", "10", "half", "all"])
    param_names = ["model", "trees"]
    timeout = 600

    def setup(self, model: str, trees: str) -> None:
        import treeshard

        self.path = models.ensure(model).path("treeshard-lz4")
        n = treeshard.open(self.path).info.n_estimators
        self.k = {"1": 1, "10": 10, "half": n // 2, "all": n}[trees]

    def time_partial_load(self, model: str, trees: str) -> None:
        import treeshard

        treeshard.load(self.path, estimators=self.k, lazy=False)

    def track_bytes_read(self, model: str, trees: str) -> int:
        import treeshard

        store = counting_store(self.path)
        treeshard.load(store, estimators=self.k, lazy=False)
        return type(store).bytes_read

    track_bytes_read.unit = "bytes"  # type: ignore[attr-defined]


class BudgetedScoring:
    """Scoring RF-XL with max_memory = a quarter of its size: peak RSS over the interpreter's."""

    params = (["RF-XL"],)
    param_names = ["model"]
    timeout = 1800

    def setup_cache(self) -> dict[str, Any]:
        cached = models.ensure("RF-XL")
        size = int(cached.meta["model"]["nbytes"]) or 2_200_000_000
        budget = size // 4
        run = child("treeshard", cached.path("treeshard-lz4"), cached.rows, load={"max_memory": budget}, score=True)
        return {"budget": budget, "peak": run["peak"], "score": run["score"]}

    def track_peak_over_budget(self, results: dict[str, Any], model: str) -> float:
        return (results["peak"] - results["budget"]) / 1e6

    track_peak_over_budget.unit = "MB"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- table
def table(names: list[str], repeat: int, *, open_only: bool = False) -> None:
    import numpy as np

    import treeshard

    for name in names:
        cached = models.ensure(name)
        ts, jl = cached.path("treeshard-lz4"), cached.path("joblib")
        n = treeshard.open(ts).info.n_estimators
        print(f"\n## {name}: {n} trees")
        treeshard.open(ts).close()
        print(f"open: {median_time(lambda: treeshard.open(ts).close(), repeat * 5) * 1e3:.2f} ms; "
              f"lazy load: {median_time(lambda: treeshard.load(ts), repeat * 5) * 1e3:.2f} ms")
        if open_only:
            continue
        if name == "RF-XL":
            size = int(cached.meta["model"]["nbytes"])
            budget = size // 4
            reference = Path("/tmp/treeshard-rfxl-reference.npy")
            budgeted = Path("/tmp/treeshard-rfxl-budgeted.npy")
            full = child("treeshard", ts, cached.rows, load={"lazy": False}, score=True, save=str(reference))
            run = child("treeshard", ts, cached.rows, load={"max_memory": budget}, score=True, save=str(budgeted))
            same = np.array_equal(np.load(reference), np.load(budgeted))
            print(f"model in memory {size / 1e6:.0f} MB; budget {budget / 1e6:.0f} MB")
            print(f"  full load + score 1000 rows: peak {full['peak'] / 1e6:.0f} MB, {full['load'] + full['score']:.1f} s")
            print(f"  budgeted load + score:       peak {run['peak'] / 1e6:.0f} MB = budget + {(run['peak'] - budget) / 1e6:.0f} MB, "
                  f"{run['load'] + run['score']:.1f} s; predictions identical: {same}")
            continue
        ks = sorted({1, 10, n // 2, n})
        full_bytes = None
        print("| trees | load (median) | bytes read | share of full |")
        print("| --- | --- | --- | --- |")
        for k in reversed(ks):
            seconds = median_time(lambda k=k: treeshard.load(ts, estimators=k, lazy=False), repeat)
            store = counting_store(ts)
            treeshard.load(store, estimators=k, lazy=False)
            read = type(store).bytes_read
            full_bytes = full_bytes or read
            print(f"| {k} | {seconds * 1e3:.1f} ms | {read / 1e6:.2f} MB | {read / full_bytes:.3f} |")
        rows = []
        for label, kind, extra in (("joblib.load (uncompressed)", "joblib", {}), ("treeshard eager (lz4)", "treeshard", {"load": {"lazy": False}})):
            runs = [child(kind, jl if kind == "joblib" else ts, cached.rows, **extra) for _ in range(repeat)]
            rows.append((label, statistics.median(r["load"] for r in runs), statistics.median(r["peak"] for r in runs),
                         statistics.median(r["resident"] for r in runs)))
        model_bytes = int(cached.meta["model"]["nbytes"])
        print(f"\nfresh process, in-memory trees {model_bytes / 1e6:.0f} MB")
        print("| load | median time | vs joblib | peak RSS increase | peak / trees | resident after |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, seconds, peak, resident in rows:
            print(f"| {label} | {seconds * 1e3:.0f} ms | {rows[0][1] / seconds:.2f}x | {peak / 1e6:.0f} MB | "
                  f"{peak / model_bytes if model_bytes else float('nan'):.2f} | {resident / 1e6:.0f} MB |")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", default=["RF-L", "GB-M"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--open-only", action="store_true", help="only the open and lazy load times")
    args = parser.parse_args()
    table(args.models, args.repeat, open_only=args.open_only)

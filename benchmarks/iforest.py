"""IF-L (issue 13): IsolationForest(n_estimators=300) against joblib + sklearn, in one run.

IF-L is ``IsolationForest(n_estimators=300, random_state=0)`` fitted on the X of
``make_classification(n_samples=100_000, n_features=30, n_informative=10, n_classes=3,
random_state=0)`` (RF-L's data). It is fitted once and cached in
``$TREESHARD_BENCH`` (default ``/tmp/treeshard-bench``), not in the repository::

    python benchmarks/iforest.py            # build if needed, then every figure, medians

Figures, each side by side with its baseline measured in the same run:

- file size: treeshard zip (lz4, zstd) vs joblib ``compress=3`` and uncompressed;
- eager load (``treeshard.load(lazy=False)``) vs ``joblib.load``, in this process;
- fresh process to the first one-row ``score_samples``: ``treeshard.Predictor`` vs
  ``import joblib, sklearn.ensemble; joblib.load(...)``, alternating, wall clock from the
  spawn to the child's clock after the prediction (its exit not counted);
- ``decision_function`` latency after load at 1 to 100,000 rows: sklearn (the fitted
  model) vs a lazily loaded model (the dispatch: the flat engine) vs the ``Predictor``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(os.environ.get("TREESHARD_BENCH", "/tmp/treeshard-bench"))
JOBLIB = BENCH / "if-l.joblib"
JOBLIB3 = BENCH / "if-l.compress3.joblib"
ZIP = BENCH / "if-l.zip"
ZIP_ZSTD = BENCH / "if-l.zstd.zip"
ROWS = BENCH / "X.npy"

_CHILD = {
    "treeshard Predictor": """
import time
import numpy as np
from treeshard import Predictor
model = Predictor({zip!r})
y = model.score_samples(np.asarray({row!r}))
print(time.perf_counter())
""",
    "joblib + sklearn": """
import time
import numpy as np
import joblib, sklearn.ensemble
model = joblib.load({joblib!r})
y = model.score_samples(np.asarray({row!r}))
print(time.perf_counter())
""",
}


def build() -> None:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import IsolationForest

    import treeshard

    BENCH.mkdir(parents=True, exist_ok=True)
    if ROWS.exists():
        X = np.load(ROWS)
    else:
        X, _ = make_classification(n_samples=100_000, n_features=30, n_informative=10, n_classes=3, random_state=0)
        np.save(ROWS, X)
    if not JOBLIB.exists():
        t = time.perf_counter()
        model = IsolationForest(n_estimators=300, random_state=0).fit(X)
        print(f"fit: {time.perf_counter() - t:.1f} s")
        joblib.dump(model, JOBLIB)
        joblib.dump(model, JOBLIB3, compress=3)
    model = joblib.load(JOBLIB)
    treeshard.save(model, ZIP, overwrite=True)
    treeshard.save(model, ZIP_ZSTD, codec="zstd", overwrite=True)


def _median_ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def sizes() -> None:
    print("\n| file | bytes | vs joblib compress=3 |\n| --- | ---: | ---: |")
    base = JOBLIB3.stat().st_size
    for name, path in (("joblib compress=3", JOBLIB3), ("joblib", JOBLIB), ("treeshard lz4 zip", ZIP), ("treeshard zstd zip", ZIP_ZSTD)):
        size = path.stat().st_size
        print(f"| {name} | {size:,} | {size / base:.2f}x |")


def eager_load(repeat: int) -> None:
    import joblib

    import treeshard

    rows = [
        ("joblib.load (uncompressed)", lambda: joblib.load(JOBLIB)),
        ("joblib.load (compress=3)", lambda: joblib.load(JOBLIB3)),
        ("treeshard.load(lazy=False), lz4 zip", lambda: treeshard.load(ZIP, lazy=False)),
        ("treeshard.load() (lazy), lz4 zip", lambda: treeshard.load(ZIP)),
    ]
    for _, fn in rows:
        fn()  # warm the page cache
    times = {name: [] for name, _ in rows}
    for _ in range(repeat):  # alternating
        for name, fn in rows:
            times[name].append(_median_ms(fn, 1))
    base = statistics.median(times[rows[0][0]])
    print("\n| eager load (ms, median) | time | vs joblib uncompressed |\n| --- | ---: | ---: |")
    for name, _ in rows:
        t = statistics.median(times[name])
        print(f"| {name} | {t:,.1f} | {base / t:.2f}x faster |")


def coldstart(runs: int) -> None:
    row = np.load(ROWS)[:1].tolist()
    scripts = {name: code.format(zip=str(ZIP), joblib=str(JOBLIB), row=row) for name, code in _CHILD.items()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for script in scripts.values():  # warm-up: page cache and bytecode
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, env=env)
    times = {name: [] for name in scripts}
    for _ in range(runs):
        for name, script in scripts.items():
            # spawn -> the child's clock after the prediction (one CLOCK_MONOTONIC): interpreter
            # start, imports, load and predict, not the process's exit
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env)
            times[name].append(1000 * (float(done.stdout.split()[-1]) - t))
    base = statistics.median(times["joblib + sklearn"])
    print(f"\n| fresh process to the first one-row score_samples (ms, median of {runs}) | time | vs joblib + sklearn |\n| --- | ---: | ---: |")
    for name in scripts:
        t = statistics.median(times[name])
        print(f"| {name} | {t:,.0f} | {base / t:.2f}x faster |")


def latency(repeat: int) -> None:
    import joblib

    import treeshard

    X = np.load(ROWS)
    model = joblib.load(JOBLIB)
    lazy = treeshard.load(ZIP)
    predictor = treeshard.Predictor(ZIP)
    print("\n| rows | sklearn decision_function | lazy load (dispatch) | Predictor | dispatch vs sklearn |\n| ---: | ---: | ---: | ---: | ---: |")
    for n in (1, 10, 100, 1_000, 10_000, 100_000):
        rows = X[:n]
        expected = model.decision_function(rows)
        assert np.array_equal(lazy.decision_function(rows), expected) and np.array_equal(predictor.decision_function(rows), expected)
        reps = repeat if n <= 10_000 else max(3, repeat // 4)
        times = {"sklearn": [], "lazy": [], "predictor": []}
        for _ in range(reps):  # alternating
            times["sklearn"].append(_median_ms(lambda: model.decision_function(rows), 1))
            times["lazy"].append(_median_ms(lambda: lazy.decision_function(rows), 1))
            times["predictor"].append(_median_ms(lambda: predictor.decision_function(rows), 1))
        s, d, p = (statistics.median(times[k]) for k in ("sklearn", "lazy", "predictor"))
        print(f"| {n:,} | {s:,.2f} ms | {d:,.2f} ms | {p:,.2f} ms | {s / d:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per cold-start path")
    args = parser.parse_args()
    build()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    sizes()
    eager_load(args.repeat)
    coldstart(args.runs)
    latency(args.repeat)


if __name__ == "__main__":
    main()

"""HGB-L: histogram gradient boosting, treeshard against joblib + sklearn, side by side in one run.

HGB-L is ``HistGradientBoostingClassifier(max_iter=500, early_stopping=False,
random_state=0)`` on ``make_classification(n_samples=100_000, n_features=30,
n_informative=10, n_classes=3, random_state=0)`` (RF-L's data): 1,500 trees.
It is fitted once and cached as a pickle in ``$TREESHARD_BENCH_CACHE/HGB-L``
(default ``~/.cache/treeshard-bench``; our own file, trusted). Measured:

- file size: treeshard ``.zip`` (lz4, zstd) against ``joblib.dump`` uncompressed and ``compress=3``;
- eager load (``treeshard.load``, files in the page cache) against ``joblib.load``;
- a fresh process to the first one-row prediction: ``treeshard.Predictor`` against
  ``joblib.load`` + sklearn's ``predict``;
- one-row and 1,000-row ``predict_proba`` latency: the ``Predictor``, and the model
  ``treeshard.load`` returns (its methods dispatch numeric arrays to the same engine),
  against sklearn.

Every figure is the median of repeated measurements, baseline and treeshard
interleaved in the same run. Usage::

    python benchmarks/hist_boosting.py [--repeat 7] [--model PATH.pkl]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get("TREESHARD_BENCH_CACHE", Path.home() / ".cache" / "treeshard-bench")) / "HGB-L"


def build(path: Path) -> tuple[Any, np.ndarray]:
    """HGB-L and its 1,000 benchmark rows (fitted once, then read from the cached pickle)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=100_000, n_features=30, n_informative=10, n_classes=3, random_state=0)
    if path.is_file():
        with open(path, "rb") as handle:
            return pickle.load(handle), X[:1000]  # noqa: S301 - our own cache file
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=500, early_stopping=False, random_state=0).fit(X, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(model, handle)
    return model, X[:1000]


def median_seconds(fn: Any, *, repeat: int, number: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def fresh_process(code: str, *, repeat: int) -> float:
    """Median wall time of ``python -c code`` (imports, load and first prediction included)."""
    times = []
    env = dict(os.environ)
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(model: Any, rows: np.ndarray, *, repeat: int, directory: Path) -> list[tuple[str, str, str, str]]:
    import joblib

    import treeshard

    paths = {
        "joblib": directory / "model.joblib",
        "joblib-zlib3": directory / "model-zlib3.joblib",
        "treeshard-lz4": directory / "model-lz4.zip",
        "treeshard-zstd": directory / "model-zstd.zip",
    }
    joblib.dump(model, paths["joblib"])
    joblib.dump(model, paths["joblib-zlib3"], compress=3)
    treeshard.save(model, paths["treeshard-lz4"], codec="lz4", overwrite=True)
    treeshard.save(model, paths["treeshard-zstd"], codec="zstd", overwrite=True)
    sizes = {name: path.stat().st_size for name, path in paths.items()}
    out = [
        (
            "file size (MB)",
            f"joblib compress=3 {sizes['joblib-zlib3'] / 1e6:.2f} (uncompressed {sizes['joblib'] / 1e6:.2f})",
            f"lz4 {sizes['treeshard-lz4'] / 1e6:.2f}, zstd {sizes['treeshard-zstd'] / 1e6:.2f}",
            f"zstd {sizes['treeshard-zstd'] / sizes['joblib-zlib3']:.2f}x joblib compress=3",
        )
    ]

    loaded = treeshard.load(paths["treeshard-lz4"])
    predictor = treeshard.Predictor(paths["treeshard-lz4"])
    one = rows[:1]
    assert np.array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    assert np.array_equal(predictor.predict_proba(rows), model.predict_proba(rows))

    t_joblib = median_seconds(lambda: joblib.load(paths["joblib"]), repeat=repeat)
    t_joblib3 = median_seconds(lambda: joblib.load(paths["joblib-zlib3"]), repeat=repeat)
    t_ts = median_seconds(lambda: treeshard.load(paths["treeshard-lz4"]), repeat=repeat)
    out.append(("eager load (ms)", f"joblib {t_joblib * 1e3:.0f} (compress=3: {t_joblib3 * 1e3:.0f})", f"{t_ts * 1e3:.0f}", f"{t_joblib / t_ts:.1f}x faster than joblib"))

    np.save(directory / "row.npy", one)
    baseline = f"import joblib, numpy as np; m = joblib.load({str(paths['joblib'])!r}); m.predict_proba(np.load({str(directory / 'row.npy')!r}))"
    ours = f"import treeshard, numpy as np; p = treeshard.Predictor({str(paths['treeshard-lz4'])!r}); p.predict_proba(np.load({str(directory / 'row.npy')!r}))"
    cold_base, cold_ours = [], []
    for _ in range(repeat):  # interleaved: the machine's load moves both alike
        cold_base.append(fresh_process(baseline, repeat=1))
        cold_ours.append(fresh_process(ours, repeat=1))
    cb, co = statistics.median(cold_base), statistics.median(cold_ours)
    out.append(("fresh process to first one-row prediction (s)", f"joblib + sklearn {cb:.2f}", f"Predictor {co:.2f}", f"{cb / co:.1f}x faster"))

    for n, number in ((1, 50), (1000, 3)):
        X = rows[:n]
        t_sk = median_seconds(lambda X=X: model.predict_proba(X), repeat=repeat, number=number)
        t_pr = median_seconds(lambda X=X: predictor.predict_proba(X), repeat=repeat, number=number)
        t_ld = median_seconds(lambda X=X: loaded.predict_proba(X), repeat=repeat, number=number)
        out.append((f"{n:,}-row predict_proba (ms)", f"sklearn {t_sk * 1e3:.2f}", f"Predictor {t_pr * 1e3:.2f}", f"{t_sk / t_pr:.1f}x faster"))
        out.append((f"{n:,}-row predict_proba, treeshard.load (dispatch) (ms)", f"sklearn {t_sk * 1e3:.2f}", f"loaded model {t_ld * 1e3:.2f}", f"{t_sk / t_ld:.1f}x faster"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--model", type=Path, default=None, help="a pickled HGB-L (default: the cache's, built if missing)")
    args = parser.parse_args(argv)
    model, rows = build(args.model or cache_dir() / "model.pkl")
    with tempfile.TemporaryDirectory() as tmp:
        table = run(model, rows, repeat=args.repeat, directory=Path(tmp))
    print(f"HGB-L: {model.n_iter_} iterations x {model.n_trees_per_iteration_} trees, {sum(len(p.nodes) for it in model._predictors for p in it):,} nodes")
    print("| figure | baseline | treeshard | ratio |")
    print("| --- | --- | --- | --- |")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""Cost of computing scipy's ``expit`` bit for bit without scipy (binary gradient boosting ``predict_proba``).

The ``Predictor`` reproduces ``scipy.special.expit`` with the C library's
``exp`` through :func:`math.exp` (see ``treeshard.predictor.links.expit``), a
Python-level map, where scipy runs a C loop. This measures, side by side and
alternating, the medians of:

- ``expit`` alone on N float64 values: scipy, the ``Predictor``'s, and the
  previous per-element version (a list comprehension with try/except);
- a binary ``GradientBoostingClassifier`` (200 stages, depth 3, 20 features):
  ``Predictor.decision_function`` and ``Predictor.predict_proba`` against
  sklearn's ``predict_proba`` on the same rows.

    python benchmarks/links.py               # 100,000 rows
    python benchmarks/links.py --rows 1000000 --repeat 3

It also shows what numpy's SIMD level changes on GB-M (benchmarks/models.py):
every method of the Predictor and of an eager load equals sklearn's in the same
process, and the outputs of two processes are compared:

    python benchmarks/links.py --gbm /tmp/simd.npz
    NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL" python benchmarks/links.py --gbm /tmp/base.npz
    python benchmarks/links.py --compare /tmp/simd.npz /tmp/base.npz
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _previous_expit(x: np.ndarray) -> np.ndarray:
    def one(v: float) -> float:
        try:
            return 1.0 / (1.0 + math.exp(-v))
        except OverflowError:
            return 0.0

    return np.array([one(v) for v in x.tolist()], dtype=np.float64)


def medians(functions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gbm", metavar="OUT.npz", help="check GB-M's outputs against sklearn's and save them")
    parser.add_argument("--compare", nargs=2, metavar="NPZ", help="compare two --gbm outputs")
    args = parser.parse_args()
    if args.gbm:
        return gbm_outputs(args.gbm)
    if args.compare:
        return compare(*args.compare)
    from scipy.special import expit
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    import treeshard
    from treeshard.predictor.links import expit as _expit

    raw = np.random.default_rng(0).normal(scale=3.0, size=args.rows)
    assert np.array_equal(_expit(raw), expit(raw)) and np.array_equal(_previous_expit(raw), expit(raw))
    result = medians({"scipy": lambda: expit(raw), "predictor": lambda: _expit(raw), "previous": lambda: _previous_expit(raw)}, args.repeat)
    print(f"expit of {args.rows:,} float64 (median of {args.repeat}): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in result.items()))

    X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
    model = GradientBoostingClassifier(n_estimators=200, max_depth=3, random_state=0).fit(X, y)
    rows = np.resize(X, (args.rows, X.shape[1]))
    with tempfile.TemporaryDirectory() as folder:
        treeshard.save(model, Path(folder) / "gb.zip")
        predictor = treeshard.Predictor(Path(folder) / "gb.zip")
    assert np.array_equal(predictor.predict_proba(rows), model.predict_proba(rows))
    result = medians(
        {
            "Predictor.decision_function": lambda: predictor.decision_function(rows),
            "Predictor.predict_proba": lambda: predictor.predict_proba(rows),
            "sklearn predict_proba": lambda: model.predict_proba(rows),
        },
        args.repeat,
    )
    print(f"binary GB, 200 stages, {args.rows:,} rows (median of {args.repeat}): " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in result.items()))


GBM_METHODS = ("decision_function", "predict_proba", "predict_log_proba", "predict")


def gbm_outputs(out: str) -> None:
    import sys

    import joblib

    import treeshard

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import models

    folder = models.cache_dir() / "GB-M"
    X = np.load(folder / "rows.npy")
    original = joblib.load(folder / "model.joblib")
    engines = {"Predictor": treeshard.Predictor(folder / "model.lz4.zip"), "load": treeshard.load(folder / "model.lz4.zip", lazy=False)}
    outputs = {}
    for method in GBM_METHODS:
        outputs[method] = getattr(original, method)(X)
        same = {name: np.array_equal(getattr(engine, method)(X), outputs[method]) for name, engine in engines.items()}
        print(f"{method}: equal to sklearn's in this process: {same}")
    np.savez(out, **outputs)


def compare(first: str, second: str) -> None:
    with np.load(first) as a, np.load(second) as b:
        for method in GBM_METHODS:
            x, y = a[method], b[method]
            differ = x != y
            ulps = f", at most {np.max(np.abs(x[differ] - y[differ]) / np.spacing(np.abs(x[differ]))):.0f} ulps" if differ.any() and x.dtype.kind == "f" else ""
            print(f"{method}: {int(differ.sum())} of {x.size} values differ{ulps}")


if __name__ == "__main__":
    main()

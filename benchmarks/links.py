"""Cost of computing scipy's ``expit`` bit for bit without scipy (binary gradient boosting ``predict_proba``).

The ``Predictor`` reproduces ``scipy.special.expit`` with the C library's
``exp`` through :func:`math.exp` (see ``treeshard.predictor._expit``), a
Python-level map, where scipy runs a C loop. This measures, side by side and
alternating, the medians of:

- ``expit`` alone on N float64 values: scipy, the ``Predictor``'s, and the
  previous per-element version (a list comprehension with try/except);
- a binary ``GradientBoostingClassifier`` (200 stages, depth 3, 20 features):
  ``Predictor.decision_function`` and ``Predictor.predict_proba`` against
  sklearn's ``predict_proba`` on the same rows.

    python benchmarks/links.py               # 100,000 rows
    python benchmarks/links.py --rows 1000000 --repeat 3
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
    args = parser.parse_args()
    from scipy.special import expit
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    import treeshard
    from treeshard.predictor import _expit

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


if __name__ == "__main__":
    main()

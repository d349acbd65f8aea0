"""Dispatch (issues 5 and 17): a lazily loaded forest scores through the flat engine.

Since the compiled traversal (issue 17) the engine is faster than sklearn's
forest at every batch size, so a lazily loaded forest scores every batch
through it (sklearn's trees only where the engine cannot give sklearn's
answer). This file checks that the dispatch is never slower than sklearn:

    python benchmarks/dispatch.py            # RF-L and three smaller forests
    python benchmarks/dispatch.py --quick    # fewer repeats

Each forest is loaded lazily once; its trees and its engine are built before
timing, so only scoring is timed: the engine alone, sklearn's method alone
(``type(model).predict_proba(model, X)``), and the dispatching method, each
the median of ``--repeat`` rounds that alternate the three.

asv runs :class:`DispatchLatency` on RF-L (``tests/test_bench.py`` runs it once on the tiny model).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import models  # noqa: E402

ROWS = (1, 10, 100, 300, 1000, 3000, 10000)


def _scorer(model: Any) -> tuple[str, Any]:
    from sklearn.base import is_classifier

    return ("predict_proba", model.predict_proba) if is_classifier(model) else ("predict", model.predict)


def _timed(fn: Any, X: Any, budget_s: float = 0.05) -> float:
    """Seconds per call: as many calls as fit in ``budget_s`` (at least one), averaged."""
    calls, start = 0, time.perf_counter()
    while True:
        fn(X)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return elapsed / calls


def measure(model: Any, X: Any, rows: tuple[int, ...], repeat: int) -> list[dict[str, float]]:
    """Per batch size: median seconds of the engine, sklearn, and the dispatch."""
    import numpy as np

    name, dispatch = _scorer(model)
    engine = getattr(model.estimators_.flat_engine(), name)
    sklearn = getattr(type(model), name).__get__(model)
    model.estimators_.materialize()  # every tree built and cached: only scoring is timed
    out = []
    for n in rows:
        batch = np.resize(X, (n, X.shape[1]))
        assert np.array_equal(engine(batch), sklearn(batch)) and np.array_equal(dispatch(batch), sklearn(batch))
        times: dict[str, list[float]] = {"engine": [], "sklearn": [], "dispatch": []}
        for _ in range(repeat):
            for path, fn in (("engine", engine), ("sklearn", sklearn), ("dispatch", dispatch)):
                times[path].append(_timed(fn, batch))
        out.append({"rows": n, **{path: statistics.median(t) for path, t in times.items()}})
    return out


def calibration_forests() -> dict[str, tuple[Any, Any]]:  # the forests the old crossover was measured on
    """RF-L (cached) and three forests of other depths and sizes, fitted here in seconds."""
    import numpy as np
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier

    rf_l = models.ensure("RF-L")
    X_l = np.load(rf_l.rows)
    X, y = make_classification(n_samples=20_000, n_features=30, n_informative=10, n_classes=3, random_state=0)
    Xr, yr = make_regression(n_samples=20_000, n_features=30, random_state=0)
    return {
        "RF-L (100 fully grown trees)": (rf_l.load_estimator(), X_l),
        "RF depth 6 (100 trees)": (RandomForestClassifier(100, max_depth=6, random_state=0, n_jobs=2).fit(X, y), X[:1000]),
        "RF depth 12 (300 trees)": (RandomForestClassifier(300, max_depth=12, random_state=0, n_jobs=2).fit(X, y), X[:1000]),
        "ET regressor depth 10 (100 trees)": (ExtraTreesRegressor(100, max_depth=10, random_state=0, n_jobs=2).fit(Xr, yr), Xr[:1000]),
    }


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import treeshard

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    print(f"median seconds per call of {repeat} alternating rounds; ratios are sklearn / path (above 1: faster than sklearn)")
    for label, (fitted, X) in calibration_forests().items():
        fitted.n_jobs = None  # as saved models usually are; sklearn then scores in one thread
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.zip"
            treeshard.save(fitted, path)
            model = treeshard.load(path)
            results = measure(model, X, ROWS, repeat)
            depth = model.estimators_.flat_engine().mean_leaf_depth()
        print(f"\n{label}: mean leaf depth {depth:.1f}")
        print(f"{'rows':>7s}{'engine ms':>11s}{'sklearn ms':>12s}{'dispatch ms':>13s}{'engine x':>10s}{'dispatch x':>12s}")
        for r in results:
            print(
                f"{r['rows']:7d}{1e3 * r['engine']:11.2f}{1e3 * r['sklearn']:12.2f}{1e3 * r['dispatch']:13.2f}"
                f"{r['sklearn'] / r['engine']:9.2f}x{r['sklearn'] / r['dispatch']:11.2f}x"
            )
    return 0


class DispatchLatency:
    """Scoring latency of a lazily loaded forest: engine="auto" (dispatch) vs "sklearn"."""

    params = (["RF-L"], ["auto", "sklearn"], [1, 100, 1000, 10000])
    param_names = ["model", "engine", "rows"]
    timeout = 600

    def setup(self, model: str, engine: str, rows: int) -> None:
        import numpy as np

        import treeshard

        cached = models.ensure(model, refresh=False)
        self.model = treeshard.load(cached.path("treeshard-lz4"), engine=engine)
        self.X = np.resize(np.load(cached.rows), (rows, self.model.n_features_in_))
        self.model.predict_proba(self.X[:1])  # builds the engine (auto) or the trees (sklearn)
        self.model.estimators_.materialize()

    def time_predict_proba(self, model: str, engine: str, rows: int) -> None:
        self.model.predict_proba(self.X)


if __name__ == "__main__":
    raise SystemExit(main())

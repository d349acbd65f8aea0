"""Small batches through the flat engine: the predict methods of a lazily loaded forest.

sklearn scores a forest one tree at a time, and every call pays a fixed cost
per tree (input checks, a joblib task): about 13 ms for RF-L's 100 trees even
for a single row. treeshard's flat engine (:class:`~treeshard.Predictor`)
walks all trees at once with numpy: about 25x faster for one row, but slower
per row once batches are large. So a forest loaded with ``treeshard.load``
(lazily, the default) gets instance-level methods that send a batch to
whichever is faster:

- classifiers: ``predict_proba`` and ``apply`` (sklearn's ``predict``,
  ``predict_log_proba`` and ``score`` call ``self.predict_proba``, so they
  follow);
- regressors: ``predict`` and ``apply`` (``score`` follows).

Both give bit-identical results, so the choice changes only the time. The
crossover is measured, not guessed (``BENCHMARKS.md``, "dispatch"): the
engine is faster while ``rows * mean leaf depth`` is below
:data:`CROSSOVER_STEPS`: about 700 rows for RF-L's fully grown trees (mean
leaf depth 17), 2,000 for trees of depth 6. Measured crossovers ranged over
10,600-23,900 row-steps on four forests; the constant sits at the low end,
so that near the crossover sklearn, never a slower engine, is chosen.

The engine is built on the first small batch (it reads only the columns
prediction needs, not the impurities or sample counts) and kept with the
lazy trees; under ``max_memory`` it is built only if it fits the share of
the budget the trees leave. sklearn's own methods run whenever the engine
cannot give sklearn's answer: input other than a numeric array, list,
DataFrame or scipy sparse matrix, trees appended by a warm-start fit, a
refit, or an error (which sklearn then raises in its own words).

The methods hold a reference to their forest: ``clone``, ``pickle`` and
``copy.deepcopy`` give the copy its own, but a shallow ``copy.copy`` shares
the original's (as it shares its ``estimators_``); refit a ``clone`` instead.

>>> import treeshard                                          # doctest: +SKIP
>>> model = treeshard.load("rf.zip")                          # doctest: +SKIP
>>> model.predict_proba                                       # doctest: +SKIP
<treeshard dispatch: RandomForestClassifier.predict_proba, flat engine up to 705 rows>
>>> model = treeshard.load("rf.zip", engine="sklearn")        # sklearn's methods only  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: ``rows x mean leaf depth`` below which the flat engine scores a batch faster than
#: sklearn's forest (``n_jobs=None``); measured by ``benchmarks/dispatch.py``
#: (BENCHMARKS.md, "Small-batch dispatch").
CROSSOVER_STEPS = 12_000
ENGINES = ("auto", "sklearn")
_NUMERIC_KINDS = frozenset("biuf")


def dispatched_methods(forest: Any) -> tuple[str, ...]:
    """The methods :func:`install` replaces on ``forest``."""
    from sklearn.base import is_classifier

    return ("predict_proba", "apply") if is_classifier(forest) else ("predict", "apply")


def install(forest: Any) -> None:
    """Give a lazily loaded ``forest`` methods that score small batches with the flat engine."""
    for name in dispatched_methods(forest):
        forest.__dict__[name] = SmallBatchDispatch(forest, name)


class SmallBatchDispatch:
    """``forest.<name>``: the flat engine for small batches, sklearn's own method otherwise."""

    def __init__(self, forest: Any, name: str) -> None:
        self.forest = forest
        self.name = name
        self.__name__ = name
        self.__qualname__ = f"{type(forest).__name__}.{name}"
        self.__doc__ = getattr(type(forest), name).__doc__

    def __call__(self, X: Any) -> Any:
        forest = self.forest
        engine = _engine_for(forest, X)
        if engine is not None:
            try:
                return getattr(engine, self.name)(X)
            except (TypeError, ValueError):
                pass  # bad input: let sklearn raise its own error
        return getattr(type(forest), self.name)(forest, X)

    def __reduce__(self) -> tuple[Any, tuple]:
        return SmallBatchDispatch, (self.forest, self.name)

    def __repr__(self) -> str:
        lazy = self.forest.__dict__.get("estimators_")
        rows = getattr(getattr(lazy, "engine", None), "max_rows", None)
        limit = f"up to {rows} rows" if rows is not None else "for small batches"
        return f"<treeshard dispatch: {self.__qualname__}, flat engine {limit}>"


def _engine_for(forest: Any, X: Any) -> Any:
    """The flat predictor if it should score ``X``, else None."""
    from .lazy import LazyEstimators

    lazy = forest.__dict__.get("estimators_")
    if type(lazy) is not LazyEstimators or lazy._appended:
        return None  # refitted, or grown by a warm start: sklearn's trees
    rows = _simple_rows(X)
    if rows is None or rows > CROSSOVER_STEPS:  # no tree is shallower than one step
        return None
    engine = lazy.flat_engine()
    return engine if engine is not None and rows <= lazy.engine.max_rows else None


def _simple_rows(X: Any) -> int | None:
    """Number of rows of a numeric 2-D array, list, DataFrame or scipy sparse matrix,
    which the engine converts exactly as sklearn does; None for anything else."""
    if isinstance(X, np.ndarray):
        return X.shape[0] if X.ndim == 2 and X.dtype.kind in _NUMERIC_KINDS else None
    if isinstance(X, list):
        return len(X) if X and isinstance(X[0], (list, tuple, np.ndarray)) else None
    if type(X).__module__.startswith("scipy.sparse"):  # the engine densifies blocks of rows exactly as sklearn reads them
        return X.shape[0] if len(X.shape) == 2 else None
    if type(X).__module__.startswith("pandas") and type(X).__name__ == "DataFrame":
        dtypes = X.dtypes
        ok = all(isinstance(dt, np.dtype) and dt.kind in _NUMERIC_KINDS for dt in dtypes)
        return len(X) if ok else None
    return None


class EngineSlot:
    """The flat engine of one set of lazy trees: built once on first use, thread-safe.

    ``budget``: the bytes it may take (None: no limit); over it, it is never built.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self._engine: Any = None
        self._max_rows: int | None = None
        self._refused = False
        self._lock = threading.Lock()

    def get(self, build: Any, estimated_bytes: int) -> Any:
        with self._lock:
            if self._engine is None and not self._refused:
                if self.budget is not None and estimated_bytes > self.budget:
                    self._refused = True
                else:
                    engine = build()
                    self._max_rows = max(1, int(CROSSOVER_STEPS / max(1.0, engine.mean_leaf_depth())))
                    self._engine = engine
            return self._engine

    @property
    def max_rows(self) -> int | None:
        return self._max_rows

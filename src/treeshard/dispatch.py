"""The flat engine behind the predict methods of a lazily loaded forest.

sklearn scores a forest one tree at a time, and every call pays a fixed cost
per tree (input checks, a joblib task). treeshard's flat engine
(:class:`~treeshard.Predictor`, compiled traversal) gives the same bits
faster at every batch size (``BENCHMARKS.md``, "Compiled engine"), and
without building any sklearn tree. So a forest loaded with
``treeshard.load`` (lazily, the default) gets instance-level methods that
score through the engine:

- classifiers: ``predict_proba`` and ``apply`` (sklearn's ``predict``,
  ``predict_log_proba`` and ``score`` call ``self.predict_proba``, so they
  follow);
- regressors: ``predict`` and ``apply`` (``score`` follows);
- IsolationForest: ``score_samples`` (``decision_function`` and ``predict``
  call ``self.score_samples``, so they follow).

The engine uses as many threads as the forest's ``n_jobs`` says, as sklearn
would (None: one). It is built on the first call (it reads only the columns
prediction needs, not the impurities or sample counts) and kept with the lazy
trees; under ``max_memory`` it is built only if it fits the share of the
budget the trees leave. sklearn's own methods run whenever the engine cannot
give sklearn's answer: input other than a numeric array, list, DataFrame or
scipy sparse matrix, trees appended by a warm-start fit, a refit, or an
error (which sklearn then raises in its own words).

A histogram gradient boosting model loaded by ``treeshard.load`` (always
eagerly) gets the same treatment (:class:`HistDispatch`): ``predict``, and
``predict_proba`` and ``decision_function`` for classifiers, score a numeric
2-D array with the store's compiled engine (built on first use from the
columns the load read) while the model holds the loaded trees and has no
categorical preprocessor (DataFrames and categorical models go to sklearn).

The methods refer to their forest's attributes, not to the forest itself: a
dropped model is freed at once (no reference cycle), and a method kept alone
(``predict = treeshard.load(path).predict``) keeps what it needs. ``clone``,
``pickle`` and ``copy.deepcopy`` give the copy its own methods, but a shallow
``copy.copy`` shares the original's (as it shares its ``estimators_``); refit
a ``clone`` instead.

>>> import treeshard                                          # doctest: +SKIP
>>> model = treeshard.load("rf.zip")                          # doctest: +SKIP
>>> model.predict_proba                                       # doctest: +SKIP
<treeshard dispatch: RandomForestClassifier.predict_proba, flat engine>
>>> model = treeshard.load("rf.zip", engine="sklearn")        # sklearn's methods only  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

ENGINES = ("auto", "sklearn")
_NUMERIC_KINDS = frozenset("biuf")


def dispatched_methods(forest: Any) -> tuple[str, ...]:
    """The methods :func:`install` replaces on ``forest``."""
    from sklearn.base import is_classifier

    if type(forest).__name__ == "IsolationForest":
        return ("score_samples",)  # decision_function and predict call it
    return ("predict_proba", "apply") if is_classifier(forest) else ("predict", "apply")


def install(forest: Any) -> None:
    """Give a lazily loaded ``forest`` methods that score with the flat engine."""
    for name in dispatched_methods(forest):
        forest.__dict__[name] = SmallBatchDispatch(forest, name)


class SmallBatchDispatch:
    """``forest.<name>``: the flat engine where it gives sklearn's answer, sklearn's own method otherwise.

    It refers to its forest weakly and to the forest's attributes (its ``__dict__``)
    strongly: a dropped model is freed at once, not at the next full garbage collection
    (a strong reference back from its own attribute would make a cycle). When the forest
    goes, its methods leave its attributes; one kept alone (``predict =
    treeshard.load(path).predict``) still predicts, from the attributes it holds.

    (The name is from when only small batches went to the engine; kept so pickles still load.)
    """

    def __init__(self, forest: Any, name: str) -> None:
        self.name = name
        self.__name__ = name
        self.__qualname__ = f"{type(forest).__name__}.{name}"
        self.__doc__ = getattr(type(forest), name).__doc__
        self._class = type(forest)
        self._state = forest.__dict__
        self._forest = weakref.ref(forest, _leave_attributes(forest.__dict__, name))
        self._orphan: Any = None

    @property
    def forest(self) -> Any:
        """The forest; once it is gone, an object of its class holding the same attributes."""
        forest = self._forest()
        if forest is None:
            if self._orphan is None:
                orphan = self._class.__new__(self._class)
                orphan.__dict__ = self._state  # the dispatches left it: no cycle
                self._orphan = orphan
            forest = self._orphan
        return forest

    def __call__(self, X: Any) -> Any:
        forest = self.forest
        engine = _engine_for(forest, X)
        if engine is not None:
            n_jobs = getattr(forest, "n_jobs", None)
            if engine.n_jobs != n_jobs:  # a copy sharing the arrays: the kept engine may be in use
                engine = copy.copy(engine)
                engine.n_jobs = n_jobs
            try:
                return getattr(engine, self.name)(X)
            except (TypeError, ValueError):
                pass  # bad input (or n_jobs): let sklearn raise its own error
        return getattr(type(forest), self.name)(forest, X)

    def __reduce__(self) -> tuple[Any, tuple]:
        return SmallBatchDispatch, (self.forest, self.name)

    def bound_to(self, owner: Any) -> SmallBatchDispatch:
        """This method for another object holding the same model state (``owner``)."""
        return type(self)(owner, self.name)

    def __repr__(self) -> str:
        return f"<treeshard dispatch: {self.__qualname__}, flat engine>"


def _leave_attributes(state: dict[str, Any], name: str) -> Callable[[Any], None]:
    """What runs when a forest is freed: its method ``name`` leaves its attributes ``state``
    (freeing both, unless the method is kept elsewhere)."""

    def leave(_: Any) -> None:
        if isinstance(state.get(name), SmallBatchDispatch):
            del state[name]

    return leave


def _engine_for(forest: Any, X: Any) -> Any:
    """The flat predictor if it should score ``X``, else None."""
    from .lazy import StoredEstimators

    lazy = forest.__dict__.get("estimators_")
    if type(lazy) is not StoredEstimators or lazy._appended:
        return None  # refitted, or grown by a warm start: sklearn's trees
    if _simple_rows(X) is None:
        return None
    if _refuses_nonfinite(forest) and not _all_finite(X):
        return None  # sklearn raises its own error
    return lazy.flat_engine()


def _refuses_nonfinite(forest: Any) -> bool:
    """An IsolationForest of sklearn < 1.6 (no ``__sklearn_tags__``), whose ``score_samples``
    refuses NaN and infinity; the engine scores them as sklearn 1.6+ does."""
    return type(forest).__name__ == "IsolationForest" and not hasattr(type(forest), "__sklearn_tags__")


def _all_finite(X: Any) -> bool:
    values = X.data if type(X).__module__.startswith("scipy.sparse") else np.asarray(X, dtype=np.float64)
    return bool(np.isfinite(values).all())


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


# --------------------------------------------------------------------------- histogram gradient boosting
def hist_methods(estimator: Any) -> tuple[str, ...]:
    """The methods :func:`install_hist` replaces on a histogram gradient boosting model."""
    from sklearn.base import is_classifier

    return ("predict", "predict_proba", "decision_function") if is_classifier(estimator) else ("predict",)


def install_hist(estimator: Any, build_engine: Callable[[], Any]) -> None:
    """Give a loaded ``HistGradientBoosting*`` methods that score with the store's
    :class:`~treeshard.predictor.hist.HistPredictor` (made by ``build_engine()`` on first use,
    shared by the methods) where it gives sklearn's answer."""
    trees = estimator._predictors
    engine = _EngineSlot(build_engine)
    for name in hist_methods(estimator):
        estimator.__dict__[name] = HistDispatch(estimator, name, engine, trees)


class _EngineSlot:
    """An engine built on first use (two threads may both build it: the same, benignly)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build
        self._engine: Any = None

    def get(self) -> Any:
        if self._engine is None and self._build is not None:
            self._engine = self._build()
            self._build = None  # the columns it held are no longer needed
        return self._engine


class HistDispatch(SmallBatchDispatch):
    """``model.<name>`` of a loaded histogram gradient boosting: the compiled engine for a numeric
    2-D array when the model has no categorical preprocessor and still holds the loaded trees
    (not refitted, no warm-start iterations); sklearn's own method otherwise, and on any error
    (which sklearn then raises in its own words). A pickled or cloned model uses sklearn's."""

    def __init__(self, forest: Any, name: str, engine: Any = None, trees: Any = None) -> None:
        super().__init__(forest, name)
        self.engine = engine
        self.trees = trees

    def __call__(self, X: Any) -> Any:
        model = self.forest
        if (
            self.engine is not None
            and model.__dict__.get("_predictors") is self.trees
            and model.__dict__.get("_preprocessor") is None
            and isinstance(X, np.ndarray)
            and X.ndim == 2
            and X.dtype.kind in _NUMERIC_KINDS
        ):
            engine = self.engine.get()
            try:
                if len(self.trees) == engine.n_iter_:  # no iteration appended in place
                    return getattr(engine, self.name)(X)
            except (TypeError, ValueError):
                pass  # bad input: let sklearn raise its own error
        return getattr(type(model), self.name)(model, X)

    def __reduce__(self) -> tuple[Any, tuple]:
        return HistDispatch, (self.forest, self.name)

    def bound_to(self, owner: Any) -> HistDispatch:
        return HistDispatch(owner, self.name, self.engine, self.trees)

    def __repr__(self) -> str:
        return f"<treeshard dispatch: {self.__qualname__}, compiled engine>"

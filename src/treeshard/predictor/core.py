"""The :class:`Predictor`: a stored model's predict methods over the flat engine.

Input conversion is :mod:`.inputs`, set-up from the config :mod:`.model`, the
links :mod:`.links` and the compiled traversal :mod:`.traversal`; this module
composes them into sklearn's methods, output for output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..adapters.families import BAGGED, BOOSTING, FOREST, HIST_BOOSTING, ISOLATION, TREE, family_of
from ..columns import NodeColumns
from ..errors import UnsupportedEstimatorError
from ..record import Config
from ..validate import check_trees, validate_tree_ptr
from .inputs import as_float32, blocks, check_feature_names, request_columns
from .links import expit, normalized_exp, softmax
from .model import model_from_config, read_columns
from .registry import PredictorMeta, PredictorMethod
from .traversal import _NO_COUNTS, _NO_WEIGHTS, GROUP, PAIRS_PER_THREAD, Traversal

__all__ = ["Predictor"]

#: Batches of up to this many rows are scored in one compiled call (:class:`treeshard._kernels.FewRows`;
#: its limit is 32); up to FEW_ROWS_COMPLETE for models in the complete layout.
FEW_ROWS = 32
FEW_ROWS_COMPLETE = 12


class Predictor(Traversal, metaclass=PredictorMeta):
    """Predict with a stored tree ensemble using numpy only (no sklearn, no zarr import).

    Parameters
    ----------
    store : str, os.PathLike or zarr.abc.store.Store
        A treeshard store: a directory, a ``.zip`` file, a URL or a zarr ``Store``.
    storage_options : dict, optional
        For a URL store: filesystem options (see ``docs/REMOTE.md``).
    check_chunks : bool, default True
        Check every chunk read against the store's ``treeshard.sha256`` record,
        as :func:`treeshard.load` does; ``False`` only for trusted local files.
    n_jobs : int or None, default=-1
        Threads a large batch is scored with, as sklearn's ``n_jobs``: -1 for
        every core this process may use, -2 for all but one, None for 1.
        Outputs do not depend on it. Settable later as the attribute ``n_jobs``.
    public_key : PEM bytes, path or Ed25519PublicKey, optional
        Refuse a store not signed by this key (:class:`~treeshard.SignatureError`), as
        :func:`treeshard.load` does: every chunk read is then checked against the signed
        record (needs ``pip install 'treeshard[sign]'``).

    Attributes
    ----------
    estimator : str
        The stored estimator's class name, e.g. ``"RandomForestClassifier"``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only if the model was fitted on named features.
    classes_ : ndarray, or list of ndarray for multi-output classifiers
        Only for classifiers.
    n_outputs_ : int
    n_estimators : int
        Number of trees (for gradient boosting: of stages).

    Notes
    -----
    Methods follow the estimator: ``predict`` and ``apply`` always;
    ``predict_proba`` and ``predict_log_proba`` for classifiers; ``decision_function`` for gradient
    boosting classifiers; ``score_samples``, ``decision_function`` and ``predict`` (no ``apply``)
    for an IsolationForest (:mod:`.isolation`). Every output is bit-identical to the original
    estimator's on the running machine (outputs through ``exp``/``log`` may
    differ between CPUs, for sklearn as for the predictor; see the module
    docstring), and input is validated like sklearn (feature count, feature
    names of a DataFrame, NaN and infinity). ``X`` may be dense or a scipy
    sparse matrix or array of any format.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, treeshard
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "iris.zip")
    >>> treeshard.save(model, path)
    >>> predictor = treeshard.Predictor(path)
    >>> predictor.predict(X[:3])
    array([0, 0, 0])
    >>> np.array_equal(predictor.predict_proba(X), model.predict_proba(X))
    True
    """

    n_jobs: int | None = -1
    _registry_root = True  # HistPredictor and PipelinePredictor count as Predictors (see .registry)

    def __init__(
        self,
        store: Any,
        *,
        storage_options: dict[str, Any] | None = None,
        check_chunks: bool = True,
        n_jobs: int | None = -1,
        public_key: Any = None,
    ) -> None:
        from ..reader import StoreReader

        self.n_jobs = n_jobs
        reader = StoreReader(store, storage_options=storage_options, check_chunks=check_chunks)
        if public_key is not None:
            try:  # the root was checked against the record when opened; every later read is too
                reader.check_signature(public_key)
            except BaseException:
                reader.close()
                raise
        if reader.pipeline is not None:
            self._serve_pipeline(reader)
            return
        try:
            served = Predictor._of_model(reader, n_jobs)
        finally:
            reader.close()
        # A histogram boosting store is served by its own class, with the same interface
        # (hist imports nothing of this module).
        self.__class__ = type(served)  # type: ignore[assignment]
        self.__dict__.update(served.__dict__)

    @staticmethod
    def _of_model(reader: Any, n_jobs: int | None) -> Any:
        """The predictor of the single model ``reader`` reads: a store's, or an ensemble of a pipeline store."""
        config = reader.config
        if family_of(config.estimator) == HIST_BOOSTING:  # its own node columns and walk
            from ..hist_columns import read_hist_columns
            from .hist import HistPredictor

            hist = HistPredictor.__new__(HistPredictor)
            hist.n_jobs = n_jobs
            hist._setup_hist(config, lambda: read_hist_columns(reader, config.trees.n_trees), reader.read_extra)
            return hist
        predictor = Predictor.__new__(Predictor)
        predictor.n_jobs = n_jobs
        predictor._setup_model(config)
        predictor._setup_trees(predictor._read_columns(reader, [(0, config.trees.n_trees)], config.trees))
        return predictor

    def _serve_pipeline(self, reader: Any) -> None:
        """Become a :class:`~treeshard.pipeline.serve.PipelinePredictor` over ``reader``'s pipeline."""
        from ..pipeline.serve import PipelinePredictor

        def ensemble(node: Any) -> Any:
            step = reader.for_model(node.group, node.config)
            try:
                return Predictor._of_model(step, self.n_jobs)
            finally:
                step.close()

        try:
            served = PipelinePredictor(reader.pipeline, ensemble, reader)
        finally:
            reader.close()
        self.__class__ = PipelinePredictor  # type: ignore[assignment]
        self.__dict__.update(served.__dict__)

    @classmethod
    def for_trees(cls, reader: Any, indices: Any, *, n_jobs: int | None = -1) -> Predictor:
        """A predictor over trees ``indices`` (global ids, in order) of a store opened by a
        :class:`~treeshard.reader.StoreReader`: what a lazily loaded forest scores small
        batches with. Only the columns prediction needs are read, and checked as in a load.

        >>> import treeshard, zarr
        >>> from sklearn.ensemble import RandomForestRegressor
        >>> from treeshard.reader import StoreReader
        >>> store = zarr.storage.MemoryStore()
        >>> forest = RandomForestRegressor(n_estimators=3, random_state=0).fit([[0], [1], [2]], [5.0, 7.0, 9.0])
        >>> treeshard.save(forest, store)
        >>> Predictor.for_trees(StoreReader(store), [0, 2]).n_estimators
        2
        """
        config = reader.config
        if family_of(config.estimator) not in BAGGED:
            raise UnsupportedEstimatorError(f"Predictor.for_trees needs a forest, not {config.estimator}")
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0 or indices.min() < 0 or indices.max() >= config.trees.n_trees:
            raise ValueError(f"tree indices must be in [0, {config.trees.n_trees}), got {indices.size} of them")
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        runs = [(int(run[0]), int(run[-1]) + 1) for run in np.split(indices, breaks)]
        counts = reader.tree_ptr[indices + 1] - reader.tree_ptr[indices]  # read and checked by the reader
        layout = dataclasses.replace(config.trees, n_trees=len(indices), n_nodes=int(counts.sum()))
        self = cls.__new__(cls)
        self.n_jobs = n_jobs
        self._setup_model(dataclasses.replace(config, trees=layout))
        self._setup_trees(self._read_columns(reader, runs, layout))
        return self

    @classmethod
    def from_columns(cls, config: Config, columns: NodeColumns, *, n_jobs: int | None = -1) -> Predictor:
        """A predictor over node columns already in memory (``value`` decoded to float64).

        For code that has read node columns itself (all of them, e.g. with
        :meth:`~treeshard.reader.StoreReader.read_nodes`; :meth:`for_trees` reads only
        what prediction needs). The columns are validated again: nothing reaches the
        traversal unchecked.

        >>> import treeshard, zarr
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> from treeshard.reader import StoreReader
        >>> store = zarr.storage.MemoryStore()
        >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [5.0, 7.0]), store)
        >>> reader = StoreReader(store)
        >>> Predictor.from_columns(reader.config, reader.read_nodes(0, 1)).predict([[0.9]])
        array([7.])
        """
        if family_of(config.estimator) == ISOLATION:
            raise UnsupportedEstimatorError("Predictor.from_columns: an IsolationForest also needs its fitted arrays; use Predictor(store)")
        self = cls.__new__(cls)
        self.n_jobs = n_jobs
        self._setup_model(config)
        self._counts = self._weights = None
        validate_tree_ptr(columns.tree_ptr, n_trees=config.trees.n_trees, n_nodes=config.trees.n_nodes)
        self._setup_trees(columns, check_trees(columns, config.trees)[1])
        return self

    # ------------------------------------------------------------------ set-up
    def _setup_model(self, config: Config) -> None:
        self._isolation = None
        if family_of(config.estimator) == ISOLATION:
            from .isolation import setup_isolation

            self._isolation = setup_isolation(self, config)
            return
        model = model_from_config(config)
        self.config = config
        self._layout = config.trees
        self.estimator = model.estimator
        self._is_forest = model.family == FOREST
        self._is_boosting = model.family == BOOSTING
        self._is_tree = model.family == TREE
        self._is_classifier = model.is_classifier
        self._allow_nan = model.allow_nan
        self.n_features_in_ = model.n_features_in_
        if model.feature_names_in_ is not None:
            self.feature_names_in_ = model.feature_names_in_
        self.n_estimators = model.n_estimators
        self.n_outputs_ = model.n_outputs_
        if model.classes_ is not None:
            self.classes_, self.n_classes_ = model.classes_, model.n_classes_
        if self._is_boosting:
            self._k, self._learning_rate, self._link, self._init_raw = model.k, model.learning_rate, model.link, model.init_raw

    def _setup_trees(self, cols: NodeColumns, depths: np.ndarray | None = None) -> None:
        super()._setup_trees(cols, depths)
        self._few = self._few_rows()

    def _few_rows(self) -> Any:
        """The compiled scorer of one row or a few (:class:`treeshard._kernels.FewRows`), or None
        where every call takes the general path: an IsolationForest, multi-output trees, named
        features (whose check warns about an array)."""
        if self._isolation is not None or self.n_outputs_ != 1 or hasattr(self, "feature_names_in_"):
            return None
        from .._kernels import FewRows

        width = self._value_width
        k = self._k if self._is_boosting else 1
        init = self._init_raw if self._is_boosting else np.zeros(k * width)
        complete = None if self._complete is None else (self._complete[0], self._complete[2], self._complete[3])
        return FewRows(
            self._nodes,
            self._nan_right,
            self._roots,
            self._value,
            self._counts if self._counts is not None else _NO_COUNTS,
            self._weights if self._weights is not None else _NO_WEIGHTS,
            complete,
            np.ascontiguousarray(init, dtype=np.float64),
            n_features=self.n_features_in_,
            depth=self._walk_depth,
            group=GROUP,
            # Rows a call takes: fewer than the general path's Python costs (measured: a walk
            # per row beats the complete layout's comparisons below about 12 rows), and only
            # as many as stay in the calling thread (Traversal._threads).
            max_rows=max(1, min(FEW_ROWS_COMPLETE if complete else FEW_ROWS, (2 * PAIRS_PER_THREAD - 1) // len(self._roots))),
            scale=self._learning_rate if self._is_boosting else 1.0,
            k=k,
            divisor=float(len(self._roots)) if self._is_forest else 1.0,
            single_tree=self._is_tree,
            allow_nan=self._allow_nan and not self._is_boosting,
            expit_scale=2.0 if self._is_boosting and self._link == "half_logit" else 1.0,
        )

    def _scorer(self) -> Any:
        """``_few``, unless ``n_jobs`` is one the general path refuses (with its ValueError)."""
        n_jobs = self.n_jobs
        return self._few if n_jobs is None or (type(n_jobs) is int and n_jobs != 0) else None

    def _read_columns(self, reader: Any, runs: list[tuple[int, int]], selected: Any) -> NodeColumns:
        """The node columns prediction needs (:func:`.model.read_columns`), keeping the
        leaf counts, weights and depths for :meth:`_setup_trees`."""
        columns, self._counts, self._weights, self._depths = read_columns(reader, runs, selected)
        if self._isolation is not None:
            self._counts = self._weights = None  # the values are replaced by path terms
            columns = self._isolation.prepare(reader, runs, columns)
        return columns

    # ------------------------------------------------------------------ input
    def _validate(self, X: Any, *, allow_nan: bool, name: str | None = None, finite: bool = True) -> Any:
        """``X`` checked and converted like sklearn's ``validate_data`` (:mod:`.inputs`);
        ``name`` is the estimator sklearn's messages name (default: this one)."""
        names = getattr(self, "feature_names_in_", None)
        columns = None if type(X) is np.ndarray else request_columns(X, names, ["float"] * self.n_features_in_)
        if columns is not None:  # a JSON-style request, by the names the model was fitted on
            X = np.column_stack(columns)
        else:
            check_feature_names(X, names, self.estimator)
        return as_float32(X, name=name or self.estimator, n_features_in=self.n_features_in_, allow_nan=allow_nan, finite=finite)

    # ------------------------------------------------------------------ scoring
    def _tree_values(self, X32: Any) -> np.ndarray:
        """A single tree's leaf values by row, (n_rows, value_width)."""
        out = [self._node_values(self._leaves(block)[0]) for block in blocks(X32)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _summed_values(self, X32: Any) -> np.ndarray:
        """Sum over trees, in tree order from zeros, of each row's leaf values: (n_rows, value_width)."""
        if type(X32) is np.ndarray:  # dense: one block (spared the generator, for one row's latency)
            return self._sum(X32, None, scale=1.0, k=1)
        return np.concatenate([self._sum(block, None, scale=1.0, k=1) for block in blocks(X32)])

    def _raw_boosting(self, X32: Any) -> np.ndarray:
        """Gradient boosting raw predictions (n_rows, K): init + sum of learning_rate * leaf value, stage by stage."""
        if type(X32) is np.ndarray:
            return self._sum(X32, self._init_raw, scale=self._learning_rate, k=self._k)
        return np.concatenate([self._sum(block, self._init_raw, scale=self._learning_rate, k=self._k) for block in blocks(X32)])

    # ------------------------------------------------------------------ public methods
    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels or values, as the estimator's ``predict``."""
        few = self._scorer()
        if few is not None:  # one row or a few, in one compiled call (None: X is left to the general path)
            if not self._is_classifier:
                values = few.scores(X, True)
                if values is not None:
                    return values
            else:
                index = few.sign_index(X) if self._is_boosting and self._k == 1 else few.index(X)
                if index is not None:
                    return self.classes_.take(index, axis=0)
        if self._isolation is not None:
            return self._isolation.predict(self.decision_function(X))
        if self._is_boosting:
            if not self._is_classifier:
                return self._raw_boosting(self._validate(X, allow_nan=False)).ravel()
            raw = self.decision_function(X)
            encoded = (raw >= 0).astype(int) if raw.ndim == 1 else np.argmax(raw, axis=1)
            return self.classes_[encoded]
        X32 = self._validate(X, allow_nan=self._allow_nan)
        if not self._is_classifier:
            return self._regression(X32)
        proba = self._proba(X32, full_width=not self._is_forest)
        if self.n_outputs_ == 1:
            return self.classes_.take(proba.argmax(axis=1), axis=0)
        predictions = np.empty((X32.shape[0], self.n_outputs_), dtype=self.classes_[0].dtype)
        for k in range(self.n_outputs_):
            predictions[:, k] = self.classes_[k].take(np.argmax(proba[k], axis=1), axis=0)
        return predictions

    def _regression(self, X32: np.ndarray) -> np.ndarray:
        if self._is_forest:
            mean = self._summed_values(X32)
            mean /= len(self._roots)
        else:
            mean = self._tree_values(X32)
        return mean[:, 0] if self.n_outputs_ == 1 else mean

    def _proba(self, X32: np.ndarray, *, full_width: bool = False) -> Any:
        layout = self._layout
        if self._is_forest:
            proba = self._summed_values(X32)
            proba /= len(self._roots)
        else:
            proba = self._tree_values(X32)
        if self.n_outputs_ == 1:
            return proba
        proba = proba.reshape(X32.shape[0], self.n_outputs_, max(layout.n_classes))
        return [proba[:, k] if full_width else proba[:, k, : layout.n_classes[k]] for k in range(self.n_outputs_)]

    @PredictorMethod("_is_classifier")
    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, as the estimator's ``predict_proba`` (a list for multi-output)."""
        few = self._scorer()
        if few is not None:
            if not self._is_boosting:
                proba = few.scores(X)
            elif self._k == 1:
                proba = few.expit(X)
            else:  # softmax with the max subtracted in C, then numpy's exp and sum as sklearn
                proba = few.shifted(X)
                if proba is not None:
                    return normalized_exp(proba)
            if proba is not None:
                return proba
        if self._is_boosting:
            raw = self.decision_function(X)
            if self._k > 1:
                return softmax(raw)
            # the loss's predict_proba: HalfLogitLink.inverse is expit(2 * raw)
            proba = np.empty((raw.shape[0], 2), dtype=np.float64)
            proba[:, 1] = expit(2 * raw if self._link == "half_logit" else raw)
            proba[:, 0] = 1 - proba[:, 1]
            return proba
        return self._proba(self._validate(X, allow_nan=self._allow_nan))

    @PredictorMethod("_is_classifier")
    def predict_log_proba(self, X: Any) -> Any:
        """``np.log`` of :meth:`predict_proba`, as the estimator's ``predict_log_proba``."""
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return [np.log(p) for p in proba]
        return np.log(proba)

    @PredictorMethod("_has_decision_function")
    def decision_function(self, X: Any) -> np.ndarray:
        """Gradient boosting raw scores, as ``decision_function``: (n,) for binary, (n, K) otherwise;
        for an IsolationForest, ``score_samples(X) - offset_``."""
        if self._isolation is not None:
            return self._isolation.decision_function(self.score_samples(X))
        few = self._scorer()
        if few is not None:
            raw = few.scores(X, self._k == 1)
            if raw is not None:
                return raw
        raw = self._raw_boosting(self._validate(X, allow_nan=False))
        return raw.ravel() if raw.shape[1] == 1 else raw

    @PredictorMethod("_is_isolation")
    def score_samples(self, X: Any) -> np.ndarray:
        """An IsolationForest's ``score_samples``: the opposite of the anomaly score
        (:mod:`.isolation`: sklearn's path terms summed tree by tree, then its arithmetic)."""
        X32 = self._validate(X, allow_nan=True, finite=False)
        depths = np.concatenate([self._sum(block, np.zeros(1), scale=1.0, k=1)[:, 0] for block in blocks(X32)])
        return self._isolation.score_samples(depths, len(self._roots))

    @PredictorMethod("_has_apply")
    def apply(self, X: Any) -> np.ndarray:
        """Leaf index of every row in every tree, as the estimator's ``apply``.

        Shapes and dtypes follow sklearn: (n,) for a tree, (n, n_trees) for a
        forest, float64 (n, n_stages, K) for a gradient boosting classifier and
        (n, n_stages) for a regressor.
        """
        # gradient boosting validates X with its first tree (a DecisionTreeRegressor), which takes NaN
        name = "DecisionTreeRegressor" if self._is_boosting else None
        X32 = self._validate(X, allow_nan=self._allow_nan or self._is_boosting, name=name)
        local = np.concatenate([self._leaves(b) for b in blocks(X32)], axis=1) - self._roots[:, None]
        if self._is_boosting:
            leaves = local.T.reshape(X32.shape[0], self.n_estimators, self._k).astype(np.float64)
            return leaves if self._is_classifier else leaves.reshape(X32.shape[0], self.n_estimators)
        return local[0] if self._is_tree else local.T

    @property
    def _is_boosting_classifier(self) -> bool:
        return self._is_boosting and self._is_classifier

    @property
    def _is_isolation(self) -> bool:
        return self._isolation is not None

    @property
    def _has_decision_function(self) -> bool:
        return self._is_boosting_classifier or self._is_isolation

    @property
    def _has_apply(self) -> bool:
        return self._isolation is None  # sklearn's IsolationForest has no apply

    def __repr__(self) -> str:
        return f"<treeshard.Predictor {self.estimator} n_estimators={self.n_estimators} n_features={self.n_features_in_}>"

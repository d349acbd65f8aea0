"""The flat predictor: scoring straight from the node columns, without sklearn.

:class:`Predictor` reads a store's config and the node columns it needs,
validates them, lays every node out as one 16-byte record (threshold,
feature, child offsets) and predicts with treeshard's compiled traversal
(:mod:`treeshard._kernels`): without the GIL, a block of rows at a time
through each tree in turn, row blocks spread over ``n_jobs`` threads.
Neither scikit-learn nor zarr is imported (treeshard's own directory and zip
stores are read by :mod:`treeshard._fastread`), which is what a serverless
cold start needs.

Every output is bit-identical to the saved estimator's:

- ``X`` is converted to float32 as sklearn does, and a split sends a row left
  when ``x <= threshold`` with ``x`` promoted to float64. The predictor
  compares in float32 against each threshold rounded *down* to float32,
  which is the same test: for a float32 ``x``, ``x <= t`` exactly when ``x``
  is at most the largest float32 not above ``t``.
- NaN goes left exactly when the node's ``missing_go_to_left`` is set, as in
  sklearn's ``Tree.apply``.
- Sparse ``X`` (any scipy.sparse matrix or array) is converted by the same
  scipy calls as sklearn's (``asformat("csr")``, then ``astype(float32)``,
  which sums duplicate entries in float32) and densified a block of rows at a
  time (at most ``SPARSE_BLOCK_BYTES``), holding what sklearn's CSR traversal
  reads: 0.0 where nothing is stored and, for an entry still stored twice (a
  float32 CSR or CSC input), the one stored last. sklearn refuses NaN and
  infinity in sparse ``X`` for every estimator, and so does the predictor;
  scipy is imported only when ``X`` is a scipy object.
- Forest averages are accumulated tree by tree in tree order starting from
  zeros, then divided by the number of trees (a sequential left fold per
  row, whichever thread scores it); gradient boosting adds
  ``learning_rate * value`` stage by stage onto the init estimator's raw
  prediction, which is computed with the same float operations as sklearn's
  ``DummyClassifier``/``DummyRegressor`` + loss link.
- Whatever goes through ``exp`` or ``log`` is computed by the functions
  sklearn calls, in the same dtype and order: numpy's ``np.exp``/``np.log``
  for the multinomial link (softmax, geometric mean) and ``predict_log_proba``;
  scipy's ``expit``/``logit`` for the binary links, which call the C library's
  ``exp``/``log``/``log1p``, as :mod:`math` does (scipy is not imported).
  These outputs equal sklearn's on the running machine; numpy's ``exp`` and
  ``log`` round differently per SIMD level, so they may differ between CPUs.

A serverless handler opens the model once per container, at import time, and
predicts per request (the first request then costs the interpreter, numpy,
treeshard's own small imports and reading the store, never sklearn or zarr)::

    import numpy as np
    import treeshard

    MODEL = treeshard.Predictor("model.zip")  # module level: once per cold start

    def handler(event, context):
        return {"label": MODEL.predict(np.asarray([event["features"]])).tolist()}

Not supported: custom ``init`` estimators of gradient boosting (treeshard
cannot store them either), and NaN in a DataFrame of sparse columns (sklearn
sends it right at every split, whatever ``missing_go_to_left`` says): it is
refused.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .adapters.base import decode_param, decode_value
from .adapters.families import BAGGED, BOOSTING, ESTIMATORS, FOREST, ISOLATION, TREE, family_of
from .adapters.gradient_boosting import stages_problem
from .columns import NODE_COLUMNS, TREE_PTR_DTYPE, NodeColumns, check_weighted_counts
from .errors import ArrayError, ConfigError, UnsupportedEstimatorError
from .record import Config, TreeLayout
from .validate import check_trees, validate_tree_ptr

if TYPE_CHECKING:
    from .reader import StoreReader

__all__ = ["Predictor"]

#: Node columns the predictor reads; the others (impurity, sample counts) are never decoded.
PREDICT_COLUMNS = ("left_child_offset", "right_child_offset", "feature", "threshold", "missing_go_to_left", "value")
#: Rows the traversal takes through one tree before moving to the next (the tree stays in cache).
BLOCK_ROWS = 1 << 16
#: Tree walks the traversal interleaves (their memory loads overlap).
GROUP = 16
#: Models no deeper than this are walked in lockstep, every walk taking max-depth steps (fewer
#: instructions per step); deeper trees hand a finished walk's slot to the next one.
LEVEL_WALK_DEPTH = 8
#: Rows the complete-layout traversal takes through every tree at a time.
COMPLETE_BLOCK_ROWS = 512
#: Leaf ids a sum buffers before adding values: how many trees a small batch walks at once.
BUFFER_PAIRS = 1 << 14
#: A batch is spread over threads only above this many (row, tree) pairs per thread: below, starting
#: a thread costs more than it saves.
PAIRS_PER_THREAD = 1 << 14
#: Sparse X is densified one block of rows at a time; a dense block takes at most this many bytes (or one row).
SPARSE_BLOCK_BYTES = 1 << 24
_EPS = float(np.finfo(np.float64).eps)
#: ``math.exp`` of anything above this may overflow (``log(DBL_MAX)`` is 709.78...): such values take the slow path.
_EXP_SAFE = 709.0


class _Method:
    """A method that exists only for some estimators (like sklearn's ``available_if``)."""

    def __init__(self, check: str) -> None:
        self.check = check

    def __call__(self, fn: Any) -> _Method:
        self.fn = fn
        self.__doc__ = fn.__doc__
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.fn
        if not getattr(obj, self.check):
            raise AttributeError(f"this Predictor ({obj.estimator}) has no {self.name}()")
        return self.fn.__get__(obj, owner)


class Predictor:
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
    for an IsolationForest (:mod:`treeshard.isolation`). Every output is bit-identical to the original
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

    def __init__(
        self, store: Any, *, storage_options: dict[str, Any] | None = None, check_chunks: bool = True, n_jobs: int | None = -1
    ) -> None:
        from .reader import StoreReader

        self.n_jobs = n_jobs
        reader = StoreReader(store, storage_options=storage_options, check_chunks=check_chunks)
        try:
            self._setup_model(reader.config)
            columns = self._read_columns(reader, [(0, reader.config.trees.n_trees)], reader.config.trees)
        finally:
            reader.close()
        self._setup_trees(columns)

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
        import dataclasses

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

    # ------------------------------------------------------------------ loading
    def _setup_model(self, config: Config) -> None:
        layout = config.trees
        self.estimator = config.estimator
        self.config = config
        self._layout = layout
        family = family_of(config.estimator)
        self._is_forest = family == FOREST
        self._is_boosting = family == BOOSTING
        self._isolation = None
        if family is None:
            raise UnsupportedEstimatorError(f"Predictor does not support {config.estimator}")
        if family == ISOLATION:
            from .isolation import setup_isolation

            setup_isolation(self, config)
            return
        self._is_classifier = ESTIMATORS[config.estimator].is_classifier
        fitted = config.fitted

        def get(name: str) -> Any:
            if name not in fitted:
                raise ConfigError(f"config.fitted: missing required key {name!r}")
            return decode_value(f"config.fitted.{name}", fitted[name])

        n_features = get("n_features_in_")
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features != layout.n_features:
            raise ConfigError(f"config.fitted.n_features_in_: {n_features!r}, but trees have {layout.n_features} features")
        self.n_features_in_ = int(n_features)
        if "feature_names_in_" in fitted:
            names = get("feature_names_in_")
            if not (isinstance(names, np.ndarray) and names.shape == (layout.n_features,) and all(isinstance(v, str) for v in names.tolist())):
                raise ConfigError(f"config.fitted.feature_names_in_: expected {layout.n_features} strings")
            self.feature_names_in_ = names.astype(object)
        self.n_estimators = layout.n_trees
        self.n_outputs_ = layout.n_outputs
        # sklearn accepts NaN wherever the tree estimator does (all forests and
        # decision trees; extra trees only with the random splitter), never in
        # gradient boosting's predict/decision_function.
        self._allow_nan = self._is_forest or config.estimator.startswith("DecisionTree") or config.params.get("splitter") == "random"
        if self._is_boosting:
            self._setup_boosting(config, get)
        elif self._is_classifier:
            classes, n_classes = get("classes_"), get("n_classes_")
            if layout.n_outputs == 1:
                _check_labels("config.fitted.classes_", classes, layout.n_classes[0])
                ok = isinstance(n_classes, (int, np.integer)) and n_classes == layout.n_classes[0]
            else:
                if not (isinstance(classes, list) and len(classes) == layout.n_outputs):
                    raise ConfigError(f"config.fitted.classes_: expected a list of {layout.n_outputs} arrays")
                for k, labels in enumerate(classes):
                    _check_labels(f"config.fitted.classes_[{k}]", labels, layout.n_classes[k])
                ok = isinstance(n_classes, (list, np.ndarray)) and list(n_classes) == list(layout.n_classes)
            if not ok:
                raise ConfigError(f"config.fitted.n_classes_: {n_classes!r} does not match the trees' {list(layout.n_classes)}")
            self.classes_, self.n_classes_ = classes, n_classes
        elif set(layout.n_classes) != {1}:
            raise ConfigError("config.trees.n_classes: a regressor's trees have 1 class per output")

    def _setup_boosting(self, config: Config, get: Any) -> None:
        layout = config.trees
        if layout.n_outputs != 1 or layout.n_classes != (1,):
            raise ConfigError("config.trees: gradient boosting trees have one output and one value")
        k = get("n_trees_per_iteration_")
        stages = get("n_estimators_")
        for name, value in (("n_trees_per_iteration_", k), ("n_estimators_", stages)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"config.fitted.{name}: expected a positive integer, got {value!r}")
        problem = stages_problem(layout.n_trees, k, n_estimators=stages)
        if problem:
            raise ConfigError(f"config.fitted.n_estimators_: {problem}")
        learning_rate = decode_param("config.params.learning_rate", config.params.get("learning_rate"))  # maybe a numpy scalar
        if isinstance(learning_rate, (bool, np.bool_)) or not isinstance(learning_rate, (int, float, np.integer, np.floating)) or not math.isfinite(learning_rate):
            raise ConfigError(f"config.params.learning_rate: expected a number, got {learning_rate!r}")
        self._learning_rate = float(learning_rate)
        self._k, self.n_estimators = k, layout.n_trees // k  # the stored stages (n_estimators_ may count one more)
        loss = config.params.get("loss")
        if self._is_classifier:
            classes = get("classes_")
            n_classes = get("n_classes_")
            _check_labels("config.fitted.classes_", classes, max(2, len(classes)) if isinstance(classes, np.ndarray) else 2)
            if n_classes != len(classes) or k != (1 if len(classes) == 2 else len(classes)):
                raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k} does not fit {len(classes)} classes")
            if loss not in ("log_loss", "exponential") or (loss == "exponential" and k != 1):
                raise ConfigError(f"config.params.loss: {loss!r} is not a loss of this classifier")
            self.classes_, self.n_classes_ = classes, int(n_classes)
            self._link = "multinomial" if k > 1 else ("half_logit" if loss == "exponential" else "logit")
        elif k != 1:
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k}, a regressor has 1")
        self._init_raw = self._init_raw_prediction(config.fitted.get("init_"))

    def _init_raw_prediction(self, record: Any) -> np.ndarray:
        """The init estimator's raw prediction, shape (K,): the same for every row."""
        where = "config.fitted.init_"
        k = self._k
        if record == "zero":
            return np.zeros(k, dtype=np.float64)
        if not isinstance(record, dict) or not isinstance(record.get("fitted"), dict):
            raise ConfigError(f"{where}: expected 'zero' or a DummyClassifier/DummyRegressor record")
        fitted = record["fitted"]
        expected = "DummyClassifier" if self._is_classifier else "DummyRegressor"
        if record.get("estimator") != expected:
            raise ConfigError(f"{where}.estimator: {str(record.get('estimator'))[:40]!r}, expected {expected}")
        if not self._is_classifier:
            constant = decode_value(f"{where}.fitted.constant_", fitted.get("constant_"))
            if not (isinstance(constant, np.ndarray) and constant.shape == (1, 1) and constant.dtype.kind in "fiu"):
                raise ConfigError(f"{where}.fitted.constant_: expected a (1, 1) numeric array")
            # DummyRegressor.predict(X).astype(float64); the identity link keeps it.
            return np.full((1, 1), constant).astype(np.float64).reshape(1)
        strategy = decode_value(f"{where}.fitted._strategy", fitted.get("_strategy"))
        if strategy != "prior":
            raise UnsupportedEstimatorError(f"{where}: DummyClassifier strategy {strategy!r} is not supported (only 'prior')")
        prior = decode_value(f"{where}.fitted.class_prior_", fitted.get("class_prior_"))
        if not (isinstance(prior, np.ndarray) and prior.shape == (len(self.classes_),) and prior.dtype == np.float64):
            raise ConfigError(f"{where}.fitted.class_prior_: expected {len(self.classes_)} float64 values")
        if self._link == "multinomial":
            return _multinomial_init(prior)
        return np.array([_binary_init(prior, half=self._link == "half_logit")], dtype=np.float64)

    def _read_columns(self, reader: StoreReader, runs: list[tuple[int, int]], selected: TreeLayout) -> NodeColumns:
        """The node columns prediction needs, for the trees of ``runs`` (``(first, stop)``
        ranges of stored trees), concatenated and validated against ``selected``, their layout."""
        layout = reader.config.trees
        encoding = layout.value_encoding
        tree_ptr = reader.tree_ptr  # read and checked by the reader
        needed = set(PREDICT_COLUMNS) | ({"weighted_n_node_samples"} if encoding != "float64" else set())
        unread = [name for name in NODE_COLUMNS if name not in needed]
        for name in unread:  # not decoded, but a store with a broken one is refused as by a load
            reader.node_array(name)
        try:
            arrays = reader.read_columns([name for name in NODE_COLUMNS if name in needed], [(int(tree_ptr[first]), int(tree_ptr[stop])) for first, stop in runs])
            # Not needed to predict: never decoded. Zeros (calloc: no page is touched) stand in
            # for validation, allocated only now that the stored columns proved their size.
            arrays.update((name, np.zeros(selected.n_nodes, dtype=NODE_COLUMNS[name])) for name in unread)
        except MemoryError:
            raise ArrayError(f"nodes: {selected.n_nodes} declared nodes do not fit in memory") from None
        counts = np.concatenate([np.diff(tree_ptr[first : stop + 1]) for first, stop in runs])
        local_ptr = np.zeros(len(counts) + 1, dtype=TREE_PTR_DTYPE)
        np.cumsum(counts, out=local_ptr[1:])
        self._counts: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        if encoding == "weighted_counts":
            # value = counts / weighted_n_node_samples (columns.decode_values), done at predict
            # time for the leaves reached only: the same division, so the same bits.
            self._counts, self._weights = arrays["value"], arrays["weighted_n_node_samples"]
            check_weighted_counts(self._counts, self._weights)  # as a load: a malformed store, not inf/NaN
            arrays["value"] = np.zeros(arrays["value"].shape, dtype=NODE_COLUMNS["value"])
        elif encoding != "float64":
            raise ConfigError(f"config.trees.value_encoding: unknown encoding {encoding!r}")
        columns = NodeColumns(tree_ptr=local_ptr, **arrays)
        self._depths = check_trees(columns, selected)[1]
        if self._isolation is not None:
            self._counts = self._weights = None  # the values are replaced by path terms
            columns = self._isolation.prepare(reader, runs, columns)
        return columns

    def _setup_trees(self, cols: NodeColumns, depths: np.ndarray | None = None) -> None:
        """Lay out validated ``cols`` for the traversal; ``depths``: each tree's depth (default:
        those :meth:`_read_columns` found)."""
        depths = self._depths = self._depths if depths is None else depths
        # Shallow trees are walked level by level, every row taking exactly max-depth steps.
        max_depth = int(depths.max())
        self._walk_depth = max_depth if max_depth <= LEVEL_WALK_DEPTH else 0
        # One 16-byte record per node, what the compiled traversal reads: the threshold rounded
        # down to float32 (as bits), the feature (0 at a leaf: a readable column) and the
        # child offsets (0 at a leaf, which marks it).
        # (_round_down_to_float32 is the numpy statement of the rounding.)
        from ._kernels import pack_nodes

        self._nodes = np.empty((cols.n_nodes, 4), dtype=np.int32)
        self._nan_right = np.empty(cols.n_nodes, dtype=np.uint8)
        pack_nodes(cols.threshold, cols.feature, cols.left_child_offset, cols.right_child_offset, cols.missing_go_to_left, self._nodes, self._nan_right)
        self._roots = np.ascontiguousarray(cols.tree_ptr[:-1], dtype=np.int64)
        self._value_width = cols.value.shape[1]
        if self._counts is None:
            self._value = np.ascontiguousarray(cols.value)
        else:
            self._value = np.empty((0, self._value_width))  # the traversal divides counts by weights at the leaf
            self._counts = np.ascontiguousarray(self._counts, dtype=np.int32)
            self._weights = np.ascontiguousarray(self._weights, dtype=np.float64)
        # Padding to perfect trees costs memory: not where it would swell the leaf values past 4x.
        padded_leaves = len(self._roots) << max(3, self._walk_depth)
        self._complete = _complete_layout(self) if self._walk_depth and padded_leaves <= max(4 * cols.n_nodes, 1 << 16) else None

    def _node_values(self, nodes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float64 values of ``nodes`` (any shape), shape ``nodes.shape + (value_width,)``."""
        if self._counts is None:
            return np.take(self._value, nodes, axis=0, out=out)
        return np.divide(np.take(self._counts, nodes, axis=0), np.take(self._weights, nodes)[..., None], out=out)

    # ------------------------------------------------------------------ input
    def _validate(self, X: Any, *, allow_nan: bool, name: str | None = None, finite: bool = True) -> Any:
        """``X`` as a C-contiguous float32 array, checked like sklearn's ``validate_data``;
        ``name`` is the estimator sklearn's messages name (default: this one).

        Sparse ``X`` (scipy, or a DataFrame of sparse columns) comes back as a
        :class:`_SparseRows`, which :meth:`_blocks` densifies a block of rows at a time.
        """
        name = name or self.estimator
        self._check_feature_names(X)
        sparse, from_frame = _as_sparse(X)
        if sparse is not None:  # sklearn refuses NaN in sparse X, unless it came from a DataFrame
            return _sparse_rows(sparse, name=name, n_features_in=self.n_features_in_, allow_nan=allow_nan and from_frame)
        if np.iscomplexobj(X):
            raise ValueError(f"Complex data not supported\n{X}\n")
        try:
            X32 = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"could not convert X to float32: {exc}") from None
        if X32.ndim == 0:
            raise ValueError(
                f"Expected 2D array, got scalar array instead:\narray={X!r}.\n"
                "Reshape your data either using array.reshape(-1, 1) if your data has a single "
                "feature or array.reshape(1, -1) if it contains a single sample."
            )
        if X32.ndim == 1:
            raise ValueError(
                f"Expected 2D array, got 1D array instead:\narray={X32!r}.\n"
                "Reshape your data either using array.reshape(-1, 1) if your data has a single "
                "feature or array.reshape(1, -1) if it contains a single sample."
            )
        if X32.ndim > 2:
            raise ValueError(f"Found array with dim {X32.ndim}. {name} expected <= 2.")
        if X32.shape[0] < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={X32.shape}) while a minimum of 1 is required by {name}.")
        if X32.shape[1] < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={X32.shape}) while a minimum of 1 is required by {name}.")
        X32 = np.ascontiguousarray(X32)
        if finite:  # False: no check at all, as sklearn's ensure_all_finite=False
            _check_finite(X32.reshape(-1), name, allow_nan)
        if X32.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X32.shape[1]} features, but {name} is expecting {self.n_features_in_} features as input.")
        return X32

    def _check_feature_names(self, X: Any) -> None:
        fitted = getattr(self, "feature_names_in_", None)
        given = _feature_names(X)
        if fitted is None and given is None:
            return
        if fitted is None:
            warnings.warn(f"X has feature names, but {self.estimator} was fitted without feature names", UserWarning, stacklevel=4)
            return
        if given is None:
            warnings.warn(f"X does not have valid feature names, but {self.estimator} was fitted with feature names", UserWarning, stacklevel=4)
            return
        if len(fitted) == len(given) and not np.any(fitted != given):
            return
        message = "The feature names should match those that were passed during fit.\n"
        unexpected = sorted(set(given) - set(fitted))
        missing = sorted(set(fitted) - set(given))

        def listing(names: list[str]) -> str:
            shown = "".join(f"- {n}\n" for n in names[:5])
            return shown + ("- ...\n" if len(names) > 5 else "")

        if unexpected:
            message += "Feature names unseen at fit time:\n" + listing(unexpected)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
        if not unexpected and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)

    # ------------------------------------------------------------------ traversal
    def _threads(self, n_rows: int) -> int:
        """Threads to score ``n_rows`` rows with: ``n_jobs``, fewer for small batches."""
        n_jobs = self.n_jobs
        if n_jobs is None:
            return 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
            raise ValueError(f"n_jobs must be a nonzero integer or None, got {n_jobs!r}")
        wanted = int(n_jobs) if n_jobs > 0 else max(1, available_cores() + 1 + int(n_jobs))  # as joblib
        by_size = n_rows * len(self._roots) // PAIRS_PER_THREAD
        return max(1, min(wanted, by_size, n_rows))

    def _parallel(self, kernel: Any, n_rows: int) -> None:
        """Run ``kernel(start, stop)`` over rows ``0:n_rows``, split over :meth:`_threads` threads
        (the kernels release the GIL); the calling thread takes the first part."""
        threads = self._threads(n_rows)
        if threads == 1:
            kernel(0, n_rows)
            return
        bounds = [n_rows * i // threads for i in range(threads + 1)]
        futures = [_pool(threads - 1).submit(kernel, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
        try:
            kernel(bounds[0], bounds[1])
        finally:
            for future in futures:
                future.result()

    def _leaves(self, X32: np.ndarray) -> np.ndarray:
        """Global leaf ids of the rows of a dense float32 ``X32`` in every tree, (n_trees, n_rows)."""
        from ._kernels import traverse_leaves

        out = np.empty((len(self._roots), X32.shape[0]), dtype=np.int64)
        if self._complete is not None:  # shallow trees: the complete layout (treeshard._kernels.pack_complete)
            from ._kernels import traverse_complete_leaves

            slots, ids, _, depth = self._complete
            self._parallel(lambda start, stop: traverse_complete_leaves(X32, slots, ids, depth, out, start, stop, COMPLETE_BLOCK_ROWS), X32.shape[0])
            return out
        nodes, nan_right, roots, depth = self._nodes, self._nan_right, self._roots, self._walk_depth
        self._parallel(lambda start, stop: traverse_leaves(X32, nodes, nan_right, roots, out, start, stop, BLOCK_ROWS, GROUP, depth), X32.shape[0])
        return out

    def _sum(self, X32: np.ndarray, initial: np.ndarray, *, scale: float, k: int) -> np.ndarray:
        """``initial`` plus, tree by tree in order, ``scale`` times each row's leaf values;
        tree ``t`` adds to columns ``(t % k) * width : (t % k + 1) * width``. (n_rows, k * width)."""
        from ._kernels import traverse_sum

        out = np.empty((X32.shape[0], k * self._value_width), dtype=np.float64)
        out[:] = initial
        nodes, nan_right, roots, value, depth = self._nodes, self._nan_right, self._roots, self._value, self._walk_depth
        counts = self._counts if self._counts is not None else _NO_COUNTS
        weights = self._weights if self._weights is not None else _NO_WEIGHTS

        if self._complete is not None:
            from ._kernels import traverse_complete_sum

            slots, _, leaf_values, depth = self._complete
            self._parallel(lambda start, stop: traverse_complete_sum(X32, slots, leaf_values, depth, scale, k, out, start, stop, COMPLETE_BLOCK_ROWS), X32.shape[0])
            return out

        def kernel(start: int, stop: int) -> None:
            traverse_sum(X32, nodes, nan_right, roots, value, counts, weights, scale, k, out, start, stop, BLOCK_ROWS, GROUP, depth, BUFFER_PAIRS)

        self._parallel(kernel, X32.shape[0])
        return out

    def mean_leaf_depth(self) -> float:
        """Average depth of the leaves over all trees (a root leaf has depth 0): about the
        number of steps a row takes down each tree, i.e. what scoring one row costs.

        >>> import treeshard, zarr
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> store = zarr.storage.MemoryStore()
        >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1], [2]], [0, 1, 2]), store)
        >>> Predictor(store).mean_leaf_depth()  # leaves at depths 1, 2 and 2
        1.6666666666666667
        """
        nodes = self._nodes
        frontier, depth, total, leaves = self._roots, 0, 0, 0
        while frontier.size:
            is_leaf = nodes[frontier, 2] == 0
            n_leaves = int(np.count_nonzero(is_leaf))
            total, leaves = total + depth * n_leaves, leaves + n_leaves
            internal = frontier[~is_leaf]
            frontier = np.concatenate([internal + nodes[internal, 2], internal + nodes[internal, 3]])
            depth += 1
        return total / leaves

    def _blocks(self, X32: Any) -> Iterator[np.ndarray]:
        """Dense ``X32`` itself, or sparse ``X`` densified a block of at most ``SPARSE_BLOCK_BYTES`` at a time."""
        if not isinstance(X32, _SparseRows):
            return iter((X32,))
        rows = X32.max_rows
        return (X32[i : i + rows] for i in range(0, X32.shape[0], rows))

    def _tree_values(self, X32: Any) -> np.ndarray:
        """A single tree's leaf values by row, (n_rows, value_width)."""
        out = [self._node_values(self._leaves(block)[0]) for block in self._blocks(X32)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _summed_values(self, X32: Any) -> np.ndarray:
        """Sum over trees, in tree order from zeros, of each row's leaf values: (n_rows, value_width)."""
        out = [self._sum(block, np.zeros(self._value_width), scale=1.0, k=1) for block in self._blocks(X32)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _raw_boosting(self, X32: Any) -> np.ndarray:
        """Gradient boosting raw predictions (n_rows, K): init + sum of learning_rate * leaf value, stage by stage."""
        out = [self._sum(block, self._init_raw, scale=self._learning_rate, k=self._k) for block in self._blocks(X32)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    # ------------------------------------------------------------------ public methods
    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels or values, as the estimator's ``predict``."""
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
            return self.classes_.take(np.argmax(proba, axis=1), axis=0)
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

    @_Method("_is_classifier")
    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, as the estimator's ``predict_proba`` (a list for multi-output)."""
        if self._is_boosting:
            raw = self.decision_function(X)
            if self._k > 1:
                return _softmax(raw)
            # the loss's predict_proba: HalfLogitLink.inverse is expit(2 * raw)
            proba = np.empty((raw.shape[0], 2), dtype=np.float64)
            proba[:, 1] = _expit(2 * raw if self._link == "half_logit" else raw)
            proba[:, 0] = 1 - proba[:, 1]
            return proba
        return self._proba(self._validate(X, allow_nan=self._allow_nan))

    @_Method("_is_classifier")
    def predict_log_proba(self, X: Any) -> Any:
        """``np.log`` of :meth:`predict_proba`, as the estimator's ``predict_log_proba``."""
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return [np.log(p) for p in proba]
        return np.log(proba)

    @_Method("_has_decision_function")
    def decision_function(self, X: Any) -> np.ndarray:
        """Gradient boosting raw scores, as ``decision_function``: (n,) for binary, (n, K) otherwise;
        for an IsolationForest, ``score_samples(X) - offset_``."""
        if self._isolation is not None:
            return self._isolation.decision_function(self.score_samples(X))
        raw = self._raw_boosting(self._validate(X, allow_nan=False))
        return raw.ravel() if raw.shape[1] == 1 else raw

    @_Method("_is_isolation")
    def score_samples(self, X: Any) -> np.ndarray:
        """An IsolationForest's ``score_samples``: the opposite of the anomaly score."""
        X32 = self._validate(X, allow_nan=True, finite=False)
        depths = np.concatenate([self._sum(block, np.zeros(1), scale=1.0, k=1)[:, 0] for block in self._blocks(X32)])
        return self._isolation.score_samples(depths, len(self._roots))

    @_Method("_has_apply")
    def apply(self, X: Any) -> np.ndarray:
        """Leaf index of every row in every tree, as the estimator's ``apply``.

        Shapes and dtypes follow sklearn: (n,) for a tree, (n, n_trees) for a
        forest, float64 (n, n_stages, K) for a gradient boosting classifier and
        (n, n_stages) for a regressor.
        """
        # gradient boosting validates X with its first tree (a DecisionTreeRegressor), which takes NaN
        name = "DecisionTreeRegressor" if self._is_boosting else None
        X32 = self._validate(X, allow_nan=self._allow_nan or self._is_boosting, name=name)
        local = np.concatenate([self._leaves(b) for b in self._blocks(X32)], axis=1) - self._roots[:, None]
        if self._is_boosting:
            leaves = local.T.reshape(X32.shape[0], self.n_estimators, self._k).astype(np.float64)
            return leaves if self._is_classifier else leaves.reshape(X32.shape[0], self.n_estimators)
        return local[0] if family_of(self.estimator) == TREE else local.T

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


# --------------------------------------------------------------------------- helpers
def _complete_layout(predictor: Predictor) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Shallow trees padded to perfect trees (``treeshard._kernels.pack_complete``): splits,
    leaf ids, leaf values and the depth, at least 3 (the depth of the comparison path)."""
    from ._kernels import pack_complete

    depth = max(3, predictor._walk_depth)
    n_trees, leaves = len(predictor._roots), 1 << depth
    slots = np.empty((n_trees, 2 * (leaves - 1)), dtype=np.uint32)
    ids = np.empty((n_trees, leaves), dtype=np.int64)
    values = np.empty((n_trees, leaves, predictor._value_width))
    counts = predictor._counts if predictor._counts is not None else _NO_COUNTS
    weights = predictor._weights if predictor._weights is not None else _NO_WEIGHTS
    pack_complete(predictor._nodes, predictor._nan_right, predictor._roots, depth, predictor._value, counts, weights, slots, ids, values)
    return slots, ids, values, depth


def _round_down_to_float32(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each threshold: ``x <= t`` iff ``x <= result`` for float32 ``x``.

    >>> _round_down_to_float32(np.array([0.1, 1e39, -1e39])).tolist()  # 0.1 rounds up in float32
    [0.09999999403953552, 3.4028234663852886e+38, -inf]
    """
    with np.errstate(over="ignore"):
        rounded = threshold.astype(np.float32)
    # Step the rounded-up ones one float32 down, on the bits (much faster than np.nextafter):
    # positive floats go down by decrementing their bits, negative ones by incrementing;
    # -0.0 + 1 is the smallest negative float32, and +0.0 is fixed by hand.
    bits = rounded.view(np.int32)
    up = (rounded > threshold).view(np.int8)
    step = bits >> 31  # -1 for negative floats, 0 for positive
    step += step
    step += 1  # -1 or +1
    step *= up
    bits -= step
    plus_zero = up.view(bool) & (bits == -1)  # was +0.0, stepped to an invalid -1: make it -min_subnormal
    if plus_zero.any():
        bits[plus_zero] = np.int32(-(2**31) + 1)
    return rounded


_NO_COUNTS = np.empty((0, 0), dtype=np.int32)
_NO_WEIGHTS = np.empty(0, dtype=np.float64)
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist there, and a pool that
    believes it has idle threads would never run a task. The child starts its own."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of ``workers`` threads, created on first use and kept for the process."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="treeshard-predict")
        return pool


def _check_labels(where: str, labels: Any, n_classes: int) -> None:
    """``labels`` is a 1-D array of ``n_classes`` distinct labels (no np.unique: it imports numpy.ma)."""
    if not (isinstance(labels, np.ndarray) and labels.ndim == 1 and len(labels) == n_classes and len(set(labels.tolist())) == n_classes):
        raise ConfigError(f"{where}: expected an array of {n_classes} distinct labels")


def _feature_names(X: Any) -> np.ndarray | None:
    """String column names of a DataFrame-like ``X`` (as sklearn's ``_get_feature_names``)."""
    if isinstance(X, np.ndarray) or not hasattr(X, "columns") or not hasattr(X, "shape"):
        return None
    names = np.asarray(list(X.columns), dtype=object)
    if len(names) == 0:
        return None
    types = sorted(t.__qualname__ for t in {type(v) for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert "
            "them all to strings, by using X.columns = X.columns.astype(str) for "
            "example. Otherwise you can remove feature / column names from your input "
            "data, or convert them all to a non-string data type."
        )
    return names if types == ["str"] else None


def _exp_or_inf(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _expit(x: np.ndarray) -> np.ndarray:
    """scipy.special.expit of float64 ``x``, bit for bit, without importing scipy.

    scipy computes ``1 / (1 + exp(-x))`` with the C library's ``exp`` (xsf's
    ``log_exp.h``), which is also what :func:`math.exp` calls; numpy's own
    ``np.exp`` is vectorised differently per SIMD level and would not match.
    The sum and the division are correctly rounded in numpy as in C.
    """
    neg = np.negative(x)
    overflows = neg > _EXP_SAFE  # math.exp raises where C's exp returns inf
    e = np.fromiter(map(math.exp, np.where(overflows, 0.0, neg).ravel().tolist()), dtype=np.float64, count=neg.size)
    e = e.reshape(neg.shape)
    if overflows.any():
        e[overflows] = [_exp_or_inf(v) for v in neg[overflows].tolist()]
    np.add(1.0, e, out=e)
    return np.divide(1.0, e, out=e)


def _logit(p: float) -> float:
    """scipy.special.logit of a double (xsf's ``log_exp.h``), with the C library's log and log1p as scipy."""
    if p < 0.3 or p > 0.65:
        return math.log(p / (1 - p))
    s = 2 * (p - 0.5)
    return math.log1p(s) - math.log1p(-s)


def _binary_init(prior: np.ndarray, *, half: bool) -> float:
    """Raw init prediction of a binary gradient boosting from its ``DummyClassifier`` prior.

    sklearn: ``predict_proba(X)[:, 1]`` clipped to ``[eps, 1 - eps]``, then the
    loss link: ``logit`` (log_loss) or ``0.5 * logit`` (exponential, ``HalfLogitLink``).
    """
    p = float(np.clip((np.ones((1, 1)) * prior)[:, 1], _EPS, 1 - _EPS, dtype=np.float64)[0])
    raw = _logit(p)
    return 0.5 * raw if half else raw


def _multinomial_init(prior: np.ndarray) -> np.ndarray:
    """Raw init prediction (K,) of a multiclass gradient boosting from its ``DummyClassifier`` prior.

    sklearn's ``MultinomialLogit.link`` on the clipped prior: ``log(p / gmean(p))``,
    with scipy's ``gmean(p, axis=1) = exp(mean(log(p), axis=1))``, all numpy ufuncs
    (so the result depends on numpy's SIMD level, exactly as sklearn's does).
    """
    proba = np.clip(np.ones((1, 1)) * prior, _EPS, 1 - _EPS, dtype=np.float64)
    gmean = np.exp(np.mean(np.log(proba), axis=1))
    return np.log(proba / gmean[:, None]).reshape(-1)


def _softmax(raw: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax, operation for operation.

    On a C-ordered copy, as sklearn's raw predictions are: numpy sums the rows
    of an F-ordered array in another order.
    """
    X = np.array(raw, dtype=np.float64, order="C", copy=True)
    X -= np.max(X, axis=1).reshape(-1, 1)
    np.exp(X, out=X)
    X /= np.sum(X, axis=1).reshape(-1, 1)
    return X



# --------------------------------------------------------------------------- sparse input
_NAN_MESSAGE = (
    "Input X contains NaN.\n{} does not accept missing values encoded as NaN natively. For supervised "
    "learning, you might want to consider sklearn.ensemble.HistGradientBoostingClassifier and Regressor "
    "which accept missing values encoded as NaNs natively. Alternatively, it is possible to preprocess the "
    "data, for instance by using an imputer transformer in a pipeline or drop samples with missing values. "
    "See https://scikit-learn.org/stable/modules/impute.html You can find a list of all estimators that "
    "handle NaN values at the following page: "
    "https://scikit-learn.org/stable/modules/impute.html#estimators-that-handle-nan-values"
)
_RESHAPE_HINT = (
    "Reshape your data either using array.reshape(-1, 1) if your data has a single "
    "feature or array.reshape(1, -1) if it contains a single sample."
)


def _check_finite(values: np.ndarray, name: str, allow_nan: bool) -> None:
    """sklearn's ``_assert_all_finite`` on float32 ``values`` (X, or a sparse matrix's ``data``):
    a forbidden NaN is reported before infinity.

    >>> _check_finite(np.array([1.0, np.inf, np.nan], dtype=np.float32), "Model", True)
    Traceback (most recent call last):
    ...
    ValueError: Input X contains infinity or a value too large for dtype('float32').
    """
    if np.isfinite(values.sum(dtype=np.float64)):  # as sklearn, a sum first: float32 sums never overflow float64
        return
    if not allow_nan and np.isnan(values).any():
        raise ValueError(_NAN_MESSAGE.format(name))
    if np.isinf(values).any():
        raise ValueError("Input X contains infinity or a value too large for dtype('float32').")


def _as_sparse(X: Any) -> tuple[Any, bool]:
    """``(sparse, from_frame)``: ``X`` if it is a scipy.sparse matrix or array, a pandas
    DataFrame whose columns are all sparse converted with ``X.sparse.to_coo()`` (as sklearn's
    ``check_array`` does), else ``(None, False)``. scipy is imported only for a scipy object.
    """
    mro = type(X).__mro__
    if any(cls.__module__.startswith("scipy.sparse") for cls in mro):
        import scipy.sparse

        return (X, False) if scipy.sparse.issparse(X) else (None, False)
    if (
        any(cls.__module__.startswith("pandas") for cls in mro)
        and getattr(X, "ndim", 0) == 2
        and all(type(dtype).__name__ == "SparseDtype" for dtype in getattr(X, "dtypes", [None]))
        and hasattr(X, "sparse")  # pandas' own check that every column is sparse
    ):
        return X.sparse.to_coo(), True
    return None, False


def _sparse_rows(X: Any, *, name: str, n_features_in: int, allow_nan: bool) -> _SparseRows:
    """Sparse ``X`` checked and converted as sklearn's ``validate_data(X, dtype=float32,
    accept_sparse="csr")`` followed by the trees' index check, with the same scipy calls
    (``asformat("csr")``, ``astype(float32)``), so duplicate entries add up as in sklearn.

    sklearn refuses NaN in sparse ``X`` for every estimator (its sparse traversal has no
    missing-value support), except in a sparse DataFrame given to an estimator that takes
    NaN: then a NaN goes right at every split whatever ``missing_go_to_left`` says, which the
    predictor does not reproduce, so it refuses that X (``allow_nan`` is only ever true here).
    """
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{X}\n")
    if X.format != "csr":
        X = X.asformat("csr")
    if X.dtype != np.float32:
        X = X.astype(np.float32)  # scipy sums duplicate entries after the cast, in float32
    _check_finite(X.data, name, allow_nan)
    if X.ndim < 2:
        raise ValueError(f"Expected 2D input, got input with shape {X.shape}.\n{_RESHAPE_HINT}")
    n_rows, n_features = X.shape
    if n_rows < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by {name}.")
    if n_features < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required by {name}.")
    if n_features != n_features_in:
        raise ValueError(f"X has {n_features} features, but {name} is expecting {n_features_in} features as input.")
    indices, indptr = X.indices, X.indptr
    if indices.dtype != np.intc or indptr.dtype != np.intc:
        raise ValueError("No support for np.int64 index based sparse matrices")
    if allow_nan and np.isnan(X.data).any():
        raise ValueError(
            f"Input X contains NaN in a sparse DataFrame: {name} sends NaN right at every split on sparse input, "
            "whatever missing_go_to_left says, and the Predictor does not reproduce that; "
            "densify X first (X.sparse.to_dense())."
        )
    # sklearn's Cython reads these without bounds checks; here they index a dense block.
    counts = np.diff(indptr)
    if indptr.shape != (n_rows + 1,) or indptr[0] < 0 or counts.min() < 0 or indptr[-1] > min(len(indices), len(X.data)):
        raise ValueError("sparse X is malformed: its indptr does not describe its indices and data")
    stored = indices[indptr[0] : indptr[-1]]
    if stored.size and (stored.min() < 0 or stored.max() >= n_features):
        raise ValueError(f"sparse X is malformed: column indices outside [0, {n_features})")
    return _SparseRows(X.data, indices, indptr, (n_rows, n_features))


class _SparseRows:
    """Validated sparse ``X`` (CSR arrays: float32 data, int32 indices) that hands out dense
    float32 row blocks, ``X[start:stop]``, of at most :data:`SPARSE_BLOCK_BYTES`.

    A block holds exactly what sklearn's CSR traversal reads: the stored value of a
    (row, feature) entry, 0.0 for an absent one, and for an entry stored more than once
    the one stored last (sklearn writes a row's entries into its buffer in stored order).

    >>> rows = _SparseRows(np.array([1, 2, 3], np.float32), np.array([1, 1, 0], np.intc), np.array([0, 2, 3], np.intc), (2, 2))
    >>> rows[0:2].tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape
        self.max_rows = max(1, SPARSE_BLOCK_BYTES // (4 * shape[1]))

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        n_features = self.shape[1]
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        starts = np.arange(0, (stop - start) * n_features, n_features, dtype=np.intp)
        flat = np.repeat(starts, np.diff(self.indptr[start : stop + 1]))
        flat += self.indices[lo:hi]
        values = self.data[lo:hi]
        if flat.size > 1 and not (flat[1:] > flat[:-1]).all():
            # Unsorted or repeated entries: keep the last stored of each (a stable sort keeps their order).
            order = np.argsort(flat, kind="stable")
            flat, values = flat[order], values[order]
            last = np.append(flat[1:] != flat[:-1], True)
            flat, values = flat[last], values[last]
        dense = np.zeros((stop - start, n_features), dtype=np.float32)
        dense.reshape(-1)[flat] = values
        return dense

"""The public API: :func:`save` (from :mod:`treeshard.saving`), :func:`load` and :func:`open`.

A load opens the store (:class:`ModelHandle`), plans which trees it reads and
how it splits the memory budget (:mod:`treeshard.planning`), then has the
adapter build the estimator over :class:`~treeshard.lazy.StoredEstimators`.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .adapters import SavedModel
from .adapters.families import BAGGED, ESTIMATORS, family_of
from .compat import pair_is_exact
from .errors import SklearnVersionWarning
from .lazy import StoredEstimators, TreeCache, TreeSource
from .planning import LoadPlan, parse_memory, plan_load, select_trees, trees_per_stage
from .reader import StoreReader
from .record import Config
from .saving import save

__all__ = ["ModelHandle", "ModelInfo", "load", "load_reference", "open", "save"]


# --------------------------------------------------------------------------- open
@dataclass(frozen=True)
class ModelInfo:
    """What a store says about its model, read without touching node arrays."""

    estimator: str
    estimator_type: str
    n_estimators: int  # what ``estimators=`` counts: trees, or boosting stages
    n_trees: int
    n_nodes: int
    n_features: int
    n_outputs: int
    format_version: int
    codec: str
    created: str
    versions: dict[str, str]
    params: dict[str, Any]
    unserializable_params: tuple[str, ...]
    metadata: dict[str, Any]
    arrays: dict[str, dict[str, Any]]
    #: Family-specific facts (histogram boosting: iterations, loss, categorical features, ...;
    #: an IsolationForest's max_samples_, contamination, offset_, ...).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stored_bytes(self) -> int:
        return sum(int(a.get("stored_bytes", 0)) for a in self.arrays.values())

    @property
    def nbytes(self) -> int:
        return sum(int(a.get("nbytes", 0)) for a in self.arrays.values())

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["unserializable_params"] = list(self.unserializable_params)
        out["stored_bytes"] = self.stored_bytes
        out["nbytes"] = self.nbytes
        return out


class ModelHandle:
    """An open store: its :attr:`info` is read, its trees are not (yet).

    Use as a context manager; :meth:`load` builds the estimator, :meth:`tree`
    one tree.

    >>> import treeshard, zarr
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> store = zarr.storage.MemoryStore()
    >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), store)
    >>> with treeshard.open(store) as handle:
    ...     handle.info.estimator, handle.info.n_nodes
    ('DecisionTreeRegressor', 3)
    """

    def __init__(self, store: Any, *, storage_options: dict[str, Any] | None = None, check_chunks: bool = True) -> None:
        self._store = store
        self._reader = StoreReader(store, storage_options=storage_options, check_chunks=check_chunks)
        self._init_from_reader()

    def _init_from_reader(self) -> None:
        self.location = self._reader.location
        self.config = self._reader.config
        self.adapter = self._reader.adapter
        #: A pipeline store's parsed record (None for a single model).
        self.pipeline = self._reader.pipeline

    @classmethod
    def of_reader(cls, store: Any, reader: StoreReader) -> ModelHandle:
        """A handle over an open reader (one ensemble of a pipeline store); closing it closes ``reader``."""
        handle = cls.__new__(cls)
        handle._store, handle._reader = store, reader
        handle._init_from_reader()
        return handle

    @property
    def info(self) -> Any:
        if self.pipeline is not None:
            from .pipeline.info import pipeline_info

            return pipeline_info(self.pipeline)
        config = self.config
        details = self.adapter.describe(config) if self.adapter.describe is not None else {}
        return ModelInfo(
            estimator=config.estimator,
            estimator_type=ESTIMATORS[config.estimator].estimator_type,
            n_estimators=config.trees.n_trees // trees_per_stage(config),
            n_trees=config.trees.n_trees,
            n_nodes=config.trees.n_nodes,
            n_features=details.get("n_features_in_", config.trees.n_features),
            n_outputs=config.trees.n_outputs,
            format_version=config.format_version,
            codec=config.codec,
            created=config.created,
            versions=dict(config.versions),
            params=dict(config.params),
            unserializable_params=config.unserializable_params,
            metadata=dict(config.metadata),
            arrays=dict(config.arrays),
            details=details,
        )

    def load(
        self,
        *,
        lazy: bool = True,
        estimators: int | slice | Sequence[int] | None = None,
        max_memory: int | str | None = None,
        verify: bool = False,
        public_key: Any = None,
        engine: str = "auto",
    ) -> Any:
        """Build the fitted estimator; see :func:`treeshard.load` for the options."""
        from .dispatch import ENGINES

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        for name, flag in (("lazy", lazy), ("verify", verify)):
            if not isinstance(flag, (bool, np.bool_)):  # lazy="no" would read as True
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if verify:
            from .integrity import verify_store
            from .storage.urls import is_url

            if is_url(self._store):
                raise ValueError("verify= needs a local store: `treeshard verify` a downloaded copy")
            verify_store(self._reader.source, public_key=public_key)  # the pinned store, not reopened
            self._reader.add_load_options(verify=True)
            if public_key is not None:
                from .integrity import public_key_pem

                self._reader.add_load_options(public_key=public_key_pem(public_key))
        elif public_key is not None:
            # The signed record was read with the config (the root checked against it), and
            # every chunk is checked against it as it is read: nothing unsigned is used.
            self._reader.check_signature(public_key)
        if self.pipeline is not None:
            from .pipeline.load import load_pipeline

            return load_pipeline(self, lazy=lazy, estimators=estimators, max_memory=max_memory, engine=engine)
        config = self.config
        if self.adapter.read_saved is not None:  # a family with its own node arrays: always eager
            saved = self.adapter.read_saved(self._reader, select_trees(estimators, config), budget=parse_memory(max_memory))
            _warn_on_version_change(config)
            estimator = self.adapter.from_saved(self.adapter.estimator_class(), saved)
            if engine == "auto" and not saved.is_partial:
                from .dispatch import install_hist

                install_hist(estimator, _hist_engine(config, saved))
            return estimator
        source = TreeSource(self._reader)
        plan = plan_load(config, estimators, lazy=lazy, max_memory=max_memory, tree_bytes=source.tree_bytes)
        extra = {name: array for name in self.adapter.array_names if (array := self._reader.read_extra(name)) is not None}
        _warn_on_version_change(config)
        build = self._lazy_builder(plan) if plan.lazy else self._eager_builder(source, plan)
        saved = SavedModel(
            params=config.params,
            unserializable_params=list(config.unserializable_params),
            fitted=config.fitted,
            layout=config.trees,
            trees=(),
            arrays=extra,
            selection=plan.selection,
            build_estimators=build,
            tree_ptr=source.reader.tree_ptr,
        )
        estimator = self.adapter.from_saved(self.adapter.estimator_class(), saved)
        if plan.lazy and engine == "auto":
            from .dispatch import install

            install(estimator)
        return estimator

    def needed_bytes(self, estimators: Any = None) -> int:
        """The bytes the trees that ``estimators`` selects take once loaded: what :meth:`load`
        counts against ``max_memory`` (histogram boosting: about it). Reads no tree.

        >>> import treeshard, zarr
        >>> from sklearn.ensemble import RandomForestRegressor
        >>> store = zarr.storage.MemoryStore()
        >>> treeshard.save(RandomForestRegressor(n_estimators=4, random_state=0).fit([[0], [1], [2]], [0, 1, 2]), store)
        >>> with treeshard.open(store) as handle:
        ...     handle.needed_bytes() > handle.needed_bytes(estimators=[0, 1]) > 0
        True
        """
        if self.pipeline is not None:  # every ensemble's (estimators= selects trees of the only one)
            from .pipeline.load import check_selection, ensemble_needs

            check_selection(self.pipeline, estimators)
            return sum(ensemble_needs(self, estimators).values())
        selection = select_trees(estimators, self.config)
        if self.adapter.read_saved is not None:
            stored = sum(int(array.get("nbytes", 0)) for array in self.config.arrays.values())
            return 2 * stored * len(selection) // max(1, self.config.trees.n_trees)
        return int(TreeSource(self._reader).tree_bytes(selection).sum())

    def _lazy_builder(self, plan: LoadPlan) -> Callable[[Any], Sequence]:
        # The model outlives this handle: it reads through its own reader of the
        # handle's open store (never reopened by path: same bytes as the config),
        # closed when the model is garbage collected.
        source = TreeSource(self._reader.share())
        weakref.finalize(source, source.reader.close)
        cache = TreeCache(plan.cache_bytes)

        def build(factory: Any) -> Sequence:
            return StoredEstimators(
                source, plan.selection, factory, cache, batch_bytes=plan.batch_bytes, engine_budget=plan.engine_budget, reducer=_reduce_lazy
            )

        return build

    @staticmethod
    def _eager_builder(source: TreeSource, plan: LoadPlan) -> Callable[[Any], Sequence]:
        def build(factory: Any) -> Sequence:
            # Batches of whole chunks: a reader thread decodes ahead while the caller builds and
            # fills trees (remote sources: two read-ahead threads, see TreeSource.trees).
            return StoredEstimators(
                source, plan.selection, factory, TreeCache(0), batch_bytes=plan.batch_bytes, workers=2, whole_chunks=True
            ).materialize()

        return build

    def tree(self, index: int) -> Any:
        """Tree ``index`` as a fitted sklearn tree estimator (a forest's sub-estimator;
        for gradient boosting, trees are numbered stage-major)."""
        if self.pipeline is not None:
            raise TypeError("a pipeline store holds several models: load it and take the tree from its ensemble")
        n = self.config.trees.n_trees
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"tree index must be an integer, not {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"tree index {index!r} out of range for {n} trees")
        index = int(index) % n
        if family_of(self.adapter.estimator_id) in BAGGED:
            return self.load(estimators=[index], lazy=False).estimators_[0]
        estimator = self.load(lazy=False)
        if hasattr(estimator, "tree_"):
            return estimator
        if hasattr(estimator, "_predictors"):  # histogram boosting: a TreePredictor, numbered iteration-major
            return estimator._predictors[index // estimator.n_trees_per_iteration_][index % estimator.n_trees_per_iteration_]
        return estimator.estimators_.reshape(-1)[index]

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        if self.pipeline is not None:
            return f"<treeshard.ModelHandle {info.estimator} pipeline of {len(info.ensembles)} ensemble(s) at {self.location}>"
        return f"<treeshard.ModelHandle {info.estimator} n_estimators={info.n_estimators} at {self.location}>"




def _hist_engine(config: Config, saved: SavedModel) -> Callable[[], Any]:
    """Builds, on first use, the compiled engine of a loaded histogram boosting model from the
    columns the load read (all cores, as sklearn's OpenMP)."""

    def build() -> Any:
        from .adapters.hist_gradient_boosting import columns_of
        from .predictor.hist import HistPredictor

        return HistPredictor.from_parts(config, columns_of(saved.node_arrays or {}, config.trees.n_trees), saved.arrays)

    return build


def _warn_on_version_change(config: Config) -> None:
    import sklearn

    saved = config.versions.get("sklearn")
    installed = sklearn.__version__
    if saved is not None and saved != installed and not pair_is_exact(config.estimator, saved, installed, value_encoding=config.trees.value_encoding):
        warnings.warn(SklearnVersionWarning(saved, installed), stacklevel=4)


def open(store: Any, *, storage_options: dict[str, Any] | None = None, check_chunks: bool = True) -> ModelHandle:  # noqa: A001 - mirrors zarr.open
    """Open a store and read its config only; see :class:`ModelHandle`.

    ``store`` may also be an fsspec URL (``s3://...``, ``https://...``) with
    ``storage_options`` (see ``docs/REMOTE.md``). ``check_chunks`` is as for
    :func:`load`.
    """
    return ModelHandle(store, storage_options=storage_options, check_chunks=check_chunks)


def load(
    store: Any,
    *,
    lazy: bool = True,
    estimators: int | slice | Sequence[int] | None = None,
    max_memory: int | str | None = None,
    verify: bool = False,
    public_key: Any = None,
    storage_options: dict[str, Any] | None = None,
    engine: str = "auto",
    check_chunks: bool = True,
) -> Any:
    """Load a fitted estimator from ``store``; every output equals the saved model's.

    Parameters
    ----------
    store : str, os.PathLike or zarr Store
        A directory, a ``.zip`` file or a zarr store.
    lazy : bool, default True
        Forests read their trees on demand: loading reads the config and the
        tree offsets only, ``estimators_[i]`` reads tree ``i``, prediction
        streams trees with the next batch decoded in the background. Other
        estimators (and ``lazy=False``) are built in full at once.
    estimators : int, slice or list of int, optional
        Load only these trees (forests) or the first stages (gradient boosting).
        An int ``k``: the first ``k``; a slice, a range, a list or a 1-D integer
        array: those trees, in that order (negative indices count from the end,
        a tree selected twice is refused). Gradient boosting takes a prefix only.
    max_memory : int or str, optional
        Memory budget for the trees (e.g. ``"512MB"``). A forest larger than the
        budget is streamed through memory at each prediction, with exact results
        (however small the budget, a pass holds a few chunks of trees at once).
        Anything else over the budget (``lazy=False``, gradient boosting, a single
        tree) raises :class:`~treeshard.MemoryBudgetError` before any tree is read.
        A pipeline's budget covers all its ensembles, each taking a share in
        proportion to what its trees need.
    verify : bool, default False
        First check every stored byte against the sha256 digest recorded at
        save time (``treeshard verify``); raises :class:`~treeshard.IntegrityError`
        naming the corrupt array and chunk.
    public_key : PEM bytes, path or Ed25519PublicKey, optional
        Refuse the store unless it is signed by this key (``treeshard sign``);
        raises :class:`~treeshard.SignatureError`. The signature covers the
        digest record that the config and every chunk read are checked against
        (``check_chunks``), so a lazy load authenticates exactly what it reads
        without reading the whole store (URLs too); with ``verify=True``, every
        stored file is checked first.
    storage_options : dict, optional
        For an fsspec URL store (``s3://...``, ``https://...``): filesystem options.
    engine : {"auto", "sklearn"}, default "auto"
        For a lazily loaded forest: ``"auto"`` scores with treeshard's compiled
        engine (the :class:`~treeshard.Predictor`'s, faster than sklearn at every
        batch size) wherever it gives sklearn's answer, bit-identical (see
        :mod:`treeshard.dispatch`); ``"sklearn"`` always uses sklearn's methods.
    check_chunks : bool, default True
        Check the root ``zarr.json`` when the store is opened, and every chunk
        when it is read (lazily too), against the sha256 digests the store's
        ``treeshard.sha256`` record holds for their place: a swapped,
        duplicated or misplaced chunk file raises
        :class:`~treeshard.IntegrityError` naming the array and the chunk. A
        store without the record loads with an
        :class:`~treeshard.UnverifiedStoreWarning`. ``False`` skips the record
        and the hashing: only for trusted local files (see ``SECURITY.md``).

    Raises :class:`~treeshard.FormatError` (naming the problem) for a
    malformed store and :class:`~treeshard.StoreNotFoundError` for a missing one.

    >>> import treeshard, zarr
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> store = zarr.storage.MemoryStore()
    >>> treeshard.save(DecisionTreeClassifier().fit([[0], [1]], ["no", "yes"]), store)
    >>> treeshard.load(store).predict([[0.9]])
    array(['yes'], dtype='<U3')
    """
    with ModelHandle(store, storage_options=storage_options, check_chunks=check_chunks) as handle:
        return handle.load(lazy=lazy, estimators=estimators, max_memory=max_memory, verify=verify, public_key=public_key, engine=engine)


def _reduce_lazy(lazy: StoredEstimators) -> tuple[Any, tuple]:
    """``__reduce__`` of the lazy estimators :func:`load` makes: a reference opened by :func:`load_reference`."""
    from .distributed import reduce_lazy_estimators

    return reduce_lazy_estimators(lazy, opener=load_reference)


def load_reference(*reference: Any) -> Any:
    """Lazy estimators from a pickled store reference (what unpickling a lazy forest's ``estimators_`` calls).

    See :func:`treeshard.distributed.load_lazy_estimators` for the arguments.
    """
    from .distributed import load_lazy_estimators

    return load_lazy_estimators(load, *reference)

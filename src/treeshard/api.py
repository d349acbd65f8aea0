"""The public API: :func:`save`, :func:`load` and :func:`open`."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import platform
import sys
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__
from .adapters import SavedModel, adapter_for
from .adapters.families import BAGGED, BOOSTING, ESTIMATORS, ISOLATION, family_of
from .codecs import CODECS, DEFAULT_CODEC, node_chunk_rows
from .columns import TreeNodeRows
from .errors import ArrayError, ConfigError, MemoryBudgetError, SklearnVersionWarning, UnsupportedEstimatorError
from .lazy import DEFAULT_BATCH_BYTES, LazyEstimators, TreeCache, TreeSource
from .reader import FITTED_GROUP, NODES_GROUP, StoreReader
from .record import Config, check_json_depth
from .spec import CONFIG_KEY, DIGEST_KEY, FORMAT_VERSION, MAX_JSON_DEPTH, MAX_SAVED_CONFIG_BYTES, MAX_USER_METADATA_BYTES, canonical_json
from .storage.targets import check_target, write_files




# --------------------------------------------------------------------------- save
def save(
    estimator: Any,
    store: Any,
    *,
    codec: str = DEFAULT_CODEC,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Save a fitted tree ensemble to ``store`` (a directory, a ``.zip`` path or a zarr Store).

    Parameters
    ----------
    estimator : a fitted supported estimator (see ``treeshard.SUPPORTED_ESTIMATORS``).
    store : str, os.PathLike or zarr.abc.store.Store
        A path ending in ``.zip`` makes a single file; any other path a directory.
    codec : {"lz4", "zstd", "none"}
        ``"lz4"`` decodes fastest; ``"zstd"`` makes smaller files.
    metadata : mapping, optional
        JSON-safe data kept with the model (metrics, dataset id, notes). It
        never changes how the model loads.
    overwrite : bool
        Replace an existing store. Without it, an existing store is left untouched.
    storage_options : dict, optional
        For an fsspec URL store (``s3://bucket/model.zip``): options for the
        filesystem, e.g. credentials or ``endpoint_url`` (see ``docs/REMOTE.md``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> import treeshard, zarr
    >>> X, y = load_iris(return_X_y=True)
    >>> model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> store = zarr.storage.MemoryStore()
    >>> treeshard.save(model, store, metadata={"accuracy": model.score(X, y)})
    >>> (treeshard.load(store).predict(X) == model.predict(X)).all()
    np.True_
    """
    from sklearn.utils.validation import check_is_fitted

    adapter = adapter_for(estimator)
    check_is_fitted(estimator)
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    user_metadata = _check_metadata(metadata)
    saved = adapter.to_saved(estimator)
    _check_loadable(adapter, estimator, saved)
    _write(store, adapter.estimator_id, saved, codec=codec, metadata=user_metadata, overwrite=overwrite, storage_options=storage_options)


def _check_loadable(adapter: Any, estimator: Any, saved: SavedModel) -> None:
    """Run load's checks on what save is about to write (as JSON reads it back):
    a model that load would refuse is refused now, naming the inconsistency."""
    if adapter.check_saved is None:
        return
    as_read = dataclasses.replace(saved, params=json.loads(json.dumps(saved.params)), fitted=json.loads(json.dumps(saved.fitted)))
    try:
        adapter.check_saved(type(estimator), as_read)
    except (ConfigError, ArrayError) as exc:
        raise UnsupportedEstimatorError(f"cannot save this {type(estimator).__name__}: its state is inconsistent ({exc})") from None


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-safe (str keys, finite numbers): {exc}") from None
    decoded = json.loads(text)
    if decoded != dict(metadata):
        raise TypeError("metadata must be JSON-safe: keys must be strings and sequences lists")
    # A reader refuses deeper or larger records: never write a store that cannot be read.
    try:
        check_json_depth(decoded, "metadata", depth=1)  # the record holds it one level down
    except ConfigError:
        raise ValueError(f"metadata is nested deeper than {MAX_JSON_DEPTH - 1} levels") from None
    if len(text.encode()) > MAX_USER_METADATA_BYTES:
        raise ValueError(f"metadata is {len(text.encode()):,} bytes as JSON; at most {MAX_USER_METADATA_BYTES:,} are allowed")
    return decoded


def _check_record(record: dict[str, Any]) -> None:
    """The config record is within the limits a reader enforces (else ``ValueError``)."""
    try:
        check_json_depth(record)
    except ConfigError as exc:
        raise ValueError(f"cannot save: the config record would be unreadable ({exc})") from None
    size = len(json.dumps(record).encode())
    if size > MAX_SAVED_CONFIG_BYTES:
        raise ValueError(
            f"cannot save: the config record would be {size:,} bytes; readers accept at most {MAX_SAVED_CONFIG_BYTES:,}"
        )


def _write(store: Any, estimator_id: str, saved: SavedModel, *, codec: str, metadata: dict, overwrite: bool, storage_options: Any) -> None:
    import sklearn

    from .integrity import digest_of_files
    from .writer import encode_specs, in_memory, node_column_specs, store_files

    check_target(store, overwrite=overwrite)
    # Node columns are encoded chunk by chunk from the trees' own arrays: never concatenated.
    nodes = TreeNodeRows(saved.trees, saved.layout)
    specs = [in_memory(f"{NODES_GROUP}/tree_ptr", nodes.tree_ptr)]
    specs += node_column_specs(nodes, NODES_GROUP, rows=node_chunk_rows(saved.layout.value_width))
    specs += [in_memory(f"{FITTED_GROUP}/{name}", array) for name, array in saved.arrays.items()]
    encoded = encode_specs(specs, codec=codec)
    value = next(array for array in encoded if array.path == f"{NODES_GROUP}/value")
    value_encoding = "weighted_counts" if value.metadata["data_type"] == "int32" else "float64"
    saved.layout = dataclasses.replace(saved.layout, value_encoding=value_encoding)
    stored = {array.path: {"nbytes": array.nbytes, "stored_bytes": array.stored_bytes} for array in encoded}
    config = Config(
        format_version=FORMAT_VERSION,
        estimator=estimator_id,
        params=saved.params,
        unserializable_params=tuple(saved.unserializable_params),
        fitted=saved.fitted,
        trees=saved.layout,
        codec=codec,
        versions={
            "treeshard": __version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "zarr": _zarr_version(),
            "python": platform.python_version(),
        },
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        metadata=metadata,
        arrays=stored,
    )
    record = config.to_json()
    _check_record(record)
    files = store_files(encoded, {CONFIG_KEY: record})
    # The digest covers everything above; hashed as encoded, never read back.
    shards = {array.path: {key: (array.shard_sha256[key], array.inner[key]) for key in array.shards} for array in encoded}
    # ``record`` is plain JSON (string keys, finite floats): what a reader parses back is equal to it.
    files[DIGEST_KEY] = canonical_json(digest_of_files(files, config=record, arrays=shards))
    write_files(store, files, overwrite=overwrite, storage_options=storage_options)


@functools.lru_cache(maxsize=1)
def _zarr_version() -> str:
    """The installed zarr's version, without importing zarr (a save does not need it)."""
    zarr = sys.modules.get("zarr")
    if zarr is not None:
        return zarr.__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zarr")
    except PackageNotFoundError:
        return "none"


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
    #: Family-specific facts (JSON values) that ``treeshard info`` lists, e.g. an IsolationForest's ``offset_``.
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

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
        self.location = self._reader.location
        self.config = self._reader.config
        self.adapter = self._reader.adapter

    @property
    def info(self) -> ModelInfo:
        config = self.config
        details: dict[str, Any] = {}
        estimator_type = "classifier" if ESTIMATORS[config.estimator].is_classifier else "regressor"
        if family_of(config.estimator) == ISOLATION:
            from .isolation import describe

            details, estimator_type = describe(config), "outlier_detector"
        return ModelInfo(
            estimator=config.estimator,
            estimator_type=estimator_type,
            n_estimators=config.trees.n_trees // _trees_per_stage(config),
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
        if verify:
            from .integrity import verify_store
            from .storage.urls import is_url

            if is_url(self._store):
                raise ValueError("verify= needs a local store: `treeshard verify` a downloaded copy")
            verify_store(self._reader.source, public_key=public_key)  # the pinned store, not reopened
        elif public_key is not None:
            # The signed record was read with the config (the root checked against it), and
            # every chunk is checked against it as it is read: nothing unsigned is used.
            self._reader.check_signature(public_key)
        config = self.config
        is_forest = family_of(self.adapter.estimator_id) in BAGGED
        source = TreeSource(self._reader)
        selection = select_trees(estimators, config, fitted=config.fitted)
        budget = parse_memory(max_memory)
        needed = int(source.tree_bytes(selection).sum())
        over_budget = budget is not None and needed > budget
        if over_budget and not (is_forest and lazy):
            what = "lazily: only forests stream trees" if is_forest else f"a {config.estimator}: only forests stream trees"
            raise MemoryBudgetError(
                f"the selected trees need {needed:,} bytes in memory, over max_memory={budget:,}; "
                f"cannot load {what} (select fewer trees with estimators=...)"
            )
        extra = {name: array for name in self.adapter.array_names if (array := self._reader.read_extra(name)) is not None}
        _warn_on_version_change(config)

        if is_forest and lazy:
            # The model outlives this handle: it reads through its own reader of the
            # handle's open store (never reopened by path: same bytes as the config),
            # closed when the model is garbage collected.
            source = TreeSource(self._reader.share())
            weakref.finalize(source, source.reader.close)
            cache = TreeCache(budget // 4 if over_budget else None)
            batch = max(1, budget // 8) if over_budget else DEFAULT_BATCH_BYTES
            # The flat engine gets what the trees leave of the budget:
            # half when they stream (cache: a quarter, batches: an eighth), else the rest.
            engine_budget = None if budget is None else budget // 2 if over_budget else budget - needed

            def build(factory: Any) -> Sequence:
                return LazyEstimators(source, selection, factory, cache, batch_bytes=batch, engine_budget=engine_budget, reducer=_reduce_lazy)
        else:
            # Eager: stream batches (about a 32nd of the model, 2-32 MB while being
            # built) so that only a small fraction of the model exists twice.
            batch = min(DEFAULT_BATCH_BYTES, max(2 * 1024 * 1024, needed // 32))

            def build(factory: Any) -> Sequence:
                # Two read-ahead threads: one batch decodes while the next is validated and the
                # caller builds trees (sklearn's __setstate__ copy); at most three batches exist.
                return LazyEstimators(source, selection, factory, TreeCache(0), batch_bytes=batch, workers=2).materialize()

        saved = SavedModel(
            params=config.params,
            unserializable_params=list(config.unserializable_params),
            fitted=config.fitted,
            layout=config.trees,
            trees=(),
            arrays=extra,
            selection=selection,
            build_estimators=build,
            tree_ptr=source.reader.tree_ptr,
        )
        estimator = self.adapter.from_saved(self.adapter.estimator_class(), saved)
        if is_forest and lazy and engine == "auto":
            from .dispatch import install

            install(estimator)
        return estimator

    def tree(self, index: int) -> Any:
        """Tree ``index`` as a fitted sklearn tree estimator (a forest's sub-estimator;
        for gradient boosting, trees are numbered stage-major)."""
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
        return estimator.estimators_.reshape(-1)[index]

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        return f"<treeshard.ModelHandle {info.estimator} n_estimators={info.n_estimators} at {self.location}>"




def _trees_per_stage(config: Config) -> int:
    """Trees per boosting stage (1 for forests and single trees)."""
    per_stage = config.fitted.get("n_trees_per_iteration_", 1) if family_of(config.estimator) == BOOSTING else 1
    return per_stage if isinstance(per_stage, int) and not isinstance(per_stage, bool) and per_stage >= 1 else 1


def select_trees(spec: Any, config: Config, *, fitted: dict[str, Any]) -> np.ndarray:
    """Global ids of the trees that ``estimators=spec`` selects.

    Forests take the first ``k`` trees (an int), a slice or a list of distinct
    indices; gradient boosting takes a prefix of its stages (an int ``k``, a
    slice ``:k`` or ``range(k)``), so staged predictions stay meaningful.
    """
    n_trees = config.trees.n_trees
    if spec is None:
        return np.arange(n_trees, dtype=np.int64)
    if family_of(config.estimator) == BOOSTING:
        per_stage = _trees_per_stage(config)
        n_units, unit = n_trees // per_stage, "stages"
    elif family_of(config.estimator) in BAGGED:
        per_stage, n_units, unit = 1, n_trees, "trees"
    else:
        raise TypeError(f"estimators= selects trees of an ensemble; a {config.estimator} has one tree")
    if isinstance(spec, bool):
        raise TypeError("estimators must be an int, a slice or a list of indices, not a bool")
    if isinstance(spec, (int, np.integer)):
        if not 1 <= spec <= n_units:
            raise ValueError(f"estimators={spec}: choose between 1 and {n_units} {unit}")
        units = np.arange(int(spec), dtype=np.int64)
    elif isinstance(spec, slice):
        units = np.arange(n_units, dtype=np.int64)[spec]
    elif isinstance(spec, (Sequence, np.ndarray, range)) and not isinstance(spec, (str, bytes, bytearray)):
        units = np.asarray(spec if isinstance(spec, np.ndarray) else list(spec))
        if units.ndim != 1:
            raise TypeError(f"estimators: expected a 1-D list of indices, got shape {units.shape}")
        if units.size and (units.dtype.kind not in "iu"):
            raise TypeError(f"estimators: indices must be integers, got {units.dtype}")
        units = units.astype(np.int64)
        if units.size and (units.min() < -n_units or units.max() >= n_units):
            raise IndexError(f"estimators: an index is out of range for {n_units} {unit}")
        units = units % n_units if units.size else units
        if len(np.unique(units)) != len(units):
            raise ValueError("estimators: indices must be distinct")
    else:
        raise TypeError(f"estimators must be an int, a slice or a list of indices, not {type(spec).__name__}")
    if units.size == 0:
        raise ValueError(f"estimators={spec!r} selects no {unit}")
    if per_stage > 1 or family_of(config.estimator) == BOOSTING:
        if not np.array_equal(units, np.arange(len(units))):
            raise ValueError(f"estimators: gradient boosting loads a prefix of its stages (e.g. {len(units)} or slice(0, {len(units)}))")
        return np.arange(len(units) * per_stage, dtype=np.int64)
    return units


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: int | str | None) -> int | None:
    """Bytes from an int or a string such as ``"512MB"`` or ``"1.5 GiB"``.

    >>> parse_memory("512MB"), parse_memory("1GiB"), parse_memory(1000)
    (512000000, 1073741824, 1000)
    """
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"max_memory must be positive, got {value}")
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number) :]
        try:
            amount = float(number)
        except ValueError:
            amount = math.nan
        if unit in _UNITS and math.isfinite(amount) and int(amount * _UNITS[unit]) >= 1:
            return int(amount * _UNITS[unit])
    raise ValueError(f"max_memory must be a number of bytes or a string like '512MB' or '2GiB', got {value!r}")


def _warn_on_version_change(config: Config) -> None:
    import sklearn

    saved = config.versions.get("sklearn")
    if saved is not None and saved != sklearn.__version__:
        warnings.warn(SklearnVersionWarning(saved, sklearn.__version__), stacklevel=4)


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
    max_memory : int or str, optional
        Memory budget for the trees (e.g. ``"512MB"``). A forest larger than the
        budget is streamed through memory at each prediction, with exact results.
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


def _reduce_lazy(lazy: LazyEstimators) -> tuple[Any, tuple]:
    """``__reduce__`` of the lazy estimators :func:`load` makes: a reference opened by :func:`load_reference`."""
    from .distributed import reduce_lazy_estimators

    return reduce_lazy_estimators(lazy, opener=load_reference)


def load_reference(*reference: Any) -> Any:
    """Lazy estimators from a pickled store reference (what unpickling a lazy forest's ``estimators_`` calls).

    See :func:`treeshard.distributed.load_lazy_estimators` for the arguments.
    """
    from .distributed import load_lazy_estimators

    return load_lazy_estimators(load, *reference)

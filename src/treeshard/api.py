"""The public API: :func:`save`, :func:`load` and :func:`open`."""

from __future__ import annotations

import datetime
import json
import math
import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__
from .adapters import ADAPTERS, ESTIMATOR_IDS, SavedModel, adapter_for
from .codecs import CODECS, DEFAULT_CODEC, chunk_geometry, compressors
from .columns import NODE_COLUMNS, TREE_PTR_DTYPE, NodeColumns, build_trees, to_columns
from .errors import (
    ArrayError,
    ConfigError,
    FormatError,
    IntegrityError,
    SklearnVersionWarning,
    StoreNotFoundError,
)
from .record import CONFIG_KEY, FORMAT_VERSION, MAX_CONFIG_BYTES, Config, parse_config
from .stores import ROOT_METADATA, open_for_reading, writing
from .validate import validate_columns, validate_tree_ptr

NODES_GROUP = "nodes"
FITTED_GROUP = "fitted"
# Anything zarr may raise while parsing metadata or decoding bytes it did not write.
_ZARR_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError, EOFError, NotImplementedError)
MAX_CHUNK_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------- save
def save(
    estimator: Any,
    store: Any,
    *,
    codec: str = DEFAULT_CODEC,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
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
    columns = to_columns(saved.trees, saved.layout)
    with writing(store, overwrite=overwrite) as target:
        _write(target, adapter.estimator_id, saved, columns, codec=codec, metadata=user_metadata)


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
    return decoded


def _write(target: Any, estimator_id: str, saved: SavedModel, columns: NodeColumns, *, codec: str, metadata: dict) -> None:
    import sklearn
    import zarr

    root = zarr.open_group(target, mode="w")
    arrays: dict[str, np.ndarray] = {f"{NODES_GROUP}/tree_ptr": columns.tree_ptr}
    arrays.update({f"{NODES_GROUP}/{name}": array for name, array in columns.arrays().items()})
    arrays.update({f"{FITTED_GROUP}/{name}": array for name, array in saved.arrays.items()})
    stored = {}
    for name, data in arrays.items():
        chunks, shards = chunk_geometry(data.shape, data.dtype.itemsize)
        array = root.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            shards=shards,
            compressors=compressors(codec),
            filters=None,
            fill_value=0,
        )
        array[...] = data
        stored[name] = {"nbytes": int(data.nbytes), "stored_bytes": int(array.nbytes_stored())}
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
            "zarr": zarr.__version__,
            "python": platform.python_version(),
        },
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        metadata=metadata,
        arrays=stored,
    )
    root.attrs.put({CONFIG_KEY: config.to_json()})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(target)


# --------------------------------------------------------------------------- open
@dataclass(frozen=True)
class ModelInfo:
    """What a store says about its model, read without touching node arrays."""

    estimator: str
    estimator_type: str
    n_estimators: int
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

    Use as a context manager; :meth:`load` builds the estimator.

    >>> import treeshard, zarr
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> store = zarr.storage.MemoryStore()
    >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), store)
    >>> with treeshard.open(store) as handle:
    ...     handle.info.estimator, handle.info.n_nodes
    ('DecisionTreeRegressor', 3)
    """

    def __init__(self, store: Any) -> None:
        self._store, self.location = open_for_reading(store)
        self._group, self.config = _read_config(self._store, self.location)
        self.adapter = ADAPTERS[self.config.estimator]

    @property
    def info(self) -> ModelInfo:
        config = self.config
        return ModelInfo(
            estimator=config.estimator,
            estimator_type="classifier" if "Classifier" in config.estimator else "regressor",
            n_estimators=config.trees.n_trees,
            n_nodes=config.trees.n_nodes,
            n_features=config.trees.n_features,
            n_outputs=config.trees.n_outputs,
            format_version=config.format_version,
            codec=config.codec,
            created=config.created,
            versions=dict(config.versions),
            params=dict(config.params),
            unserializable_params=config.unserializable_params,
            metadata=dict(config.metadata),
            arrays=dict(config.arrays),
        )

    def load(self) -> Any:
        """Read, validate and build the fitted estimator."""
        config = self.config
        layout = config.trees
        tree_ptr = self._read_array(f"{NODES_GROUP}/tree_ptr", TREE_PTR_DTYPE, (layout.n_trees + 1,))
        validate_tree_ptr(tree_ptr, n_trees=layout.n_trees, n_nodes=layout.n_nodes)
        node_arrays = {}
        for name, dtype in NODE_COLUMNS.items():
            shape = (layout.n_nodes, layout.value_width) if name == "value" else (layout.n_nodes,)
            node_arrays[name] = self._read_array(f"{NODES_GROUP}/{name}", dtype, shape)
        columns = NodeColumns(tree_ptr=tree_ptr, **node_arrays)
        validate_columns(columns, layout)
        extra = {}
        for name, dtype in self.adapter.array_names.items():
            path = f"{FITTED_GROUP}/{name}"
            if self._has_array(path):
                extra[name] = self._read_array(path, np.dtype(dtype), None)
        _warn_on_version_change(config)
        trees = list(build_trees(columns, layout))
        del columns, node_arrays
        saved = SavedModel(
            params=config.params,
            unserializable_params=list(config.unserializable_params),
            fitted=config.fitted,
            layout=layout,
            trees=trees,
            arrays=extra,
        )
        return self.adapter.from_saved(self.adapter.estimator_class(), saved)

    # -- arrays
    def _has_array(self, path: str) -> bool:
        try:
            return path in self._group
        except _ZARR_ERRORS:
            return False

    def _open_array(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> Any:
        try:
            array = self._group[path]
        except KeyError:
            raise ArrayError(f"{path}: missing") from None
        except _ZARR_ERRORS as exc:
            raise ArrayError(f"{path}: unreadable metadata ({exc})") from None
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise ArrayError(f"{path}: not an array")
        if array.dtype != dtype:
            raise ArrayError(f"{path}: dtype {array.dtype}, expected {dtype}")
        if shape is not None and tuple(array.shape) != shape:
            raise ArrayError(f"{path}: shape {tuple(array.shape)}, expected {shape}")
        if math.prod(array.shape) * dtype.itemsize > 2**40:
            raise ArrayError(f"{path}: declared size {array.shape} is too large")
        chunk_bytes = math.prod(_inner_chunk_shape(array)) * dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise ArrayError(f"{path}: chunks of {chunk_bytes} bytes exceed the {MAX_CHUNK_BYTES}-byte limit")
        return array

    def _read_array(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> np.ndarray:
        array = self._open_array(path, dtype, shape)
        try:
            return np.ascontiguousarray(array[...])
        except FileNotFoundError as exc:
            raise IntegrityError(f"{path}: a chunk is missing ({exc})") from None
        except (*_ZARR_ERRORS, OSError) as exc:
            raise IntegrityError(f"{path}: stored bytes are corrupt ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        return f"<treeshard.ModelHandle {info.estimator} n_estimators={info.n_estimators} at {self.location}>"


def _inner_chunk_shape(array: Any) -> tuple[int, ...]:
    shape = tuple(array.chunks)
    for codec in array.metadata.codecs:
        inner = getattr(codec, "chunk_shape", None)
        if inner is not None:
            shape = tuple(inner)
    return shape


def _read_config(store: Any, location: str) -> tuple[Any, Config]:
    import zarr
    from zarr.core.sync import sync

    try:
        sync(store._ensure_open())  # zarr opens stores lazily; ZipStore needs it before getsize
        size = sync(store.getsize(ROOT_METADATA))
    except FileNotFoundError:
        raise StoreNotFoundError(f"{location}: not a treeshard store (no {ROOT_METADATA})") from None
    except (*_ZARR_ERRORS, OSError) as exc:
        raise FormatError(f"{location}: cannot read {ROOT_METADATA} ({exc})") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{ROOT_METADATA}: {size} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(store, mode="r", use_consolidated=None)
        attributes = group.attrs.asdict()
    except FileNotFoundError:
        raise StoreNotFoundError(f"{location}: not a treeshard store") from None
    except (*_ZARR_ERRORS, OSError, RecursionError) as exc:
        raise ConfigError(f"{ROOT_METADATA}: unreadable ({type(exc).__name__}: {exc})") from None
    if CONFIG_KEY not in attributes:
        raise ConfigError(f"{ROOT_METADATA}: no {CONFIG_KEY!r} config record (not a treeshard store)")
    return group, parse_config(attributes[CONFIG_KEY], known_estimators=ESTIMATOR_IDS)


def _warn_on_version_change(config: Config) -> None:
    import sklearn

    saved = config.versions.get("sklearn")
    if saved is not None and saved != sklearn.__version__:
        warnings.warn(SklearnVersionWarning(saved, sklearn.__version__), stacklevel=3)


def open(store: Any) -> ModelHandle:  # noqa: A001 - mirrors zarr.open / builtins.open
    """Open a store and read its config only; see :class:`ModelHandle`."""
    return ModelHandle(store)


def load(store: Any) -> Any:
    """Load a fitted estimator from ``store``; every output equals the saved model's.

    Raises :class:`~treeshard.FormatError` (naming the problem) for a
    malformed store and :class:`~treeshard.StoreNotFoundError` for a missing one.

    >>> import treeshard, zarr
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> store = zarr.storage.MemoryStore()
    >>> treeshard.save(DecisionTreeClassifier().fit([[0], [1]], ["no", "yes"]), store)
    >>> treeshard.load(store).predict([[0.9]])
    array(['yes'], dtype='<U3')
    """
    with ModelHandle(store) as handle:
        return handle.load()

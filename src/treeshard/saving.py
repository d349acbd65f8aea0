"""Saving: :func:`save` checks a fitted estimator, encodes its config record and node
columns, and writes them (with the digest record) to the store."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import platform
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import __version__
from .adapters import SavedModel, adapter_for
from .codecs import CODECS, DEFAULT_CODEC, node_chunk_rows
from .columns import TreeNodeRows
from .compat import leaf_counts_for
from .errors import ArrayError, ConfigError, UnsupportedEstimatorError
from .reader import FITTED_GROUP, NODES_GROUP
from .record import Config, check_json_depth
from .spec import CONFIG_KEY, DIGEST_KEY, FORMAT_VERSION, MAX_JSON_DEPTH, MAX_SAVED_CONFIG_BYTES, MAX_USER_METADATA_BYTES
from .storage.targets import check_target, write_files
from .writer import dumps

__all__ = ["save"]


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
    encode = _checked_encoder(estimator, codec=codec, metadata=metadata)
    verified = check_target(store, overwrite=overwrite)
    write_files(store, encode(), overwrite=overwrite, storage_options=storage_options, verified=verified)


def encode_files(
    estimator: Any, *, codec: str = DEFAULT_CODEC, metadata: Mapping[str, Any] | None = None, node_rows: int | None = None
) -> dict[str, bytes | list[bytes]]:
    """The files :func:`save` would write for ``estimator`` (``{key: bytes or a shard's parts}``),
    written nowhere: what :class:`treeshard.Repository` stores. ``node_rows`` caps the node
    columns' chunk length (a power of two), for finer sharing of chunks between versions."""
    files = _checked_encoder(estimator, codec=codec, metadata=metadata)(node_rows=node_rows)
    return {key: value.result() if isinstance(value, Future) else value for key, value in files.items()}


def _checked_encoder(estimator: Any, *, codec: str, metadata: Mapping[str, Any] | None) -> Callable[..., dict[str, Any]]:
    """Everything a save refuses before it touches the target, then the encoder of the store's files
    (called with an optional ``node_rows``)."""
    from sklearn.utils.validation import check_is_fitted

    from .pipeline.save import check_fitted, encode_pipeline_files, is_pipeline

    if is_pipeline(estimator):
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        user_metadata = _check_metadata(metadata)
        check_fitted(estimator)
        return functools.partial(encode_pipeline_files, estimator, codec=codec, metadata=user_metadata, checks=_pipeline_checks())
    adapter = adapter_for(estimator)
    check_is_fitted(estimator)
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    user_metadata = _check_metadata(metadata)
    saved = adapter.to_saved(estimator)
    _check_loadable(adapter, estimator, saved)
    return functools.partial(_encode, adapter.estimator_id, saved, codec=codec, metadata=user_metadata)


def _pipeline_checks() -> SimpleNamespace:
    """This module's own checks, which the pipeline writer runs (passed down: it cannot import them back)."""
    return SimpleNamespace(check_loadable=_check_loadable, check_record=_check_record, zarr_version=_zarr_version)


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


def _check_record(record: dict[str, Any]) -> bytes:
    """The config record is within the limits a reader enforces (else ``ValueError``);
    returns it as stored (the text measured)."""
    text = dumps(record)
    # Nesting never exceeds the number of opening brackets (strings' own included): only a record
    # with more than the limit needs the walk.
    if text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH:
        try:
            check_json_depth(record)
        except ConfigError as exc:
            raise ValueError(f"cannot save: the config record would be unreadable ({exc})") from None
    if len(text) > MAX_SAVED_CONFIG_BYTES:
        raise ValueError(
            f"cannot save: the config record would be {len(text):,} bytes; readers accept at most {MAX_SAVED_CONFIG_BYTES:,}"
        )
    return text


def _encode(estimator_id: str, saved: SavedModel, *, codec: str, metadata: dict, node_rows: int | None = None) -> dict[str, bytes | list[bytes] | Future[bytes]]:
    import sklearn

    from .integrity import digest_file
    from .writer import dumps_member, encode_specs, hash_shard_files, in_memory, is_large, node_column_specs, store_files

    leaf_counts = False
    if saved.node_arrays is not None:  # a family with its own node arrays (histogram boosting)
        specs = [in_memory(f"{NODES_GROUP}/{name}", array) for name, array in saved.node_arrays.items()]
    else:
        # Node columns are encoded chunk by chunk from the trees' own arrays: never concatenated.
        nodes = TreeNodeRows(saved.trees, saved.layout, leaf_counts=leaf_counts_for(estimator_id))
        specs = [in_memory(f"{NODES_GROUP}/tree_ptr", nodes.tree_ptr)]
        rows = node_chunk_rows(saved.layout.value_width)
        specs += node_column_specs(nodes, NODES_GROUP, rows=rows if node_rows is None else min(rows, node_rows))
        leaf_counts = nodes.leaf_counts
    specs += [in_memory(f"{FITTED_GROUP}/{name}", array) for name, array in saved.arrays.items()]
    encoded = encode_specs(specs, codec=codec, hash_shards=False)
    value = next(array for array in encoded if array.path == f"{NODES_GROUP}/value")
    value_encoding = "weighted_counts" if value.metadata["data_type"] == "int32" else "class_counts" if leaf_counts else "float64"
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
    text = _check_record(record)
    files = store_files(encoded, dumps_member(CONFIG_KEY, text))
    written = dict(files)

    def digest() -> bytes:
        """The digest record: it covers everything above, hashed from memory, never read back."""
        hash_shard_files(encoded)
        shards = {array.path: {key: (array.shard_sha256[key], array.inner[key]) for key in array.shards} for array in encoded}
        # ``record`` is plain JSON (string keys, finite floats): what a reader parses back is equal to it.
        return digest_file(written, config=record, arrays=shards)

    if is_large(encoded):
        # Hashed by another thread while the target is written (the digest file comes after the
        # shards, see storage.targets.write_files): the shard files' sha256 overlaps their writing.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="treeshard-digest")
        files[DIGEST_KEY] = pool.submit(digest)
        pool.shutdown(wait=False)
    else:
        files[DIGEST_KEY] = digest()
    return files


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

"""Reading a store: config, array metadata checks, and node ranges.

Every array's dtype, shape and chunk size is checked against the config
before a byte of it is decoded, and every failure (a bad checksum, a
truncated shard, a malformed chunk) is a :class:`FormatError` subclass
naming the array.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from .adapters import ADAPTERS, ESTIMATOR_IDS
from .columns import NODE_COLUMNS, TREE_PTR_DTYPE, WEIGHTED_COUNTS_DTYPE, NodeColumns, check_weighted_counts, decode_values
from .blosc import UnsupportedLayout
from .chunks import ArrayLayout, ChunkReader, FetchedChunks
from .errors import ArrayError, ConfigError
from .pipeline.record import is_pipeline_record, parse_pipeline_record
from .record import parse_config
from .spec import CONFIG_KEY, ROOT_METADATA
from .validate import validate_tree_ptr

if TYPE_CHECKING:
    from .storage.sources import ByteSource

NODES_GROUP = "nodes"
FITTED_GROUP = "fitted"


class StoreReader:
    """An open, read-only store whose config has been parsed and checked.

    Arrays are read by :class:`~treeshard.chunks.ChunkReader`, which knows
    exactly the subset of zarr v3 that format v1 writes (so the read path
    does not import zarr) and checks every checksum and size on the way.

    >>> reader = StoreReader("model.zip")          # doctest: +SKIP
    >>> reader.config.trees.n_trees                # doctest: +SKIP
    100
    """

    def __init__(self, store: Any, *, storage_options: dict[str, Any] | None = None, check_chunks: bool = True) -> None:
        self._fast = ChunkReader(store, storage_options, check_chunks=check_chunks)
        self.location = self._fast.location
        try:
            attributes = self._fast.attributes
            if CONFIG_KEY not in attributes:
                raise ConfigError(f"{ROOT_METADATA}: no {CONFIG_KEY!r} config record (not a treeshard store)")
            raw = attributes[CONFIG_KEY]
            #: A pipeline store's record (``docs/FORMAT.md`` section 10); its ensembles are read by :meth:`for_model`.
            self.pipeline = None
            if is_pipeline_record(raw):
                self.pipeline = parse_pipeline_record(raw)
                self.config = None  # type: ignore[assignment]
            else:
                self.config = parse_config(raw, known_estimators=ESTIMATOR_IDS)
        except BaseException:
            self._fast.close()
            raise
        self.adapter = None if self.pipeline is not None else ADAPTERS[self.config.estimator]
        self._prefix = ""  # the group of a pipeline's ensemble: "models/0/"
        self._layouts: dict[str, ArrayLayout] = {}
        self._tree_ptr: np.ndarray | None = None

    @property
    def load_options(self) -> dict[str, Any]:
        """The load options a process reopening this store applies too (see ``ChunkReader.load_options``)."""
        return self._fast.load_options

    def add_load_options(self, **options: Any) -> None:
        self._fast.load_options = {**self._fast.load_options, **options}  # replaced: shared readers keep theirs

    def share(self) -> StoreReader:
        """Another reader of this open store: the same pinned source, config and tree offsets,
        with no request and no reopening by path (which could pair this config with a store
        saved over it since). Each reader is closed on its own; the store closes with the last."""
        other = copy.copy(self)
        other._fast = self._fast.share()
        other._layouts = dict(self._layouts)
        return other

    def for_model(self, group: str, config: Any) -> StoreReader:
        """A reader of the ensemble stored under ``group`` of this pipeline store (same open source)."""
        other = self.share()
        other.pipeline, other.config, other.adapter = None, config, ADAPTERS[config.estimator]
        other._prefix, other._layouts, other._tree_ptr = f"{group}/", {}, None
        return other

    def path(self, name: str) -> str:
        """The stored path of ``name`` (``nodes/tree_ptr``): under the ensemble's group in a pipeline store."""
        return f"{self._prefix}{name}"

    @property
    def source(self) -> ByteSource:
        """The open byte source (pinned: a verification reads the very store this reader reads)."""
        return self._fast.source

    @property
    def tree_ptr(self) -> np.ndarray:
        """Node offsets of every tree (read and checked once)."""
        if self._tree_ptr is None:
            layout = self.config.trees
            tree_ptr = self.read(self.path(f"{NODES_GROUP}/tree_ptr"), TREE_PTR_DTYPE, (layout.n_trees + 1,))
            validate_tree_ptr(tree_ptr, n_trees=layout.n_trees, n_nodes=layout.n_nodes)
            self._tree_ptr = tree_ptr
        return self._tree_ptr

    def has_array(self, path: str) -> bool:
        return self._fast.has_array(path)

    def array(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> ArrayLayout:
        """The checked layout of the array at ``path`` (no chunk is read)."""
        layout = self._layouts.get(path)
        if layout is None:
            try:
                layout = self._fast.array_layout(path, dtype, shape)
            except UnsupportedLayout as exc:
                raise ArrayError(f"{path}: stored with zarr features outside treeshard format v1 ({exc})") from None
            self._layouts[path] = layout
        return layout

    def node_array(self, name: str) -> ArrayLayout:
        layout = self.config.trees
        shape = (layout.n_nodes, layout.value_width) if name == "value" else (layout.n_nodes,)
        dtype = NODE_COLUMNS[name]
        if name == "value" and layout.value_encoding == "weighted_counts":
            dtype = WEIGHTED_COUNTS_DTYPE
        return self.array(self.path(f"{NODES_GROUP}/{name}"), dtype, shape)

    # -- data
    def read(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> np.ndarray:
        """A whole (small) array."""
        layout = self.array(path, dtype, shape)
        return self._fast.read_rows(layout, 0, layout.shape[0] if layout.shape else 1)

    def read_rows(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the array at ``path`` (checked against ``dtype`` and ``shape``)."""
        return self._fast.read_rows(self.array(path, dtype, shape), start, stop)

    def read_many(self, requests: list[tuple[str, np.dtype, tuple[int, ...] | None, int, int]]) -> list[np.ndarray]:
        """:meth:`read_rows` of several ``(path, dtype, shape, start, stop)``, every chunk decoded concurrently."""
        return self._fast.read_many([(self.array(path, dtype, shape), start, stop) for path, dtype, shape, start, stop in requests])

    def read_extra(self, name: str) -> np.ndarray | None:
        """The fitted array ``fitted/<name>`` if the store has it."""
        path = self.path(f"{FITTED_GROUP}/{name}")
        if not self.has_array(path):
            return None
        return self.read(path, np.dtype(self.adapter.array_names[name]), None)

    @property
    def chunk_rows(self) -> int:
        """Nodes per chunk of the node columns (reads aligned to it decode each chunk once)."""
        return self.node_array("threshold").chunk_rows

    def read_columns(
        self, names: list[str], ranges: list[tuple[int, int]], *, out: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Node columns ``names`` over the node ``ranges``, concatenated in order, as stored
        (``value`` may be weighted counts); every chunk is decoded concurrently. ``out``: for
        one range, arrays to decode into (reused buffers), by name."""
        layouts = [self.node_array(name) for name in names]
        if out is not None and len(ranges) != 1:
            raise ValueError("read_columns: out is for one range")
        outs = None if out is None else [out[name] for name in names]
        parts = self._fast.read_many([(layout, start, stop) for layout in layouts for start, stop in ranges], outs=outs)
        n = len(ranges)
        return {name: parts[i * n] if n == 1 else np.concatenate(parts[i * n : (i + 1) * n]) for i, name in enumerate(names)}

    def read_node_range(self, start: int, stop: int, *, as_counts: bool = False) -> dict[str, np.ndarray]:
        """Every node column over nodes ``start:stop``, decoded concurrently (values as float64;
        ``as_counts``: classifier values as weighted class counts, see :func:`~treeshard.columns.decode_values`)."""
        columns = self.read_columns(list(NODE_COLUMNS), [(start, stop)])
        layout = self.config.trees
        columns["value"] = decode_values(
            columns["value"], columns["weighted_n_node_samples"], layout.value_encoding, n_classes=layout.n_classes, as_counts=as_counts
        )
        return columns

    def read_stored_nodes(self, first_tree: int, stop_tree: int, *, out: dict[str, np.ndarray] | None = None) -> NodeColumns:
        """Node columns of trees ``first_tree:stop_tree`` with ``value`` as stored (weighted
        counts checked as :func:`~treeshard.columns.decode_values` checks them), for a caller
        that decodes values straight into its own arrays
        (:func:`~treeshard.columns.decode_values_into`); decoded into ``out`` (see
        :meth:`read_columns`) if given."""
        ptr = self.tree_ptr
        start, stop = int(ptr[first_tree]), int(ptr[stop_tree])
        columns = self.read_columns(list(NODE_COLUMNS), [(start, stop)], out=out)
        if self.config.trees.value_encoding == "weighted_counts":
            check_weighted_counts(columns["value"], columns["weighted_n_node_samples"])
        return NodeColumns(tree_ptr=ptr[first_tree : stop_tree + 1] - start, **columns)

    def fetch_node_chunks(self, first: int, stop: int, out: dict[str, np.ndarray]) -> FetchedChunks:
        """Whole chunks ``first:stop`` (chunk numbers) of every node column, as stored, read to be
        decoded into ``out`` by name (arrays of at least ``(stop - first) * chunk_rows`` rows) by
        :meth:`decode_node_chunks`: an eager load's reads (:meth:`~treeshard.chunks.ChunkReader.fetch_chunks`)."""
        return self._fast.fetch_chunks([(self.node_array(name), first, stop, out[name]) for name in NODE_COLUMNS])

    def decode_node_chunks(self, fetched: FetchedChunks, *, copies: tuple | None = None, weighted: tuple | None = None) -> bool:
        """Decode what :meth:`fetch_node_chunks` read, with ``copies`` and ``weighted`` in the same
        GIL-free call (:meth:`~treeshard.chunks.ChunkReader.decode_fetched`)."""
        return self._fast.decode_fetched(fetched, copies=copies, weighted=weighted)

    def check_node_chunks(self, ranges: list[tuple[int, int]]) -> None:
        """Raise the :class:`~treeshard.IntegrityError` a read would if a chunk of the node columns
        in the chunk ranges ``(first, stop)`` is missing, reading only shard indexes
        (:meth:`~treeshard.chunks.ChunkReader.check_stored`), range by range."""
        self._fast.check_stored([(self.node_array(name), first, stop) for first, stop in ranges for name in NODE_COLUMNS])

    def read_nodes(self, first_tree: int, stop_tree: int, *, as_counts: bool = False) -> NodeColumns:
        """Node columns of trees ``first_tree:stop_tree``."""
        ptr = self.tree_ptr
        start, stop = int(ptr[first_tree]), int(ptr[stop_tree])
        return NodeColumns(tree_ptr=ptr[first_tree : stop_tree + 1] - start, **self.read_node_range(start, stop, as_counts=as_counts))

    def check_signature(self, public_key: Any) -> None:
        """Raise :class:`~treeshard.SignatureError` unless ``public_key`` signed the digest
        record every read of this store is checked against."""
        self._fast.check_signature(public_key)

    def close(self) -> None:
        self._fast.close()



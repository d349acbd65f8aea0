"""Encode a model's arrays as the files of a zarr v3 store, without zarr.

:func:`encode_array` produces the exact bytes zarr-python writes for the
subset ``docs/FORMAT.md`` (section 7) specifies: an array's ``zarr.json`` and
its shard files, each shard the concatenated inner chunks (``bytes`` ->
``blosc`` -> ``crc32c``) followed by the shard index (``offset, length``
little-endian uint64 pairs, ``2**64 - 1`` twice for an absent chunk) and the
index's crc32c, as the zarr v3 sharding specification lays them out. Chunks
are encoded chunk-major (chunk *k* of every column, so that the node records
behind it are read while in cache), a row of chunks per task of worker threads
that fill, compress and hash it (the compiled fill, Blosc and hashlib release
the GIL; each worker runs single-threaded Blosc, as numcodecs does outside the
main thread, which makes the same bytes),
and every inner chunk's sha256 is computed as it is encoded, every shard's
from memory (:func:`hash_shard_files`; a large save does it in a thread while
the files are written), so the content digest
(:func:`treeshard.integrity.digest_of_files`) never reads anything back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
import threading
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codecs import BLOSC_SHUFFLES, CODECS, chunk_geometry, default_shuffle, shuffle_candidates
from .spec import ROOT_METADATA

#: zarr-python's ``json_indent`` setting that treeshard's documents match: ``None``, one line
#: per document (zarr-python's default, 2, only adds whitespace: about 20 KB per forest).
JSON_INDENT = None
_EMPTY_INDEX = (2**64 - 1, 2**64 - 1)


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return int(google_crc32c.value(data)).to_bytes(4, "little")


@dataclass
class EncodedArray:
    """One array as stored: its metadata document and shard files, with their digests."""

    path: str
    metadata: dict[str, Any]
    document: bytes
    shards: dict[str, list[bytes]] = field(default_factory=dict)  # chunk key ("c/0") -> the shard's parts, in order
    shard_sha256: dict[str, str] = field(default_factory=dict)
    inner: dict[str, list[list[Any]]] = field(default_factory=dict)  # chunk key -> [[offset, length, sha256]]
    nbytes: int = 0

    @property
    def stored_bytes(self) -> int:
        """What zarr's ``nbytes_stored`` reports: the metadata document and every shard."""
        return len(self.document) + sum(map(file_size, self.shards.values()))


def dumps(document: Mapping[str, Any]) -> bytes:
    """A metadata document as zarr-python serializes it (with ``json_indent`` set to None)."""
    return json.dumps(document, indent=JSON_INDENT, allow_nan=True).encode()


def dumps_member(key: str, document: bytes) -> bytes:
    """``dumps({key: value})`` from ``document``, the ``dumps`` of ``value`` (not encoded again)."""
    return b"{" + json.dumps(key).encode() + b": " + document + b"}"


@functools.lru_cache(maxsize=64)
def _data_type(dtype: np.dtype) -> tuple[str, Any]:
    """The zarr v3 ``data_type`` name and fill value (0) of a numeric dtype."""
    if dtype.kind == "b":
        return "bool", False
    if dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize in (4, 8)):
        return dtype.name, 0.0 if dtype.kind == "f" else 0
    raise ValueError(f"cannot store dtype {dtype} (numeric and bool arrays only)")


def _bytes_codec(dtype: np.dtype) -> dict[str, Any]:
    if dtype.itemsize == 1:
        return {"name": "bytes"}
    return {"name": "bytes", "configuration": {"endian": "little"}}


def array_metadata(shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], shards: tuple[int, ...], *, codec: str, shuffle: str | None) -> dict[str, Any]:
    """The ``zarr.json`` document of an array (key order as zarr-python writes it)."""
    data_type, fill = _data_type(dtype)
    inner: list[dict[str, Any]] = [_bytes_codec(dtype)]
    preset = CODECS[codec]
    if preset is not None:
        cname, level = preset
        config = {"typesize": dtype.itemsize, "cname": cname, "clevel": level, "shuffle": shuffle, "blocksize": 0}
        inner.append({"name": "blosc", "configuration": config})
    inner.append({"name": "crc32c"})
    index_codecs = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
    return {
        "shape": list(shape),
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shards)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {"chunk_shape": list(chunks), "codecs": inner, "index_codecs": index_codecs, "index_location": "end"},
            }
        ],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


_SHAPES = ("\x00shape\x00", "\x00shards\x00", "\x00chunks\x00")


@functools.lru_cache(maxsize=64)
def _document_template(dtype: np.dtype, ndim: int, codec: str, shuffle: str | None) -> tuple[bytes, tuple[bytes, ...]]:
    """``dumps`` of an array document with placeholders for its three shape lists."""
    document = array_metadata((0,) * ndim, dtype, (0,) * ndim, (0,) * ndim, codec=codec, shuffle=shuffle)
    document["shape"] = _SHAPES[0]
    document["chunk_grid"]["configuration"]["chunk_shape"] = _SHAPES[1]
    document["codecs"][0]["configuration"]["chunk_shape"] = _SHAPES[2]
    return dumps(document), tuple(json.dumps(name).encode() for name in _SHAPES)


def array_document(shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], shards: tuple[int, ...], *, codec: str, shuffle: str | None) -> bytes:
    """``dumps(array_metadata(...))``, from a cached template."""
    text, markers = _document_template(dtype, len(shape), codec, shuffle)
    for marker, values in zip(markers, (shape, shards, chunks), strict=True):
        text = text.replace(marker, b"[" + ", ".join([str(int(v)) for v in values]).encode() + b"]", 1)  # as json.dumps
    return text


def group_metadata(*, consolidated: bool = False) -> dict[str, Any]:
    """A group's ``zarr.json`` document (as a consolidated entry: with an empty inline record)."""
    if consolidated:
        return {"attributes": {}, "zarr_format": 3, "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}}, "node_type": "group"}
    return {"attributes": {}, "zarr_format": 3, "node_type": "group"}


def _compressor(codec: str, shuffle: str, itemsize: int) -> Callable[[np.ndarray], bytes]:
    """A chunk's compression."""
    blosc = _blosc(codec, shuffle, itemsize)
    if blosc is None:
        return lambda chunk: chunk.tobytes()
    return lambda chunk: blosc.encode(chunk)


@functools.lru_cache(maxsize=64)
def _blosc(codec: str, shuffle: str, itemsize: int) -> Any:
    """numcodecs' Blosc codec of a preset (it holds no state between calls: shared by threads)."""
    preset = CODECS[codec]
    if preset is None:
        return None
    from numcodecs import Blosc

    cname, level = preset
    return Blosc(cname=cname, clevel=level, shuffle=BLOSC_SHUFFLES[shuffle], blocksize=0, typesize=itemsize)


def choose_shuffle(codec: str, first_chunk: np.ndarray) -> tuple[str | None, bytes | None]:
    """The Blosc shuffle that compresses ``first_chunk`` best, and that chunk so compressed
    (reused as the stored chunk: the trial is never repeated). ``(None, None)`` uncompressed."""
    if CODECS[codec] is None:
        return None, None
    best: tuple[int, str, bytes] | None = None
    # Ties go to the first, as codecs.best_shuffle; a chunk too small for the choice to matter
    # has one candidate, zarr's default, compressed once.
    for name in shuffle_candidates(first_chunk.dtype, first_chunk.nbytes):
        encoded = _compressor(codec, name, first_chunk.dtype.itemsize)(first_chunk)
        if best is None or len(encoded) < best[0]:
            best = (len(encoded), name, encoded)
    assert best is not None
    return best[1], best[2]


@dataclass
class ArraySpec:
    """An array to encode, produced a chunk at a time.

    ``chunk(start, stop, scratch)`` returns rows ``start:stop`` as a C-contiguous
    array of exactly ``rows`` rows (padded with zeros past the end of the array);
    it may fill and return a buffer of ``scratch`` (per thread, reused). If it
    raises :class:`~treeshard.columns.NotWeightedCounts`, ``fallback`` is encoded
    instead.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunk: Callable[[int, int, dict[str, np.ndarray]], np.ndarray]
    rows: int | None = None
    fallback: ArraySpec | None = None


def in_memory(path: str, data: np.ndarray, *, rows: int | None = None) -> ArraySpec:
    """An :class:`ArraySpec` of an array already in memory (chunks are views where whole)."""
    dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
    data = np.ascontiguousarray(data, dtype=dtype)

    def chunk(start: int, stop: int, scratch: dict[str, np.ndarray]) -> np.ndarray:
        part = data[start:stop]
        if part.shape[0] == stop - start:
            return part
        padded = np.zeros((stop - start, *data.shape[1:]), dtype=data.dtype)
        padded[: part.shape[0]] = part
        return padded

    return ArraySpec(path=path, shape=data.shape, dtype=data.dtype, chunk=chunk, rows=rows)


def encode_array(path: str, data: np.ndarray, *, codec: str, rows: int | None = None) -> EncodedArray:
    """Encode ``data`` as the array ``path`` of a store (``rows``: rows per chunk, else about 2 MB)."""
    return encode_specs([in_memory(path, data, rows=rows)], codec=codec)[0]


@dataclass
class _Plan:
    spec: ArraySpec
    chunk_rows: int
    per_shard: int
    n_chunks: int
    metadata: dict[str, Any] = field(default_factory=dict)
    document: bytes = b""
    shuffle: str | None = None
    chunks: list[tuple[tuple[bytes, ...], str] | None] = field(default_factory=list)  # a chunk's parts and sha256
    failed: bool = False


_LOCAL = threading.local()
#: Below this many uncompressed bytes, arrays are encoded in the caller's thread: starting
#: worker threads would cost more than they save.
PARALLEL_BYTES = 4 * 1024 * 1024
#: A compressed chunk smaller than this is joined with its crc32c (one part to write).
_JOIN_BYTES = 64 * 1024


def _scratch() -> dict[str, np.ndarray]:
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = {}
    return scratch


def encoding_threads() -> int:
    """Threads that compress and hash chunks (Blosc and hashlib release the GIL)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def encode_specs(specs: list[ArraySpec], *, codec: str, hash_shards: bool = True) -> list[EncodedArray]:
    """Encode every array of ``specs``, each chunk's and shard's sha256 computed as it is encoded.

    Chunks are encoded chunk-major (chunk *k* of every array, so that the node records
    behind it are read once, while in cache), a row of chunks per task of
    :func:`encoding_threads` worker threads; a small model is encoded in the caller's
    thread alone. With ``hash_shards=False`` the shard files are left for
    :func:`hash_shard_files` (a save hashes them while it writes them).
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    plans = []
    total = 0
    for spec in specs:
        chunks, shards = chunk_geometry(spec.shape, spec.dtype.itemsize, rows=spec.rows)
        n_chunks = -(-spec.shape[0] // chunks[0]) if spec.shape[0] else 0
        plan = _Plan(spec, chunks[0], shards[0] // chunks[0], n_chunks)
        plan.chunks = [None] * n_chunks
        plans.append((plan, chunks, shards))
        total += math.prod(spec.shape) * spec.dtype.itemsize
    live = [p for p, _, _ in plans if p.n_chunks]
    threads = encoding_threads() if total >= PARALLEL_BYTES else 1
    if threads > 1:
        _encode_parallel(live, codec, threads)
    else:
        _encode_serial(live, codec)
    out = []
    fallbacks = {}
    for plan, chunks, shards in plans:
        if plan.failed:
            if plan.spec.fallback is None:
                raise ValueError(f"{plan.spec.path}: cannot be encoded")  # pragma: no cover - only value columns fall back
            fallbacks[plan.spec.path] = plan.spec.fallback
            out.append(None)
            continue
        shuffle = plan.shuffle
        if shuffle is None and CODECS[codec] is not None:
            shuffle = default_shuffle(plan.spec.dtype.itemsize)  # zarr's choice for an empty array
        metadata = array_metadata(plan.spec.shape, plan.spec.dtype, chunks, shards, codec=codec, shuffle=shuffle)
        document = array_document(plan.spec.shape, plan.spec.dtype, chunks, shards, codec=codec, shuffle=shuffle)
        nbytes = math.prod(plan.spec.shape) * plan.spec.dtype.itemsize
        encoded = EncodedArray(path=plan.spec.path, metadata=metadata, document=document, nbytes=nbytes)
        _assemble(encoded, plan, len(plan.spec.shape))
        out.append(encoded)
    if fallbacks:
        redone = iter(encode_specs(list(fallbacks.values()), codec=codec, hash_shards=False))
        out = [next(redone) if e is None else e for e in out]
    if hash_shards:
        hash_shard_files(out, threads=threads)
    return out


def is_large(encoded: list[EncodedArray]) -> bool:
    """Whether these arrays were encoded by worker threads (see :data:`PARALLEL_BYTES`)."""
    return sum(array.nbytes for array in encoded) >= PARALLEL_BYTES


def hash_shard_files(encoded: list[EncodedArray], *, threads: int = 1) -> None:
    """Fill each array's ``shard_sha256`` (every shard file hashed once, by ``threads`` threads)."""
    hashes = [(e, key) for e in encoded for key in e.shards if key not in e.shard_sha256]
    if threads > 1 and len(hashes) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="treeshard-save") as pool:
            digests = list(pool.map(lambda item: _sha256_parts(item[0].shards[item[1]]), hashes))
    else:
        digests = [_sha256_parts(e.shards[key]) for e, key in hashes]
    for (array, key), digest in zip(hashes, digests, strict=True):
        array.shard_sha256[key] = digest


def _encode_chunk(plan: _Plan, k: int, data: np.ndarray, codec: str) -> None:
    """Compress chunk ``k`` of ``plan`` (the first one: trying each shuffle), append its crc32c, hash it."""
    if k == 0:
        plan.shuffle, body = choose_shuffle(codec, data)
        if body is None:
            body = data.tobytes()
    else:
        body = _compressor(codec, plan.shuffle or "noshuffle", plan.spec.dtype.itemsize)(data)
    crc = _crc32c(body)
    if len(body) < _JOIN_BYTES:
        plan.chunks[k] = ((body + crc,), hashlib.sha256(body + crc).hexdigest())
        return
    digest = hashlib.sha256(body)
    digest.update(crc)
    plan.chunks[k] = ((body, crc), digest.hexdigest())  # not joined: that would copy the chunk


def _fill(plan: _Plan, k: int, scratch: dict[str, np.ndarray]) -> np.ndarray | None:
    """Rows of chunk ``k`` of ``plan``, or None (and ``plan.failed``) if its spec cannot encode them."""
    from .columns import NotWeightedCounts

    if plan.failed:
        return None
    try:
        return plan.spec.chunk(k * plan.chunk_rows, (k + 1) * plan.chunk_rows, scratch)
    except NotWeightedCounts:
        plan.failed = True
        return None


def _encode_serial(plans: list[_Plan], codec: str) -> None:
    scratch = _scratch()
    for k in range(max((p.n_chunks for p in plans), default=0)):
        for plan in plans:
            if k < plan.n_chunks:
                data = _fill(plan, k, scratch)
                if data is not None:
                    _encode_chunk(plan, k, data, codec)


def _encode_parallel(plans: list[_Plan], codec: str, threads: int) -> None:
    """Encode chunk rows in ``threads`` workers, one task per row: each worker fills the row
    into its own buffers and compresses it while in its cache. Row 0 is filled here and
    each of its chunks is a task of its own (the shuffle trial, the costliest); another
    row's chunk of an array waits for that array's shuffle to be chosen."""
    firsts: dict[int, Future[None]] = {}

    def encode(k: int) -> None:
        scratch = _scratch()
        for plan in plans:
            if k < plan.n_chunks:
                data = _fill(plan, k, scratch)
                if data is not None:
                    first = firsts.get(id(plan))
                    if first is not None:
                        first.result()
                    _encode_chunk(plan, k, data, codec)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="treeshard-save") as pool:
        futures: list[Future[None]] = []
        try:
            scratch: dict[str, np.ndarray] = {}  # row 0's buffers, alive until its tasks are done
            for plan in plans:
                data = _fill(plan, 0, scratch)
                if data is not None:
                    firsts[id(plan)] = pool.submit(_encode_chunk, plan, 0, data, codec)
            futures.extend(firsts.values())
            futures.extend(pool.submit(encode, k) for k in range(1, max((p.n_chunks for p in plans), default=0)))
        finally:
            for future in futures:
                future.result()


def _assemble(out: EncodedArray, plan: _Plan, ndim: int) -> None:
    """Shards from encoded chunks: the chunks, then the index and its crc32c."""
    suffix = "/0" * (ndim - 1)
    per_shard = plan.per_shard
    for shard in range(-(-plan.n_chunks // per_shard)):
        parts = plan.chunks[shard * per_shard : (shard + 1) * per_shard]
        inner: list[list[Any]] = []
        offset = 0
        for part in parts:
            assert part is not None
            chunk, digest = part
            length = sum(map(len, chunk))
            inner.append([offset, length, digest])
            offset += length
        absent = per_shard - len(parts)
        index_bytes = struct.pack(f"<{2 * per_shard}Q", *(v for entry in inner for v in entry[:2]), *_EMPTY_INDEX * absent)
        inner.extend([None, None, None] for _ in range(absent))
        key = f"c/{shard}{suffix}"
        # Kept as parts: joining them would copy the whole model once more.
        out.shards[key] = [*(piece for chunk, _ in parts for piece in chunk), index_bytes, _crc32c(index_bytes)]  # type: ignore[union-attr]
        out.inner[key] = inner


def _sha256_parts(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def file_size(value: bytes | list[bytes]) -> int:
    """Bytes of a file given whole or as its parts."""
    return len(value) if isinstance(value, bytes) else sum(map(len, value))


@functools.lru_cache(maxsize=1)
def _group_documents() -> tuple[bytes, bytes]:
    """A group's ``zarr.json``, and its entry in the consolidated metadata (the same for every group)."""
    return dumps(group_metadata()), dumps(group_metadata(consolidated=True))


def _consolidated_order(item: tuple[str, Any]) -> tuple[int, str]:
    """zarr-python's order of consolidated entries: by depth, then by case-folded name."""
    return item[0].count("/"), unicodedata.normalize("NFKC", item[0]).casefold()


def store_files(encoded: list[EncodedArray], attributes: Mapping[str, Any] | bytes) -> dict[str, bytes | list[bytes]]:
    """Every file of the store but the digest: groups, arrays, then the root ``zarr.json``
    (with ``attributes`` and the consolidated metadata of every node), last. Shard files
    are lists of their parts (see :func:`treeshard.storage.targets.write_files`).
    ``attributes`` may be given as its :func:`dumps` already (what the caller measured)."""
    files: dict[str, bytes | list[bytes]] = {}
    consolidated: dict[str, bytes] = {}
    groups = sorted({p.rsplit("/", 1)[0] for p in (e.path for e in encoded) if "/" in p})
    group_document, group_entry = _group_documents()
    for group in groups:
        files[f"{group}/{ROOT_METADATA}"] = group_document
        consolidated[group] = group_entry
    for array in encoded:
        files[f"{array.path}/{ROOT_METADATA}"] = array.document
        for key, shard in array.shards.items():
            files[f"{array.path}/{key}"] = shard
        consolidated[array.path] = array.document
    files[ROOT_METADATA] = _root_document(attributes, consolidated)
    return files


def _root_document(attributes: Mapping[str, Any] | bytes, consolidated: dict[str, bytes]) -> bytes:
    """``dumps`` of the root group with its consolidated metadata, reusing each node's
    serialized document (a one-line document is the same text wherever it is nested)."""
    before, between, after = _root_template()
    if not isinstance(attributes, bytes):
        attributes = dumps(dict(attributes))
    entries = sorted(consolidated.items(), key=_consolidated_order)
    inner = b", ".join(json.dumps(key).encode() + b": " + document for key, document in entries)
    return before + attributes + between + b"{" + inner + b"}" + after


@functools.lru_cache(maxsize=1)
def _root_template() -> tuple[bytes, bytes, bytes]:
    """The root document's text around its attributes and its consolidated entries (split
    on placeholders before anything is put in, so that no value can be mistaken for one)."""
    placeholders = ("\x00attributes\x00", "\x00consolidated\x00")
    root = {
        "attributes": placeholders[0],
        "zarr_format": 3,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": placeholders[1]},
        "node_type": "group",
    }
    before, rest = dumps(root).split(json.dumps(placeholders[0]).encode())
    between, after = rest.split(json.dumps(placeholders[1]).encode())
    return before, between, after


def node_column_specs(source: Any, prefix: str, *, rows: int) -> list[ArraySpec]:
    """Specs of the node columns of ``source`` (a :class:`~treeshard.columns.TreeNodeRows`),
    chunk by chunk from the trees' own arrays; ``value`` as weighted counts if they
    reproduce every value, else float64 (its ``fallback``). Chunk *k* of every column
    is filled at once (:meth:`~treeshard.columns.TreeNodeRows.fill_columns`), on the
    first of them asked for with a ``scratch``."""
    from .columns import NODE_COLUMNS, WEIGHTED_COUNTS_DTYPE, NotWeightedCounts

    n = source.n_nodes
    shapes = {name: (n, source.value_width) if name == "value" else (n,) for name in NODE_COLUMNS}
    dtypes = {name: WEIGHTED_COUNTS_DTYPE if name == "value" else dtype for name, dtype in NODE_COLUMNS.items()}
    row_key = f"{prefix}\x00row"
    # Names these specs' rows in a scratch that outlives them (a thread's, reused by the next
    # save): kept alive by the scratch itself, so never confused with a later save's.
    token = object()

    def row(start: int, stop: int, scratch: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        key = (token, start, stop)
        filled = scratch.get(row_key)
        if filled is not None and filled[0] == key:
            return filled[1], filled[2]
        buffers = {name: _buffer(scratch, f"{prefix}/{name}", (stop - start, *shapes[name][1:]), dtypes[name]) for name in NODE_COLUMNS}
        valid = max(0, min(stop, n) - start)
        exact = source.fill_columns(start, start + valid, {name: b[:valid] for name, b in buffers.items()}, buffers["value"][:valid])
        for buffer in buffers.values():
            buffer[valid:] = 0
        scratch[row_key] = (key, buffers, exact)
        return buffers, exact

    def column(name: str) -> ArraySpec:
        def chunk(start: int, stop: int, scratch: dict[str, np.ndarray]) -> np.ndarray:
            buffers, exact = row(start, stop, scratch)
            if name == "value" and not exact:
                raise NotWeightedCounts
            return buffers[name]

        return ArraySpec(path=f"{prefix}/{name}", shape=shapes[name], dtype=dtypes[name], chunk=chunk, rows=rows)

    def float_values(start: int, stop: int, scratch: dict[str, np.ndarray]) -> np.ndarray:
        buffer = _buffer(scratch, f"{prefix}/value:float64", (stop - start, source.value_width), NODE_COLUMNS["value"])
        valid = max(0, min(stop, n) - start)
        source.fill("value", start, start + valid, buffer[:valid], scratch)
        buffer[valid:] = 0
        return buffer

    specs = [column(name) for name in NODE_COLUMNS]
    specs[list(NODE_COLUMNS).index("value")].fallback = ArraySpec(
        path=f"{prefix}/value", shape=shapes["value"], dtype=NODE_COLUMNS["value"], chunk=float_values, rows=rows
    )
    return specs


def _buffer(scratch: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    size = math.prod(shape)
    buffer = scratch.get(name)
    if buffer is None or buffer.size != size or buffer.dtype != dtype:
        buffer = scratch[name] = np.empty(size, dtype=dtype)
    return buffer.reshape(shape)

"""Encode a model's arrays as the files of a zarr v3 store, without zarr.

:func:`encode_array` produces the exact bytes zarr-python writes for the
subset ``docs/FORMAT.md`` (section 7) specifies: an array's ``zarr.json`` and
its shard files, each shard the concatenated inner chunks (``bytes`` ->
``blosc`` -> ``crc32c``) followed by the shard index (``offset, length``
little-endian uint64 pairs, ``2**64 - 1`` twice for an absent chunk) and the
index's crc32c, as the zarr v3 sharding specification lays them out. Chunks
are compressed in parallel threads (Blosc releases the GIL), and every
shard's and inner chunk's sha256 is computed as it is encoded, so the
content digest (:func:`treeshard.integrity.digest_of_files`) never reads
anything back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codecs import CODECS, chunk_geometry

ROOT_METADATA = "zarr.json"
JSON_INDENT = 2  # zarr-python's default ``json_indent``
_EMPTY_INDEX = (2**64 - 1, 2**64 - 1)
#: Below this many uncompressed bytes an array is encoded in the caller's thread:
#: handing tiny chunks to a pool costs more than compressing them.
PARALLEL_MIN_BYTES = 1 << 20
_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="treeshard-encode")
    return _POOL


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return int(google_crc32c.value(data)).to_bytes(4, "little")


@dataclass
class EncodedArray:
    """One array as stored: its metadata document and shard files, with their digests."""

    path: str
    metadata: dict[str, Any]
    document: bytes
    shards: dict[str, bytes] = field(default_factory=dict)  # chunk key ("c/0") -> shard bytes
    shard_sha256: dict[str, str] = field(default_factory=dict)
    inner: dict[str, list[list[Any]]] = field(default_factory=dict)  # chunk key -> [[offset, length, sha256]]
    nbytes: int = 0

    @property
    def stored_bytes(self) -> int:
        """What zarr's ``nbytes_stored`` reports: the metadata document and every shard."""
        return len(self.document) + sum(len(s) for s in self.shards.values())


def dumps(document: Mapping[str, Any]) -> bytes:
    """A metadata document as zarr-python serializes it."""
    return json.dumps(document, indent=JSON_INDENT, allow_nan=True).encode()


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
def _document_template(dtype: np.dtype, ndim: int, codec: str, shuffle: str | None) -> tuple[bytes, tuple[tuple[bytes, int], ...]]:
    """``dumps`` of an array document with placeholders for its three shape lists, and each
    placeholder with the indentation level of its line (serializing with an indent is slow)."""
    document = array_metadata((0,) * ndim, dtype, (0,) * ndim, (0,) * ndim, codec=codec, shuffle=shuffle)
    document["shape"] = _SHAPES[0]
    document["chunk_grid"]["configuration"]["chunk_shape"] = _SHAPES[1]
    document["codecs"][0]["configuration"]["chunk_shape"] = _SHAPES[2]
    text = dumps(document)
    marks = []
    for name in _SHAPES:
        marker = json.dumps(name).encode()
        line_start = text.rindex(b"\n", 0, text.index(marker)) + 1
        marks.append((marker, (len(text[line_start:]) - len(text[line_start:].lstrip(b" "))) // JSON_INDENT))
    return text, tuple(marks)


def array_document(shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], shards: tuple[int, ...], *, codec: str, shuffle: str | None) -> bytes:
    """``dumps(array_metadata(...))``, from a cached template."""
    text, marks = _document_template(dtype, len(shape), codec, shuffle)
    for (marker, level), values in zip(marks, (shape, shards, chunks), strict=True):
        pad = b" " * (JSON_INDENT * (level + 1))
        items = b",\n".join(pad + str(int(v)).encode() for v in values)
        text = text.replace(marker, b"[\n" + items + b"\n" + b" " * (JSON_INDENT * level) + b"]" if values else b"[]", 1)
    return text


def group_metadata(*, consolidated: bool = False) -> dict[str, Any]:
    """A group's ``zarr.json`` document (as a consolidated entry: with an empty inline record)."""
    if consolidated:
        return {"attributes": {}, "zarr_format": 3, "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}}, "node_type": "group"}
    return {"attributes": {}, "zarr_format": 3, "node_type": "group"}


def _compressor(codec: str, shuffle: str, itemsize: int) -> Callable[[np.ndarray], bytes]:
    preset = CODECS[codec]
    if preset is None:
        return lambda chunk: chunk.tobytes()
    from numcodecs import Blosc

    cname, level = preset
    blosc = Blosc(cname=cname, clevel=level, shuffle=_SHUFFLES[shuffle], blocksize=0, typesize=itemsize)
    return lambda chunk: bytes(blosc.encode(chunk))


def choose_shuffle(codec: str, first_chunk: np.ndarray) -> tuple[str | None, bytes | None]:
    """The Blosc shuffle that compresses ``first_chunk`` best, and that chunk so compressed
    (reused as the stored chunk: the trial is never repeated). ``(None, None)`` uncompressed."""
    if CODECS[codec] is None:
        return None, None
    best: tuple[int, str, bytes] | None = None
    for name in ("shuffle", "bitshuffle"):  # ties go to byte shuffle, as codecs.best_shuffle
        encoded = _compressor(codec, name, first_chunk.dtype.itemsize)(first_chunk)
        if best is None or len(encoded) < best[0]:
            best = (len(encoded), name, encoded)
    assert best is not None
    return best[1], best[2]


def _little_endian(data: np.ndarray) -> np.ndarray:
    dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
    return np.ascontiguousarray(data, dtype=dtype)


def _chunk(data: np.ndarray, first: int, rows: int) -> np.ndarray:
    """Rows ``first:first + rows``, padded with the fill value (0) past the end."""
    part = data[first : first + rows]
    if part.shape[0] == rows:
        return part
    padded = np.zeros((rows, *data.shape[1:]), dtype=data.dtype)
    padded[: part.shape[0]] = part
    return padded


def encode_array(path: str, data: np.ndarray, *, codec: str, rows: int | None = None, parallel: bool | None = None) -> EncodedArray:
    """Encode ``data`` as the array ``path`` of a store (``rows``: rows per chunk, else about 2 MB)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    data = _little_endian(data)
    chunks, shards = chunk_geometry(data.shape, data.dtype.itemsize, rows=rows)
    chunk_rows, shard_rows = chunks[0], shards[0]
    n_rows = data.shape[0]
    n_chunks = -(-n_rows // chunk_rows)
    per_shard = shard_rows // chunk_rows
    shuffle, first_encoded = choose_shuffle(codec, _chunk(data, 0, chunk_rows)) if n_rows else (None, None)
    if shuffle is None and CODECS[codec] is not None:
        shuffle = "bitshuffle" if data.dtype.itemsize == 1 else "shuffle"  # zarr's choice for an empty array
    metadata = array_metadata(data.shape, data.dtype, chunks, shards, codec=codec, shuffle=shuffle)
    document = array_document(data.shape, data.dtype, chunks, shards, codec=codec, shuffle=shuffle)
    out = EncodedArray(path=path, metadata=metadata, document=document, nbytes=int(data.nbytes))
    if n_rows == 0:
        return out  # zarr stores no chunk of an empty array
    compress = _compressor(codec, shuffle or "noshuffle", data.dtype.itemsize)

    def encode(i: int) -> tuple[bytes, str]:
        body = first_encoded if i == 0 and first_encoded is not None else compress(_chunk(data, i * chunk_rows, chunk_rows))
        chunk = body + _crc32c(body)
        return chunk, hashlib.sha256(chunk).hexdigest()

    if parallel is None:
        parallel = data.nbytes >= PARALLEL_MIN_BYTES and n_chunks > 1
    encoded = list(_pool().map(encode, range(n_chunks))) if parallel else [encode(i) for i in range(n_chunks)]
    suffix = "/0" * (data.ndim - 1)
    for shard in range(-(-n_chunks // per_shard)):
        parts = encoded[shard * per_shard : (shard + 1) * per_shard]
        index = np.full((per_shard, 2), _EMPTY_INDEX[0], dtype="<u8")
        inner: list[list[Any]] = []
        offset = 0
        for k, (chunk, digest) in enumerate(parts):
            index[k] = (offset, len(chunk))
            inner.append([offset, len(chunk), digest])
            offset += len(chunk)
        inner.extend([None, None, None] for _ in range(per_shard - len(parts)))
        index_bytes = index.tobytes()
        key = f"c/{shard}{suffix}"
        out.shards[key] = b"".join([*(chunk for chunk, _ in parts), index_bytes, _crc32c(index_bytes)])
        out.inner[key] = inner
    hash_shards = (lambda items: list(_pool().map(_sha256_item, items))) if parallel else (lambda items: [_sha256_item(i) for i in items])
    out.shard_sha256 = dict(hash_shards(list(out.shards.items())))
    return out


def _sha256_item(item: tuple[str, bytes]) -> tuple[str, str]:
    return item[0], hashlib.sha256(item[1]).hexdigest()


def encode_arrays(arrays: Mapping[str, tuple[np.ndarray, int | None]], *, codec: str) -> list[EncodedArray]:
    """Encode ``{path: (data, rows per chunk or None)}``; large arrays' chunks in parallel, small
    arrays each in one pool task (a model's many small columns overlap too)."""
    small = {p: v for p, v in arrays.items() if v[0].nbytes < PARALLEL_MIN_BYTES}
    total_small = sum(v[0].nbytes for v in small.values())
    results: dict[str, EncodedArray] = {}
    if len(small) > 1 and total_small >= PARALLEL_MIN_BYTES // 4:
        futures = {p: _pool().submit(encode_array, p, d, codec=codec, rows=r, parallel=False) for p, (d, r) in small.items()}
        pending: Any = futures
    else:
        pending = {}
        for p, (d, r) in small.items():
            results[p] = encode_array(p, d, codec=codec, rows=r, parallel=False)
    for p, (d, r) in arrays.items():
        if p not in small:
            results[p] = encode_array(p, d, codec=codec, rows=r)
    for p, future in pending.items():
        results[p] = future.result()
    return [results[p] for p in arrays]


def _consolidated_order(item: tuple[str, Any]) -> tuple[int, str]:
    """zarr-python's order of consolidated entries: by depth, then by case-folded name."""
    return item[0].count("/"), unicodedata.normalize("NFKC", item[0]).casefold()


def store_files(encoded: list[EncodedArray], attributes: Mapping[str, Any]) -> dict[str, bytes]:
    """Every file of the store but the digest: groups, arrays, then the root ``zarr.json``
    (with ``attributes`` and the consolidated metadata of every node), last."""
    files: dict[str, bytes] = {}
    consolidated: dict[str, bytes] = {}
    groups = sorted({p.rsplit("/", 1)[0] for p in (e.path for e in encoded) if "/" in p})
    group_document, group_entry = dumps(group_metadata()), dumps(group_metadata(consolidated=True))
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


def _root_document(attributes: Mapping[str, Any], consolidated: dict[str, bytes]) -> bytes:
    """``dumps`` of the root group with its consolidated metadata, reusing each node's
    serialized document: an indented document nested ``k`` levels deep is the same text
    with ``2 k`` more spaces after each newline (JSON strings hold no raw newline)."""
    placeholder = "\x00consolidated\x00"
    root = {
        "attributes": dict(attributes),
        "zarr_format": 3,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": placeholder},
        "node_type": "group",
    }
    text = dumps(root)
    marker = json.dumps(placeholder).encode()
    if not consolidated:
        return text.replace(marker, b"{}", 1)
    entries = sorted(consolidated.items(), key=_consolidated_order)
    inner = b",\n".join(b"      " + json.dumps(key).encode() + b": " + document.replace(b"\n", b"\n      ") for key, document in entries)
    return text.replace(marker, b"{\n" + inner + b"\n    }", 1)

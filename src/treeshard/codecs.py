"""Codec presets and chunk/shard geometry for stored arrays.

Every preset ends with a crc32c checksum per chunk (the shard index has its
own), and uses only codecs from the zarr v3 specification, so any zarr v3
implementation can read a store.
"""

from __future__ import annotations

import math
from typing import Any

#: Preset name -> (Blosc compressor name, level), or None for no compression.
CODECS: dict[str, tuple[str, int] | None] = {
    "lz4": ("lz4", 5),  # the default: fastest to decode, smaller than joblib compress=3
    "zstd": ("zstd", 5),  # smaller files, slower to decode
    "none": None,
}
DEFAULT_CODEC = "lz4"
CHUNK_BYTES = 2 * 1024 * 1024  # uncompressed bytes per chunk (1-4 MB is zarr's sweet spot)
CHUNKS_PER_SHARD = 64  # one file per 128 MB of uncompressed column


def compressors(codec: str, *, shuffle: str | None = None) -> list[Any]:
    """The zarr ``compressors`` list of a preset (bytes-to-bytes codecs).

    ``shuffle`` is Blosc's filter ("shuffle", "bitshuffle" or "noshuffle");
    ``None`` lets zarr choose from the dtype.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    preset = CODECS[codec]
    if preset is None:
        return [Crc32cCodec()]
    cname, level = preset
    return [BloscCodec(cname=cname, clevel=level, shuffle=shuffle), Crc32cCodec()]


#: Blosc's shuffle names (as zarr v3 writes them) -> numcodecs flags.
BLOSC_SHUFFLES = {"shuffle": 1, "bitshuffle": 2, "noshuffle": 0}
#: A first chunk smaller than this gets :func:`default_shuffle` without a trial: trying both
#: shuffles costs more than the few bytes it could save.
SHUFFLE_TRIAL_BYTES = 1024
#: A float chunk this large or larger is also tried without shuffle (below, the third trial
#: costs more than it can save).
NOSHUFFLE_TRIAL_BYTES = 64 * 1024


def default_shuffle(itemsize: int) -> str:
    """zarr-python's shuffle for Blosc: bit shuffle for one-byte items, else byte shuffle."""
    return "bitshuffle" if itemsize == 1 else "shuffle"


def shuffle_candidates(dtype: Any, nbytes: int) -> tuple[str, ...]:
    """The Blosc shuffles tried on an array's first chunk (``nbytes`` long), a tie going to the first.

    Byte shuffle suits most float columns, bit shuffle small integers (child
    offsets, feature ids, counts), no shuffle float columns that are mostly
    exact zeros (a forest's ``impurity``: every leaf of a fully grown tree is
    pure), whose runs of zero bytes a shuffle scatters among the other
    values' mantissa bytes. A chunk smaller than :data:`SHUFFLE_TRIAL_BYTES`
    gets :func:`default_shuffle` alone (no trial).
    """
    if nbytes < SHUFFLE_TRIAL_BYTES:
        return (default_shuffle(dtype.itemsize),)
    if dtype.kind == "f" and nbytes >= NOSHUFFLE_TRIAL_BYTES:
        return ("shuffle", "bitshuffle", "noshuffle")
    return ("shuffle", "bitshuffle")


def best_shuffle(codec: str, sample: Any) -> str | None:
    """The Blosc shuffle of :func:`shuffle_candidates` that compresses ``sample`` (an
    array's first chunk) best; trying each on one chunk costs milliseconds."""
    preset = CODECS.get(codec)
    if preset is None or sample.size == 0:
        return None
    if sample.nbytes < SHUFFLE_TRIAL_BYTES:
        return default_shuffle(sample.dtype.itemsize)
    from numcodecs import Blosc

    cname, level = preset
    data = sample.reshape(-1).view(sample.dtype)
    sizes = {}
    for name in shuffle_candidates(sample.dtype, sample.nbytes):
        sizes[name] = len(Blosc(cname=cname, clevel=level, shuffle=BLOSC_SHUFFLES[name]).encode(data))
    return min(sizes, key=sizes.get)


def node_chunk_rows(value_width: int) -> int:
    """Rows per chunk shared by all node columns, so chunk *k* of every column covers
    the same nodes: a power of two, at most 4 MB of the widest column (``value``)."""
    rows = 1 << 16
    while rows > 1024 and rows * 8 * value_width > 2 * CHUNK_BYTES:
        rows //= 2
    return rows


def chunk_geometry(shape: tuple[int, ...], itemsize: int, *, rows: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(chunks, shards)`` for an array: chunked along the first axis only."""
    if rows is None:
        row_bytes = itemsize * max(1, math.prod(shape[1:]))
        rows = CHUNK_BYTES // row_bytes
    rows = max(1, min(max(shape[0], 1), rows))
    chunks = (rows, *shape[1:]) if shape[1:] else (rows,)
    chunks = tuple(max(1, c) for c in chunks)
    n_chunks = -(-max(shape[0], 1) // rows)
    shard_rows = rows * min(CHUNKS_PER_SHARD, n_chunks)
    shards = (shard_rows, *chunks[1:])
    return chunks, shards

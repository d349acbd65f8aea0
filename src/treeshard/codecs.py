"""Codec presets and chunk/shard geometry for stored arrays.

Every preset ends with a crc32c checksum per chunk (the shard index has its
own), and uses only codecs from the zarr v3 specification, so any zarr v3
implementation can read a store.
"""

from __future__ import annotations

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


def compressors(codec: str) -> list[Any]:
    """The zarr ``compressors`` list of a preset (bytes-to-bytes codecs)."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    preset = CODECS[codec]
    if preset is None:
        return [Crc32cCodec()]
    cname, level = preset
    return [BloscCodec(cname=cname, clevel=level), Crc32cCodec()]


def chunk_geometry(shape: tuple[int, ...], itemsize: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(chunks, shards)`` for an array: chunked along the first axis only."""
    row_bytes = itemsize * max(1, _prod(shape[1:]))
    rows = max(1, min(max(shape[0], 1), CHUNK_BYTES // row_bytes))
    chunks = (rows, *shape[1:]) if shape[1:] else (rows,)
    chunks = tuple(max(1, c) for c in chunks)
    n_chunks = -(-max(shape[0], 1) // rows)
    shard_rows = rows * min(CHUNKS_PER_SHARD, n_chunks)
    shards = (shard_rows, *chunks[1:])
    return chunks, shards


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= v
    return out

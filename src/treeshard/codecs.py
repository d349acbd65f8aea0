"""Codec presets and chunk/shard geometry for stored arrays.

Every preset ends with a crc32c checksum per chunk (the shard index has its
own), and uses only codecs from the zarr v3 specification, so any zarr v3
implementation can read a store.
"""

from __future__ import annotations

import struct
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


def best_shuffle(codec: str, sample: Any) -> str | None:
    """The Blosc shuffle that compresses ``sample`` (an array's first chunk) best.

    Byte shuffle suits most float columns, bit shuffle small integers (child
    offsets, feature ids, counts); trying both on one chunk costs milliseconds.
    """
    preset = CODECS.get(codec)
    if preset is None or sample.size == 0:
        return None
    from numcodecs import Blosc

    cname, level = preset
    data = sample.reshape(-1).view(sample.dtype)
    sizes = {}
    for name, flag in (("shuffle", Blosc.SHUFFLE), ("bitshuffle", Blosc.BITSHUFFLE)):
        sizes[name] = len(Blosc(cname=cname, clevel=level, shuffle=flag).encode(data))
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
        row_bytes = itemsize * max(1, _prod(shape[1:]))
        rows = CHUNK_BYTES // row_bytes
    rows = max(1, min(max(shape[0], 1), rows))
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


# --------------------------------------------------------------------------- safe reading
#: Most inner chunks one shard may declare (its index is read whole before any chunk).
MAX_CHUNKS_PER_SHARD = 1 << 20
_BLOSC_HEADER_BYTES = 16
_CHUNK_CODECS = ("bytes", "blosc", "crc32c")  # what format v1 writes inside a shard
_INDEX_CODECS = ("bytes", "crc32c")


class UnsafeCodecError(ValueError):
    """Raised inside zarr's decode when a chunk's header contradicts its declared size."""


def _checked_blosc_class() -> type:
    from zarr.codecs import BloscCodec

    class CheckedBloscCodec(BloscCodec):
        """zarr's Blosc codec, refusing a chunk whose header is not what the array declares.

        Blosc allocates what a chunk's 16-byte header claims before it
        decompresses, so a 100-byte chunk can ask for 2 GB. Here the header's
        uncompressed size must equal the chunk's declared size (shape x
        itemsize, already capped by the reader), and its compressed size the
        number of bytes actually stored, before numcodecs sees the chunk.
        """

        def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
            data = chunk_bytes.as_numpy_array()
            if data.nbytes < _BLOSC_HEADER_BYTES:
                raise UnsafeCodecError(f"blosc chunk of {data.nbytes} bytes is shorter than its header")
            expected = _prod(tuple(chunk_spec.shape)) * chunk_spec.dtype.to_native_dtype().itemsize
            # Blosc 1 header: version, versionlz, flags, typesize, then uint32 LE
            # nbytes (uncompressed), blocksize, cbytes (compressed, header included).
            nbytes, blocksize, cbytes = struct.unpack("<III", data[4:16].tobytes())
            if nbytes and not 0 < blocksize <= nbytes:
                raise UnsafeCodecError(f"blosc header has block size {blocksize} for {nbytes} bytes")
            if nbytes != expected:
                raise UnsafeCodecError(f"blosc header claims {nbytes} bytes, the chunk holds {expected}")
            if cbytes != data.nbytes:
                raise UnsafeCodecError(f"blosc header claims {cbytes} compressed bytes, {data.nbytes} are stored")
            return super()._decode_sync(chunk_bytes, chunk_spec)

        async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
            import asyncio

            return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    return CheckedBloscCodec


_CHECKED_BLOSC: type | None = None


def checked_blosc_codec(codec: Any) -> Any:
    """A :class:`CheckedBloscCodec` with ``codec``'s settings."""
    global _CHECKED_BLOSC
    if _CHECKED_BLOSC is None:
        _CHECKED_BLOSC = _checked_blosc_class()
    return _CHECKED_BLOSC(
        typesize=codec.typesize, cname=codec.cname, clevel=codec.clevel, shuffle=codec.shuffle, blocksize=codec.blocksize
    )


def checked_array(array: Any) -> Any:
    """``array`` (a zarr v3 ``Array`` from an untrusted store) made safe to decode.

    - codecs must be what format v1 writes: one ``sharding_indexed`` codec
      holding ``bytes`` [+ ``blosc``] + ``crc32c``, its index ``bytes`` +
      ``crc32c`` at the end; anything else (gzip, zstd, transpose, another
      layout) raises :class:`ValueError` before a byte is read;
    - a shard may declare at most :data:`MAX_CHUNKS_PER_SHARD` inner chunks
      (zarr reads and allocates the whole index first);
    - Blosc is replaced by a codec that checks each chunk's header against
      the declared chunk size before decompressing (no decompression bombs).

    Returns an equivalent read-only ``zarr.Array`` that uses the checked codecs.
    treeshard's own reader (:mod:`treeshard._fastread`) makes the same checks
    without zarr; this is for code that decodes a store's arrays through zarr.
    """
    import copy

    import zarr
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.core.array import AsyncArray

    metadata = array.metadata
    if getattr(metadata, "zarr_format", None) != 3:
        raise ValueError("not a zarr v3 array")
    codecs = tuple(metadata.codecs)
    if len(codecs) != 1 or type(codecs[0]) is not ShardingCodec:
        raise ValueError(f"codecs {[type(c).__name__ for c in codecs]}: expected one sharding_indexed codec")
    sharding = codecs[0]
    inner = tuple(sharding.codecs)
    names = tuple(_codec_name(c, BytesCodec, BloscCodec, Crc32cCodec) for c in inner)
    if names not in (_CHUNK_CODECS, ("bytes", "crc32c")):
        raise ValueError(f"chunk codecs {list(names)}: expected bytes, blosc, crc32c")
    index_names = tuple(_codec_name(c, BytesCodec, BloscCodec, Crc32cCodec) for c in sharding.index_codecs)
    if index_names != _INDEX_CODECS or str(getattr(sharding.index_location, "value", sharding.index_location)) != "end":
        raise ValueError(f"shard index codecs {list(index_names)}: expected bytes, crc32c at the end")
    outer = tuple(metadata.chunk_grid.chunk_shape)
    chunk_shape = tuple(sharding.chunk_shape)
    if len(outer) != len(chunk_shape) or any(c <= 0 or o <= 0 or o % c for o, c in zip(outer, chunk_shape)):
        raise ValueError(f"shard shape {outer} is not a multiple of the chunk shape {chunk_shape}")
    per_shard = _prod(tuple(o // c for o, c in zip(outer, chunk_shape)))
    if per_shard > MAX_CHUNKS_PER_SHARD:
        raise ValueError(f"{per_shard} chunks per shard exceeds the {MAX_CHUNKS_PER_SHARD} limit")
    safe_inner = tuple(checked_blosc_codec(c) if type(c) is BloscCodec else c for c in inner)
    safe_sharding = ShardingCodec(
        chunk_shape=chunk_shape, codecs=safe_inner, index_codecs=sharding.index_codecs, index_location=sharding.index_location
    )
    safe_metadata = copy.copy(metadata)
    object.__setattr__(safe_metadata, "codecs", (safe_sharding,))
    source = array._async_array
    return zarr.Array(AsyncArray(metadata=safe_metadata, store_path=source.store_path, config=source.config))


def _codec_name(codec: Any, bytes_cls: type, blosc_cls: type, crc_cls: type) -> str:
    kind = type(codec)
    if kind is bytes_cls:
        return "bytes"
    if kind is blosc_cls:
        return "blosc"
    if kind is crc_cls:
        return "crc32c"
    return kind.__name__

"""Blosc chunks decoded without importing numcodecs, and the crc32c checksum.

Blosc is decoded through the C library bundled in ``numcodecs`` (called with
:mod:`ctypes`, so that numcodecs' own import cost is not paid), or through
``numcodecs.blosc`` when that library cannot be found. A chunk's 16-byte
header is checked against what the array's metadata says before any byte is
decompressed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IntegrityError


class UnsupportedLayout(Exception):
    """An array uses zarr features the chunk reader does not implement."""


def crc32c() -> Any:
    """``google_crc32c.value`` (the checksum of every chunk and shard index)."""
    import google_crc32c

    return google_crc32c.value


class BloscDecoder:
    """Blosc decompression through the C library numcodecs bundles, without importing numcodecs."""

    def __init__(self, threads: int | None = None) -> None:
        self._lib: Any = None
        self._fallback: Any = None
        self._threads = threads if threads is not None else max(1, min(4, os.cpu_count() or 1))
        try:
            self._lib = _load_blosc_library()
        except (OSError, AttributeError, ImportError, UnsupportedLayout):
            import numcodecs.blosc

            self._fallback = numcodecs.blosc

    def decode_into(self, where: str, data: np.ndarray, out: np.ndarray) -> None:
        """Decompress ``data`` (a uint8 array) into the C-contiguous ``out``; sizes must match exactly."""
        expected = out.nbytes
        if len(data) < 16:
            raise IntegrityError(f"{where}: a Blosc chunk of {len(data)} bytes is truncated")
        header = data[:16].tobytes()
        declared = int.from_bytes(header[4:8], "little")
        compressed = int.from_bytes(header[12:16], "little")
        if declared != expected:
            raise IntegrityError(f"{where}: a chunk decodes to {declared} bytes, expected {expected}")
        if compressed != len(data):
            raise IntegrityError(f"{where}: a Blosc chunk declares {compressed} bytes but holds {len(data)}")
        if self._lib is not None:
            import ctypes

            source = ctypes.c_void_p(data.ctypes.data)
            nbytes = ctypes.c_size_t(0)
            if self._lib.blosc_cbuffer_validate(source, ctypes.c_size_t(len(data)), ctypes.byref(nbytes)) != 0:
                raise IntegrityError(f"{where}: a Blosc chunk header is invalid")
            done = self._lib.blosc_decompress_ctx(source, ctypes.c_void_p(out.ctypes.data), ctypes.c_size_t(expected), self._threads)
            if done != expected:
                raise IntegrityError(f"{where}: a Blosc chunk does not decode (code {done})")
            return
        try:
            self._fallback.decompress(data.tobytes(), out.reshape(-1).view(np.uint8))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise IntegrityError(f"{where}: a Blosc chunk does not decode ({exc})") from None


def _load_blosc_library() -> Any:
    import ctypes
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("numcodecs")  # top-level: does not import numcodecs
    if spec is None or not spec.submodule_search_locations:
        raise UnsupportedLayout("numcodecs is not installed")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(folder) / f"blosc{suffix}"
            if candidate.is_file():
                lib = ctypes.CDLL(str(candidate))
                lib.blosc_decompress_ctx.restype = ctypes.c_int
                lib.blosc_decompress_ctx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                lib.blosc_cbuffer_validate.restype = ctypes.c_int
                lib.blosc_cbuffer_validate.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
                return lib
    raise UnsupportedLayout("numcodecs' blosc library was not found")


@functools.cache
def native_functions() -> tuple[int, int, int, int] | None:
    """Addresses of ``crc32c_value`` (google_crc32c's library), OpenSSL's ``SHA256`` (the
    libcrypto hashlib uses) and Blosc's ``blosc_cbuffer_validate`` and ``blosc_decompress_ctx``,
    for :func:`treeshard._kernels.decode_batch`; None where any of them cannot be found (the
    chunk reader then decodes chunk by chunk through the Python calls). Looked up once."""
    import ctypes
    import importlib
    import importlib.util

    try:  # hashlib's OpenSSL module, loaded first: the libcrypto opened below by name is the one it uses
        importlib.import_module("_hashlib")
    except ImportError:
        pass

    try:
        blosc = _load_blosc_library()
    except (OSError, AttributeError, ImportError, UnsupportedLayout):
        return None
    crc = sha = None
    spec = importlib.util.find_spec("google_crc32c")
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        candidates = [*sorted(package.parent.glob("google_crc32c.libs/libcrc32c*")), *sorted(package.glob("libcrc32c*"))]
        for candidate in [*map(str, candidates), "libcrc32c.so.1"]:
            try:
                crc = ctypes.CDLL(candidate).crc32c_value
                break
            except (OSError, AttributeError):
                continue
    for name in ("libcrypto.so.3", "libcrypto.so"):
        try:
            sha = ctypes.CDLL(name).SHA256
            break
        except (OSError, AttributeError):
            continue
    if crc is None or sha is None:
        return None
    found = (crc, sha, blosc.blosc_cbuffer_validate, blosc.blosc_decompress_ctx)
    return tuple(ctypes.cast(function, ctypes.c_void_p).value or 0 for function in found)  # type: ignore[return-value]

"""Where a model lives: a directory, a ``.zip`` file, or any zarr ``Store``.

Reading opens the location read-only. Writing always builds the model in a
temporary place first and only then moves it where it belongs, so a failed
or interrupted save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FormatError, StoreExistsError, StoreNotFoundError, TreeshardError

ROOT_METADATA = "zarr.json"


class InvalidStoreError(TreeshardError, TypeError):
    """The ``store`` argument is not a path or a zarr store."""


def is_zip_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".zip")


def _zarr_store_class() -> type:
    from zarr.abc.store import Store

    return Store


def open_for_reading(store: Any) -> tuple[Any, str]:
    """``(zarr_store, description)`` for reading ``store``; checks that it exists."""
    if isinstance(store, (str, os.PathLike)):
        path = Path(store)
        if not path.exists():
            raise StoreNotFoundError(f"no treeshard store at {str(path)!r}")
        if is_zip_path(path):
            if not path.is_file():
                raise FormatError(f"{str(path)!r} is not a file")
            if not zipfile.is_zipfile(path):
                raise FormatError(f"{str(path)!r} is not a zip file")
            from zarr.storage import ZipStore

            return ZipStore(path, mode="r"), str(path)
        if not path.is_dir():
            raise FormatError(f"{str(path)!r} is neither a directory nor a .zip file")
        if not (path / ROOT_METADATA).is_file():
            raise StoreNotFoundError(f"{str(path)!r} is not a treeshard store (no {ROOT_METADATA})")
        from zarr.storage import LocalStore

        return LocalStore(path, read_only=True), str(path)
    if isinstance(store, _zarr_store_class()):
        return store, repr(store)
    raise InvalidStoreError(f"store must be a path or a zarr Store, got {type(store).__name__}")


def _store_is_empty(store: Any) -> bool:
    from zarr.core.sync import sync

    async def first_key() -> bool:
        async for _ in store.list():
            return False
        return True

    return sync(first_key())


@contextlib.contextmanager
def writing(store: Any, *, overwrite: bool) -> Iterator[Any]:
    """Yield a fresh zarr store to write a model into; put it in place on success.

    - directory: written to a hidden sibling, then renamed over the target;
    - ``.zip``: written to a sibling temporary directory, packed into a
      sibling temporary zip (entries stored uncompressed: chunks are already
      compressed) and moved over the target with an atomic ``os.replace``;
    - zarr ``Store``: written to memory, then copied in (``zarr.json`` last).

    An existing target is replaced only with ``overwrite=True``, and only if
    it is a treeshard store (or, for a directory, empty).
    """
    from zarr.storage import LocalStore, MemoryStore

    if isinstance(store, (str, os.PathLike)):
        target = Path(store)
        _check_replaceable(target, overwrite=overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            yield LocalStore(tmp_dir)
            _check_replaceable(target, overwrite=overwrite)
            if is_zip_path(target):
                tmp_zip = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}.zip"
                try:
                    _pack_zip(tmp_dir, tmp_zip)
                    os.replace(tmp_zip, target)
                finally:
                    tmp_zip.unlink(missing_ok=True)
            else:
                _replace_directory(tmp_dir, target)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return
    if not isinstance(store, _zarr_store_class()):
        raise InvalidStoreError(f"store must be a path or a zarr Store, got {type(store).__name__}")
    if not overwrite and not _store_is_empty(store):
        raise StoreExistsError(f"{store!r} is not empty; pass overwrite=True to replace it")
    staging = MemoryStore()
    yield staging
    _copy_store(staging, store, clear=overwrite)


def _check_replaceable(target: Path, *, overwrite: bool) -> None:
    if not target.exists():
        return
    if not overwrite:
        raise StoreExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it")
    if is_zip_path(target):
        if not target.is_file() or not zipfile.is_zipfile(target):
            raise StoreExistsError(f"{str(target)!r} is not a zip file; refusing to replace it")
        with zipfile.ZipFile(target) as archive:
            if ROOT_METADATA not in archive.namelist():
                raise StoreExistsError(f"{str(target)!r} is not a treeshard store; refusing to replace it")
    elif not target.is_dir() or not ((target / ROOT_METADATA).is_file() or not any(target.iterdir())):
        raise StoreExistsError(f"{str(target)!r} is not a treeshard store; refusing to replace it")


def _pack_zip(directory: Path, zip_path: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    # zarr.json last, so a reader of a truncated zip finds no model at all.
    files.sort(key=lambda p: p.relative_to(directory).as_posix() == ROOT_METADATA)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in files:
            archive.write(path, path.relative_to(directory).as_posix())
        # zarr's ZipStore reads the archive without fsync; make the bytes durable first.
    with open(zip_path, "rb+") as handle:
        os.fsync(handle.fileno())


def _replace_directory(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _copy_store(source: Any, target: Any, *, clear: bool) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def copy() -> None:
        if clear:
            await target.clear()
        keys = [key async for key in source.list()]
        keys.sort(key=lambda k: k == ROOT_METADATA)
        prototype = default_buffer_prototype()
        for key in keys:
            value = await source.get(key, prototype=prototype)
            await target.set(key, value)

    sync(copy())

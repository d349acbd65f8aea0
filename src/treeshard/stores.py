"""Writing a model where it lives: a directory, a ``.zip`` file, a URL or any zarr ``Store``
(reading goes through :func:`treeshard.storage.router.open_source`).

Writing always builds the model in a
temporary place first and only then moves it where it belongs, so a failed
or interrupted save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InvalidStoreError, StoreExistsError
from .spec import ROOT_METADATA
from .storage.local import (
    _check_replaceable,
    _fsync_file,
    _replace_directory,
    fsync_directory,
    remove_stale_temporaries,
    temporary_sibling,
    writing_path,
)
from .storage.urls import check_storage_options, is_url
from .storage.ziprules import is_zip_path


def _zarr_store_class() -> type:
    from zarr.abc.store import Store

    return Store


def _store_is_empty(store: Any) -> bool:
    from zarr.core.sync import sync

    async def first_key() -> bool:
        await store._ensure_open()  # zarr opens stores lazily (a ZipStore must be opened first)
        async for _ in store.list():
            return False
        return True

    return sync(first_key())


@contextlib.contextmanager
def writing(store: Any, *, overwrite: bool, storage_options: Any = None) -> Iterator[Any]:
    """Yield a fresh zarr store to write a model into; put it in place on success.

    - directory: written to a hidden sibling (``.NAME.tmp-PID-RANDOM``),
      every file fsynced, then moved into place. Replacing an existing
      directory swaps the two atomically (Linux ``renameat2(RENAME_EXCHANGE)``)
      so a reader always finds the old or the new model; where the kernel or
      file system cannot swap, the old directory is renamed aside first and
      for a moment there is no model at the path (never a mix of two);
    - ``.zip``: written to a sibling temporary directory, packed into a
      sibling temporary zip (entries stored uncompressed: chunks are already
      compressed, ``zarr.json`` last), fsynced and moved over the target with
      an atomic ``os.replace``;
    - zarr ``Store``: written to memory, then copied in. When overwriting, the
      old root ``zarr.json`` is deleted first and the new one is written last,
      so an interrupted copy leaves no model rather than a mix (a store object
      offers no atomic rename).

    Temporary siblings left by a killed save (their process is gone) are
    removed by the next save to the same path. An existing target is
    replaced only with ``overwrite=True``, and only if it is a treeshard
    store (or, for a directory, empty).
    """
    from zarr.storage import MemoryStore

    check_storage_options(store, storage_options)
    if is_url(store):  # s3://, memory://, ... (treeshard.storage.remote)
        from .storage.remote import open_url_for_writing

        with open_url_for_writing(store, storage_options, overwrite=overwrite) as target:
            yield target
        return
    if isinstance(store, (str, os.PathLike)):
        with writing_path(Path(store), overwrite=overwrite) as target:
            yield target
        return
    if not isinstance(store, _zarr_store_class()):
        raise InvalidStoreError(f"store must be a path or a zarr Store, got {type(store).__name__}")
    if not overwrite and not _store_is_empty(store):
        raise StoreExistsError(f"{store!r} is not empty; pass overwrite=True to replace it")
    staging = MemoryStore()
    yield staging
    _copy_store(staging, store, clear=overwrite)


def check_target(store: Any, *, overwrite: bool) -> None:
    """Refuse early what :func:`write_files` would refuse (an existing path without ``overwrite``),
    before any work is spent encoding the model."""
    if isinstance(store, (str, os.PathLike)) and not is_url(store):
        _check_replaceable(Path(store), overwrite=overwrite)


def write_files(store: Any, files: dict[str, bytes | list[bytes]], *, overwrite: bool, storage_options: Any = None) -> None:
    """Put a complete store (``{key: bytes or the list of a file's parts}``) at ``store``,
    atomically where the target allows.

    A directory or ``.zip`` path is written directly, without zarr (see
    :func:`writing` for how each target is replaced, and ``SECURITY.md`` for
    the ``fsync`` calls that make it durable); a zarr ``Store`` or an fsspec
    URL goes through :func:`writing`.
    """
    check_storage_options(store, storage_options)
    if isinstance(store, (str, os.PathLike)) and not is_url(store):
        target = Path(store)
        _check_replaceable(target, overwrite=overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        if is_zip_path(target):
            tmp_zip = temporary_sibling(target, "tmp", suffix=".zip")
            try:
                _write_zip(files, tmp_zip)
                _check_replaceable(target, overwrite=overwrite)
                os.replace(tmp_zip, target)
            finally:
                tmp_zip.unlink(missing_ok=True)
        else:
            tmp_dir = temporary_sibling(target, "tmp")
            try:
                _write_directory(files, tmp_dir)
                _check_replaceable(target, overwrite=overwrite)
                _replace_directory(tmp_dir, target)
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        fsync_directory(target.parent)
        return
    with writing(store, overwrite=overwrite, storage_options=storage_options) as staging:
        _put_files(staging, files)


def _ordered(files: dict[str, Any]) -> list[str]:
    """Keys sorted, the root ``zarr.json`` last: a reader of a partial copy finds no model at all."""
    return sorted(files, key=lambda key: (key == ROOT_METADATA, key))


#: A zip smaller than this is assembled in memory and written with one call.
ZIP_IN_MEMORY_BYTES = 16 * 1024 * 1024


def _write_zip(files: dict[str, bytes | list[bytes]], zip_path: Path) -> None:
    """A zip of stored members, made durable by one ``fsync`` before it is renamed into place."""
    import io
    import time

    stamp = time.localtime()[:6]
    small = sum(len(part) for value in files.values() for part in _parts(value)) < ZIP_IN_MEMORY_BYTES
    with open(zip_path, "xb") as handle:
        sink = io.BytesIO() if small else handle
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key in _ordered(files):
                info = zipfile.ZipInfo(key, date_time=stamp)
                info.external_attr = 0o644 << 16
                parts = _parts(files[key])
                info.file_size = sum(map(len, parts))
                with archive.open(info, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as member:
                    for part in parts:
                        member.write(part)
        if small:
            handle.write(sink.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())


def _write_directory(files: dict[str, bytes | list[bytes]], directory: Path) -> None:
    """Every file written, then every file and directory fsynced (concurrently: the file
    system commits them together), so that the rename that publishes ``directory``
    publishes complete, durable contents."""
    from concurrent.futures import ThreadPoolExecutor

    directories = {directory}
    directory.mkdir()
    paths = []
    for key in _ordered(files):
        path = directory / key
        if path.parent not in directories:
            path.parent.mkdir(parents=True, exist_ok=True)
            directories.update(p for p in path.parents if p.is_relative_to(directory))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for part in _parts(files[key]):
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        paths.append(path)
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="treeshard-fsync") as pool:
        list(pool.map(_fsync_file, paths))
        list(pool.map(fsync_directory, directories))


def _parts(value: bytes | list[bytes]) -> list[bytes]:
    return [value] if isinstance(value, bytes) else value


def _put_files(store: Any, files: dict[str, bytes | list[bytes]]) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def put() -> None:
        buffer = default_buffer_prototype().buffer
        for key in _ordered(files):
            await store.set(key, buffer.from_bytes(b"".join(_parts(files[key]))))

    sync(put())


def _copy_store(source: Any, target: Any, *, clear: bool) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def copy() -> None:
        if clear and not await target.is_empty(""):
            # The old model disappears at once (its root first), then the rest.
            await target.delete(ROOT_METADATA)
            await target.clear()
        keys = [key async for key in source.list()]
        keys.sort(key=lambda k: k == ROOT_METADATA)
        prototype = default_buffer_prototype()
        for key in keys:
            value = await source.get(key, prototype=prototype)
            await target.set(key, value)

    sync(copy())

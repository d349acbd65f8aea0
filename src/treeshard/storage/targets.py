"""Where a saved model goes: a directory, a ``.zip`` file, a URL or any zarr ``Store``.

Writing always builds the model in a temporary place first and only then
moves it where it belongs, so a failed or interrupted save never leaves a
half-written model where a good one was. Paths are written directly (without
zarr) and moved into place atomically; a zarr ``Store`` and a directory URL get
the staged model through one procedure (:func:`_publish`: the rest staged aside,
the old model's root removed first, the new root written last). A ``.zip`` URL
is built locally and uploaded in one put. HTTP(S) URLs are read-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import InvalidStoreError, RemoteStoreError, StoreExistsError
from ..spec import ROOT_METADATA
from .local import (
    PathStamp,
    _fsync_file,
    _replace_directory,
    check_replaceable_path,
    fsync_directory,
    remove_stale_temporaries,
    root_last,
    start_writeback,
    temporary_sibling,
    writing_path,
)
from .remote import fsspec_store, is_zip_url, network_errors, split_url
from .sources import completes_at_once, run_at_once
from .urls import check_storage_options, is_url, url_scheme
from .ziprules import is_zip_path

_READ_ONLY_SCHEMES = frozenset({"http", "https"})


def _sync(coroutine: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coroutine)


def _zarr_store_class() -> type:
    from zarr.abc.store import Store

    return Store


def _run(stores: tuple[Any, ...], request: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``request()`` run to its end: in the caller's thread if every store in ``stores`` answers at
    once (see :func:`~treeshard.storage.sources.run_at_once`), else through zarr's event loop."""
    from zarr.core.sync import sync

    if all(map(completes_at_once, stores)):
        done, result = run_at_once(request)
        if done:
            return result
    return sync(request())


def _store_is_empty(store: Any) -> bool:
    async def first_key() -> bool:
        await store._ensure_open()  # zarr opens stores lazily (a ZipStore must be opened first)
        async for _ in store.list():
            return False
        return True

    return _run((store,), first_key)


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
    if is_url(store):  # s3://, memory://, ... (see writing_url)
        with writing_url(store, storage_options, overwrite=overwrite) as target:
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


def check_target(store: Any, *, overwrite: bool) -> PathStamp | None:
    """Refuse early what :func:`write_files` would refuse (an existing path without ``overwrite``),
    before any work is spent encoding the model. Returns what :func:`write_files` takes as
    ``verified``: the stamp of an existing path checked here (None otherwise)."""
    if isinstance(store, (str, os.PathLike)) and not is_url(store):
        return check_replaceable_path(Path(store), overwrite=overwrite)
    return None


def write_files(store: Any, files: dict[str, Any], *, overwrite: bool, storage_options: Any = None, verified: PathStamp | None = None) -> None:
    """Put a complete store (``{key: bytes, the list of a file's parts, or a Future of
    bytes}``) at ``store``, atomically where the target allows. Files are written in
    key order, the root ``zarr.json`` last; a Future is waited for when its file's
    turn comes (the digest is still computed while the shards are written).

    A directory or ``.zip`` path is written directly, without zarr (see
    :func:`writing` for how each target is replaced, and ``SECURITY.md`` for
    the ``fsync`` calls that make it durable); a zarr ``Store`` or an fsspec
    URL goes through :func:`writing`. ``verified`` is what :func:`check_target` returned for
    ``store``: an existing target unchanged since then is not read again.
    """
    check_storage_options(store, storage_options)
    if isinstance(store, (str, os.PathLike)) and not is_url(store):
        target = Path(store)
        verified = check_replaceable_path(target, overwrite=overwrite, verified=verified)
        if verified is None:  # else the target, hence its directory, exists
            target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        if is_zip_path(target):
            tmp_zip = temporary_sibling(target, "tmp", suffix=".zip")
            try:
                with _naming_target(target, tmp_zip):
                    _write_zip(files, tmp_zip)
                check_replaceable_path(target, overwrite=overwrite, verified=verified)
                os.replace(tmp_zip, target)
            except BaseException:
                tmp_zip.unlink(missing_ok=True)
                raise
        else:
            tmp_dir = temporary_sibling(target, "tmp")
            try:
                with _naming_target(target, tmp_dir):
                    _write_directory(files, tmp_dir)
                check_replaceable_path(target, overwrite=overwrite, verified=verified)
                _replace_directory(tmp_dir, target)
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        fsync_directory(target.parent)
        return
    with writing(store, overwrite=overwrite, storage_options=storage_options) as staging:
        _put_files(staging, files)


@contextlib.contextmanager
def _naming_target(target: Path, temporary: Path) -> Iterator[None]:
    """An ``OSError`` about ``temporary`` (the file a save writes first, beside ``target``) names
    ``target`` and its folder instead: the same error type and errno, a message a user can act on
    (a read-only or full file system, a folder they may not write)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or not str(exc.filename).startswith(str(temporary)):
            raise
        raise type(exc)(
            exc.errno,
            f"cannot save to {str(target)!r}: {exc.strerror} (a save first writes a temporary file "
            f"beside it, in {str(target.parent)!r}, which must be writable)",
        ) from None


def _ordered(files: dict[str, Any]) -> list[str]:
    """Keys sorted, the root ``zarr.json`` last."""
    return root_last(sorted(files))


#: A zip smaller than this is assembled in memory and written with one call.
ZIP_IN_MEMORY_BYTES = 16 * 1024 * 1024
#: A large zip's writeback is started every this many bytes written (see :func:`start_writeback`).
WRITEBACK_BYTES = 4 * 1024 * 1024


def _write_zip(files: dict[str, bytes | list[bytes]], zip_path: Path) -> None:
    """A zip of stored members, made durable by one ``fsync`` before it is renamed into place.

    A large zip is written straight to the file, its writeback started every
    :data:`WRITEBACK_BYTES` so that the disk works while the rest is written and the
    ``fsync`` waits only for the tail (durability is the ``fsync``'s, as before).
    """
    import io
    import time

    stamp = time.localtime()[:6]
    keys = _ordered(files)
    small = sum(len(part) for value in files.values() if not isinstance(value, Future) for part in _parts(value)) < ZIP_IN_MEMORY_BYTES
    with open(zip_path, "xb") as handle:
        sink = io.BytesIO() if small else handle
        synced = 0  # bytes of ``handle`` whose writeback has started
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key in keys:
                info = zipfile.ZipInfo(key, date_time=stamp)
                info.external_attr = _MEMBER_ATTRIBUTES
                parts = _parts(files[key])
                info.file_size = sum(map(len, parts))
                with archive.open(info, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as member:
                    for part in parts:
                        member.write(part)
                        if not small and handle.tell() - synced >= WRITEBACK_BYTES:
                            handle.flush()
                            start_writeback(handle.fileno(), synced, handle.tell() - synced)
                            synced = handle.tell()
        if small:
            handle.write(sink.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())


#: A member's external attributes: a regular file, rw-r--r--.
_MEMBER_ATTRIBUTES = 0o644 << 16


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


def _parts(value: bytes | list[bytes] | Future[bytes]) -> list[bytes]:
    """A file's parts; a file still being computed (the digest, see ``saving``) is waited for."""
    if isinstance(value, Future):
        value = value.result()
    return [value] if isinstance(value, bytes) else value


def _put_files(store: Any, files: dict[str, bytes | list[bytes]]) -> None:
    from zarr.core.buffer import default_buffer_prototype

    async def put() -> None:
        buffer = default_buffer_prototype().buffer
        for key in _ordered(files):
            await store.set(key, buffer.from_bytes(b"".join(_parts(files[key]))))

    _run((store,), put)


def _copy_store(source: Any, target: Any, *, clear: bool) -> None:
    _run((source, target), lambda: _publish(source, _StoreTarget(target), replace=clear))


# --------------------------------------------------------------------------- staging -> target, root last
class _StoreTarget:
    """A zarr ``Store`` as a target: keys set one by one (in order: a ``ZipStore``'s bytes follow it)."""

    concurrent = False

    def __init__(self, store: Any) -> None:
        self.store = store

    async def stage(self, key: str, value: Any) -> None:
        pass  # the staging store is the copy aside

    async def remove_old(self) -> None:
        if not await self.store.is_empty(""):
            await self.store.delete(ROOT_METADATA)
            await self.store.clear()

    async def place(self, key: str, value: Any) -> None:
        await self.store.set(key, value)

    async def discard_stage(self) -> None:
        pass


class _UrlTarget:
    """A prefix of an fsspec file system: the model is uploaded to a temporary sibling prefix
    first, then copied into place server-side."""

    concurrent = True

    def __init__(self, fs: Any, root: str, staging_root: str) -> None:
        self.fs, self.root, self.staging_root = fs, root, staging_root

    async def stage(self, key: str, value: Any) -> None:
        await self.fs._pipe_file(f"{self.staging_root}/{key}", value.to_bytes())

    async def remove_old(self) -> None:
        await self.fs._rm_file(f"{self.root}/{ROOT_METADATA}")
        with contextlib.suppress(FileNotFoundError):
            await self.fs._rm(self.root, recursive=True)

    async def place(self, key: str, value: Any) -> None:
        if key == ROOT_METADATA:
            await self.fs._pipe_file(f"{self.root}/{key}", value.to_bytes())
        else:
            await self.fs._cp_file(f"{self.staging_root}/{key}", f"{self.root}/{key}")

    async def discard_stage(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self.fs._rm(self.staging_root, recursive=True)


async def _publish(staging: Any, target: Any, *, replace: bool) -> None:
    """Put the model staged in ``staging`` (a zarr store) at ``target``, the one way for every target:

    1. everything but the root ``zarr.json`` is staged beside the target;
    2. the old model disappears at once (its root first), then the rest of it;
    3. everything is put in place, the root ``zarr.json`` last: a reader of a
       partial copy finds no model at all.
    """
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    async def each(function: Any, keys: list[str]) -> None:
        """Concurrently where the target allows; every call finishes (none still writing after a
        failure) before the first error is raised."""
        if not target.concurrent:
            for key in keys:
                await function(key, values[key])
            return
        results = await asyncio.gather(*(function(key, values[key]) for key in keys), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    prototype = default_buffer_prototype()
    keys = root_last([key async for key in staging.list()])
    values = {key: await staging.get(key, prototype=prototype) for key in keys}
    others = [key for key in keys if key != ROOT_METADATA]
    try:
        await each(target.stage, others)
        if replace:
            await target.remove_old()
        await each(target.place, keys[: len(others)])
        await each(target.place, keys[len(others) :])
    finally:
        await target.discard_stage()


# --------------------------------------------------------------------------- URLs
def _check_writable_scheme(url: str) -> None:
    if url_scheme(url) in _READ_ONLY_SCHEMES:
        raise InvalidStoreError(f"{url_scheme(url)}:// stores are read-only; save to a local path or s3:// and serve that")


@contextlib.contextmanager
def writing_url(url: str, storage_options: Mapping[str, Any] | None = None, *, overwrite: bool) -> Iterator[Any]:
    """Yield a zarr store to write a model into; put it at ``url`` on success (see the module docs)."""
    _check_writable_scheme(url)
    if is_zip_url(url):
        parent, name = split_url(url)
        store = fsspec_store(parent, storage_options, read_only=False)
        fs, path = store.fs, f"{store.path.rstrip('/')}/{name}"
        if not overwrite and _sync(fs._exists(path)):
            raise StoreExistsError(f"{url!r} exists; pass overwrite=True to replace it")
        with tempfile.TemporaryDirectory(prefix="treeshard-upload-") as tmp:
            local = Path(tmp) / name
            with writing_path(local, overwrite=False) as target:
                yield target
            try:
                _sync(fs._put_file(str(local), path))  # one put: the object appears whole or not at all
            except network_errors() as exc:
                raise RemoteStoreError(f"{url}: upload failed ({type(exc).__name__}: {exc})") from None
        return

    store = fsspec_store(url, storage_options, read_only=False)
    fs, root = store.fs, store.path.rstrip("/")
    parent, name = root.rsplit("/", 1) if "/" in root else ("", root)
    staging_root = f"{parent}/.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}" if parent else f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    exists = check_replaceable_url(fs, root, url, overwrite=overwrite)
    from zarr.storage import MemoryStore

    staging = MemoryStore()
    yield staging
    try:
        _sync(_publish(staging, _UrlTarget(fs, root, staging_root), replace=exists))
    except network_errors() as exc:
        raise RemoteStoreError(f"{url}: upload failed ({type(exc).__name__}: {exc})") from None


def check_replaceable_url(fs: Any, root: str, url: str, *, overwrite: bool) -> bool:
    """Whether a model exists at ``root`` (refusing to replace it, or anything else, unless allowed)."""
    if _sync(fs._exists(f"{root}/{ROOT_METADATA}")):
        if not overwrite:
            raise StoreExistsError(f"{url!r} exists; pass overwrite=True to replace it")
        return True
    try:
        found = _sync(fs._find(root, maxdepth=1))
    except FileNotFoundError:
        found = []
    if found:
        raise StoreExistsError(f"{url!r} holds objects but no treeshard store; refusing to write there")
    return False

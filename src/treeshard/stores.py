"""Where a model lives: a directory, a ``.zip`` file, or any zarr ``Store``.

Reading opens the location read-only. Writing always builds the model in a
temporary place first and only then moves it where it belongs, so a failed
or interrupted save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import re
import shutil
import stat
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FormatError, InvalidStoreError, StoreExistsError, StoreNotFoundError

ROOT_METADATA = "zarr.json"

# First bytes of files people mistake for a store: pickle protocols 2-5 (also an
# uncompressed joblib file) and the compressors joblib writes with.
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_JOBLIB_MAGIC = {b"\x78": "zlib", b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ": "xz", b"\x5d\x00\x00": "lzma", b"\x04\x22\x4d\x18": "lz4"}
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav", ".gz", ".z", ".bz2", ".xz", ".lzma", ".lz4")


def not_a_store(path: str | os.PathLike) -> FormatError:
    """The error for a path that is neither a directory nor a ``.zip`` file.

    A joblib or pickle file given by mistake is recognised by its first bytes
    (it is never unpickled), and the message points to ``treeshard convert``.

    >>> import pickle, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pkl")
    >>> with open(path, "wb") as file:
    ...     pickle.dump([1, 2], file)
    >>> "treeshard convert" in str(not_a_store(path))
    True
    """
    message = f"{str(path)!r} is neither a directory nor a .zip file"
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return FormatError(message)
    compressor = next((name for magic, name in _JOBLIB_MAGIC.items() if head.startswith(magic)), None)
    if head.startswith(_PICKLE_MAGIC):
        kind = "a pickle (or uncompressed joblib) file"
    elif compressor is not None and str(path).lower().endswith(_PICKLE_SUFFIXES):
        kind = f"a {compressor}-compressed joblib file"
    elif zipfile.is_zipfile(path):
        return FormatError(f"{message}: it is a zip file; a treeshard zip store must be named *.zip")
    else:
        return FormatError(message)
    return FormatError(
        f"{message}: it looks like {kind}. Loading a pickle runs whatever code it holds: "
        f"if you made this file or fully trust it, convert it once with "
        f"`treeshard convert {str(path)!r} model.zip --trust-pickle`"
    )


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
            check_zip_members(path)
            from zarr.storage import ZipStore

            return ZipStore(path, mode="r"), str(path)
        if not path.is_dir():
            raise not_a_store(path)
        if not (path / ROOT_METADATA).is_file():
            raise StoreNotFoundError(f"{str(path)!r} is not a treeshard store (no {ROOT_METADATA})")
        check_directory_entries(path)
        from zarr.storage import LocalStore

        # An absolute root: zarr 3.1's LocalStore.list() strips the root with str.replace.
        return LocalStore(path.resolve(), read_only=True), str(path)
    if isinstance(store, _zarr_store_class()):
        return store, repr(store)
    raise InvalidStoreError(f"store must be a path or a zarr Store, got {type(store).__name__}")


MAX_STORE_ENTRIES = 1_000_000


def check_zip_members(path: Path) -> None:
    """Refuse a zip whose members are compressed or lie about their size.

    treeshard writes every member stored (chunks are already compressed);
    a deflated member could expand without limit when zarr reads it whole
    (a zip bomb), so only stored members whose sizes fit the file are read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise FormatError(f"{str(path)!r}: unreadable zip ({exc})") from None
    if len(members) > MAX_STORE_ENTRIES:
        raise FormatError(f"{str(path)!r}: {len(members)} zip members exceeds the {MAX_STORE_ENTRIES} limit")
    size = path.stat().st_size
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED:
            raise FormatError(f"{str(path)!r}: member {member.filename[:200]!r} is compressed; treeshard stores only hold stored members")
        if member.file_size != member.compress_size or member.file_size > size:
            raise FormatError(f"{str(path)!r}: member {member.filename[:200]!r} declares an impossible size")


def check_directory_entries(path: Path) -> None:
    """Refuse a directory store holding anything but directories and regular files.

    A symlink could point at ``/dev/zero`` or outside the store, a FIFO would
    block a read forever: a store is plain files only.
    """
    count = 0
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            count += 1
            entry = os.path.join(root, name)
            mode = os.lstat(entry).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                rel = os.path.relpath(entry, path)
                raise FormatError(f"{str(path)!r}: {rel!r} is not a regular file (symlink, device or pipe)")
        if count > MAX_STORE_ENTRIES:
            raise FormatError(f"{str(path)!r}: more than {MAX_STORE_ENTRIES} entries")


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
    from zarr.storage import LocalStore, MemoryStore

    if isinstance(store, str) and "://" in store[:32]:  # s3://, memory://, ... (treeshard.remote)
        from .remote import open_url_for_writing

        with open_url_for_writing(store, storage_options, overwrite=overwrite) as target:
            yield target
        return
    if isinstance(store, (str, os.PathLike)):
        target = Path(store)
        _check_replaceable(target, overwrite=overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        tmp_dir = temporary_sibling(target, "tmp")
        try:
            yield LocalStore(tmp_dir)
            _check_replaceable(target, overwrite=overwrite)
            if is_zip_path(target):
                tmp_zip = temporary_sibling(target, "tmp", suffix=".zip")
                try:
                    _pack_zip(tmp_dir, tmp_zip)
                    os.replace(tmp_zip, target)
                finally:
                    tmp_zip.unlink(missing_ok=True)
            else:
                _fsync_tree(tmp_dir)
                _replace_directory(tmp_dir, target)
            fsync_directory(target.parent)
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


def check_target(store: Any, *, overwrite: bool) -> None:
    """Refuse early what :func:`write_files` would refuse (an existing path without ``overwrite``),
    before any work is spent encoding the model."""
    if isinstance(store, (str, os.PathLike)) and not (isinstance(store, str) and "://" in store[:32]):
        _check_replaceable(Path(store), overwrite=overwrite)


def write_files(store: Any, files: dict[str, bytes | list[bytes]], *, overwrite: bool, storage_options: Any = None) -> None:
    """Put a complete store (``{key: bytes or the list of a file's parts}``) at ``store``,
    atomically where the target allows.

    A directory or ``.zip`` path is written directly, without zarr (see
    :func:`writing` for how each target is replaced, and ``SECURITY.md`` for
    the ``fsync`` calls that make it durable); a zarr ``Store`` or an fsspec
    URL goes through :func:`writing`.
    """
    if isinstance(store, (str, os.PathLike)) and not (isinstance(store, str) and "://" in store[:32]):
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


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


_TEMPORARY_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{12}(?:\.zip)?$")


def temporary_sibling(target: Path, kind: str, *, suffix: str = "") -> Path:
    """``.NAME.KIND-PID-RANDOM[suffix]`` next to ``target``: what :func:`remove_stale_temporaries` cleans."""
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete temporary siblings of ``target`` left by saves whose process has died.

    Temporaries of a live process (another save in progress) are left alone.
    Returns what was removed.
    """
    removed: list[Path] = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = _TEMPORARY_RE.match(path.name)
        if match is None or match["name"] != target.name or _process_alive(int(match["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(Path(root))


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
    # Make the bytes durable before the rename makes them visible.
    with open(zip_path, "rb+") as handle:
        os.fsync(handle.fileno())


def _replace_directory(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old model
        return
    old = temporary_sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (_errno.ENOSYS, _errno.EINVAL, _errno.ENOTSUP, _errno.EOPNOTSUPP, _errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


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

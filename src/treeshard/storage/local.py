"""Local stores: the checks a directory or ``.zip`` path passes before it is read, and
the staged write of a path (a sibling temporary, then an atomic move into place).

The lowest storage module: it imports nothing of treeshard but the errors and the
format constants, so the readers, the remote backend and the verifier can all use it.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
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

from ..errors import FormatError, StoreExistsError
from ..spec import MAX_STORE_ENTRIES, ROOT_METADATA
from .ziprules import is_zip_path


# First bytes of files people mistake for a store: pickle protocols 2-5 (also an
# uncompressed joblib file) and the compressors joblib writes with.
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


_JOBLIB_MAGIC = {b"\x78": "zlib", b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ": "xz", b"\x5d\x00\x00": "lzma", b"\x04\x22\x4d\x18": "lz4"}


PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav", ".gz", ".z", ".bz2", ".xz", ".lzma", ".lz4")


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
    elif compressor is not None and str(path).lower().endswith(PICKLE_SUFFIXES):
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
                raise FormatError(
                    f"{str(path)!r}: {rel!r} is not a regular file (symlink, device or pipe): a directory store is "
                    "plain files only; copy it with its links resolved (`cp -rL`, as for a Hugging Face or DVC "
                    "cache of symlinks) or ship it as one .zip"
                )
        if count > MAX_STORE_ENTRIES:
            raise FormatError(f"{str(path)!r}: more than {MAX_STORE_ENTRIES} entries")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        names = os.listdir(target.parent)
    except OSError:
        return removed
    prefix = f".{target.name}."
    for name in names:
        match = _TEMPORARY_RE.match(name) if name.startswith(prefix) else None
        if match is None or match["name"] != target.name or _process_alive(int(match["pid"])):
            continue
        path = target.parent / name
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


def root_last(keys: Any) -> list[str]:
    """``keys`` in their order, the root ``zarr.json`` moved last: a reader of a partial copy
    finds no model at all (every writer puts keys in this order)."""
    return sorted(keys, key=lambda key: key == ROOT_METADATA)


#: What :func:`check_replaceable_path` saw of an existing target: ``(device, inode, size,
#: mtime_ns, ctime_ns)``; any write or replacement of the target changes it.
PathStamp = tuple[int, int, int, int, int]


#: What ``Path.exists`` reads as "no such path".
_NOT_THERE = frozenset({_errno.ENOENT, _errno.ENOTDIR, _errno.EBADF, _errno.ELOOP})


def _stamp(status: os.stat_result) -> PathStamp:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def check_replaceable_path(target: Path, *, overwrite: bool, verified: PathStamp | None = None) -> PathStamp | None:
    """Refuse to replace ``target`` unless ``overwrite`` and it is a treeshard store (or an empty directory).

    Returns the stamp of the existing target (None if there is none). Given the stamp of an
    earlier check (``verified``), a target whose stamp is unchanged is not read again: a save
    checks its target before encoding and again just before the rename, and the second check
    is then one ``stat``.
    """
    try:
        status = os.stat(target)
    except OSError as exc:
        if exc.errno in _NOT_THERE:
            return None
        raise
    if not overwrite:
        raise StoreExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it")
    stamp = _stamp(status)
    if stamp == verified:
        return stamp
    if is_zip_path(target):
        if not stat.S_ISREG(status.st_mode):
            raise StoreExistsError(f"{str(target)!r} is not a zip file; refusing to replace it")
        try:
            with zipfile.ZipFile(target) as archive:  # one read of its central directory
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise StoreExistsError(f"{str(target)!r} is not a zip file; refusing to replace it") from None
        if ROOT_METADATA not in names:
            raise StoreExistsError(f"{str(target)!r} is not a treeshard store; refusing to replace it")
    elif not stat.S_ISDIR(status.st_mode) or not ((target / ROOT_METADATA).is_file() or not any(target.iterdir())):
        raise StoreExistsError(f"{str(target)!r} is not a treeshard store; refusing to replace it")
    return stamp


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


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of dirty pages, do not wait


@functools.lru_cache(maxsize=1)
def _sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing bytes ``offset:offset + nbytes`` of ``fd`` to disk,
    without waiting (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; elsewhere nothing).

    Durability is unchanged: this guarantees nothing, and the ``fsync`` that follows the
    last write still waits for every byte and the file's size. It only lets the disk work
    while the rest of the file is written, so that the ``fsync`` waits for the tail alone.
    """
    function = _sync_file_range()
    if function is not None and nbytes > 0:
        function(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the head start


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


@contextlib.contextmanager
def writing_path(target: Path, *, overwrite: bool) -> Iterator[Any]:
    """Yield a zarr ``LocalStore`` in a sibling temporary directory; move it to ``target``
    (a directory, or a ``.zip`` packed with ``zarr.json`` last) on success."""
    from zarr.storage import LocalStore

    check_replaceable_path(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp_dir = temporary_sibling(target, "tmp")
    try:
        yield LocalStore(tmp_dir)
        check_replaceable_path(target, overwrite=overwrite)
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

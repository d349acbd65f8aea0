"""Where a repository's objects live: a local directory, an ``s3://`` prefix, or memory.

Each backend offers the same few byte operations, and the two that make a
repository safe under concurrency and crashes:

- :meth:`create` writes an object only if none exists under that key
  (locally a hard link of a complete, fsynced temporary file: ``link`` fails
  if the name exists; on S3 a ``PUT`` with ``If-None-Match: *``);
- :meth:`replace` is a compare-and-swap on a *tag* of the current content
  (locally the sha256 of the bytes, compared under an ``flock`` and published
  by an atomic ``rename``; on S3 the ETag, with ``If-Match``).

Every other write is of content-addressed objects (same key, same bytes) or
private scratch, published whole (a rename locally; a single ``PUT`` on S3).
Readers take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidStoreError, MissingDependencyError, RemoteStoreError, RepositoryError
from ..storage.urls import is_url, url_scheme

TMP_DIR = ".tmp"
LOCK_DIR = ".locks"


def content_tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBackend:
    """A repository in a local directory."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    # -- reads
    def read(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        data = self.read(key)
        return None if data is None else (data, content_tag(data))

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[tuple[str, float, int]]:
        """``(key, modification time, size)`` of every object under ``prefix`` (a folder, ending in ``/``)."""
        base = self._path(prefix)
        out = []
        for folder, _, names in os.walk(base):
            for name in names:
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                out.append((path.relative_to(self.root).as_posix(), stat.st_mtime, stat.st_size))
        return out

    # -- writes
    def _temporary(self, data: bytes) -> Path:
        """A complete, fsynced private file (named after this process, so gc knows whose it is)."""
        folder = self.root / TMP_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}-{uuid.uuid4().hex}-{machine_tag()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def _parent(self, key: str) -> Path:
        parent = self._path(key).parent
        parent.mkdir(parents=True, exist_ok=True)
        return parent

    def write(self, key: str, data: bytes) -> None:
        parent = self._parent(key)
        tmp = self._temporary(data)
        os.replace(tmp, self._path(key))
        _fsync_directory(parent)

    def create(self, key: str, data: bytes) -> bool:
        parent = self._parent(key)
        tmp = self._temporary(data)
        try:
            os.link(tmp, self._path(key))
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        _fsync_directory(parent)
        return True

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        with self._locked(key):
            current = self.read_tagged(key)
            if (None if current is None else current[1]) != tag:
                return False
            self.write(key, data)
            return True

    def remove(self, key: str, tag: str) -> bool:
        """Delete ``key`` if its content still has ``tag`` (compare-and-delete)."""
        with self._locked(key):
            current = self.read_tagged(key)
            if current is None or current[1] != tag:
                return False
            self.delete(key)
            _fsync_directory(self._path(key).parent)
            return True

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        import fcntl

        folder = self.root / LOCK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        # One lock file per key, never deleted (deleting it would let two holders lock two files).
        fd = os.open(folder / f"{content_tag(key.encode())[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def stale_temporaries(self, older_than: float) -> list[str]:
        """Scratch files of processes that are gone, or older than ``older_than`` (epoch seconds).

        Only a file of this machine's processes is judged by its pid: another host's (a
        shared file system) or another container's is judged by its age alone.
        """
        out = []
        for key, mtime, _ in self.list(f"{TMP_DIR}/"):
            pid, *rest = key.rsplit("/", 1)[-1].split("-")
            ours = len(rest) < 2 or rest[1] == machine_tag()  # names without a tag: written before tags
            if mtime < older_than or (ours and pid.isdigit() and not _alive(int(pid))):
                out.append(key)
        return out


@functools.cache
def machine_tag() -> str:
    """This machine and pid namespace (host name, ``/proc/self/ns/pid``), hashed: pids mean
    something only within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:12]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MemoryBackend:
    """A repository in this process's memory (``memory://NAME``; shared by every handle on NAME)."""

    remote = False
    _repositories: dict[str, dict[str, tuple[bytes, float]]] = {}
    _lock = threading.Lock()

    def __init__(self, name: str) -> None:
        self.location = f"memory://{name}"
        with self._lock:
            self.objects = self._repositories.setdefault(name, {})

    def read(self, key: str) -> bytes | None:
        entry = self.objects.get(key)
        return None if entry is None else entry[0]

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        data = self.read(key)
        return None if data is None else (data, content_tag(data))

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        data = self.read(key)
        return None if data is None else data[offset : offset + length]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str) -> list[tuple[str, float, int]]:
        with self._lock:
            return [(key, entry[1], len(entry[0])) for key, entry in self.objects.items() if key.startswith(prefix)]

    def write(self, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[key] = (bytes(data), time.time())

    def create(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = (bytes(data), time.time())
            return True

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        with self._lock:
            entry = self.objects.get(key)
            if (None if entry is None else content_tag(entry[0])) != tag:
                return False
            self.objects[key] = (bytes(data), time.time())
            return True

    def remove(self, key: str, tag: str) -> bool:
        with self._lock:
            entry = self.objects.get(key)
            if entry is None or content_tag(entry[0]) != tag:
                return False
            del self.objects[key]
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def stale_temporaries(self, older_than: float) -> list[str]:
        return []


class S3Backend:
    """A repository under an ``s3://bucket/prefix`` (s3fs), with S3's conditional writes."""

    remote = True

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        try:
            import fsspec
        except ImportError:
            raise MissingDependencyError("an s3:// repository needs s3fs: pip install 'treeshard[s3]'") from None
        try:
            fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except ImportError:
            raise MissingDependencyError("an s3:// repository needs s3fs: pip install 'treeshard[s3]'") from None
        if not hasattr(fs, "_call_s3"):
            raise InvalidStoreError(f"{url}: not an S3 file system ({type(fs).__name__})")
        self.fs = fs
        self.location = url.rstrip("/")
        bucket, _, prefix = path.strip("/").partition("/")
        self.bucket, self.prefix = bucket, f"{prefix}/" if prefix else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _run(self, coroutine: Any) -> Any:
        from fsspec.asyn import sync

        async def run() -> Any:
            return await coroutine

        return sync(self.fs.loop, run)

    async def _get(self, key: str, byte_range: str | None = None) -> tuple[bytes, str] | None:
        extra = {} if byte_range is None else {"Range": byte_range}
        try:
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self._key(key), **extra)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteStoreError(f"{self.location}/{key}: {exc}") from None
        async with response["Body"] as body:
            data = await body.read()
        return data, response["ETag"]

    def read(self, key: str) -> bytes | None:
        got = self._run(self._get(key))
        return None if got is None else got[0]

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        return self._run(self._get(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        if length <= 0:
            return b""
        got = self._run(self._get(key, f"bytes={offset}-{offset + length - 1}"))
        return None if got is None else got[0]

    def exists(self, key: str) -> bool:
        async def head() -> bool:
            try:
                await self.fs._call_s3("head_object", Bucket=self.bucket, Key=self._key(key))
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise RemoteStoreError(f"{self.location}/{key}: {exc}") from None
            return True

        return self._run(head())

    def list(self, prefix: str) -> list[tuple[str, float, int]]:
        async def listing() -> list[tuple[str, float, int]]:
            out, token = [], None
            while True:
                extra = {} if token is None else {"ContinuationToken": token}
                try:
                    page = await self.fs._call_s3("list_objects_v2", Bucket=self.bucket, Prefix=self._key(prefix), **extra)
                except OSError as exc:
                    raise RemoteStoreError(f"{self.location}: listing {prefix}: {exc}") from None
                for item in page.get("Contents", []):
                    out.append((item["Key"][len(self.prefix) :], item["LastModified"].timestamp(), int(item["Size"])))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or token is None:
                    return out

        return self._run(listing())

    async def _put(self, key: str, data: bytes, **conditions: str) -> bool:
        from botocore.exceptions import ParamValidationError

        try:
            await self.fs._call_s3("put_object", Bucket=self.bucket, Key=self._key(key), Body=data, **conditions)
        except ParamValidationError:
            raise MissingDependencyError(
                "this botocore cannot send S3 conditional writes (If-None-Match / If-Match), which a repository "
                "needs: upgrade s3fs and aiobotocore"
            ) from None
        except FileNotFoundError:
            if "IfMatch" in conditions:  # the object was deleted since it was read (an alias removed)
                return False
            raise RemoteStoreError(f"{self.location}/{key}: not found") from None
        except OSError as exc:
            if conditions and _precondition_failed(exc):
                return False
            raise RemoteStoreError(f"{self.location}/{key}: {exc}") from None
        return True

    def write(self, key: str, data: bytes) -> None:
        self._run(self._put(key, data))

    def create(self, key: str, data: bytes) -> bool:
        return self._run(self._put(key, data, IfNoneMatch="*"))

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        if tag is None:
            return self.create(key, data)
        return self._run(self._put(key, data, IfMatch=tag))

    def delete(self, key: str) -> None:
        async def remove() -> None:
            try:
                await self.fs._call_s3("delete_object", Bucket=self.bucket, Key=self._key(key))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RemoteStoreError(f"{self.location}/{key}: {exc}") from None

        self._run(remove())

    def remove(self, key: str, tag: str) -> bool:
        """``DeleteObject`` with ``If-Match``: False if the object changed or is gone."""

        async def remove() -> bool:
            try:
                await self.fs._call_s3("delete_object", Bucket=self.bucket, Key=self._key(key), IfMatch=tag)
            except FileNotFoundError:
                return False
            except OSError as exc:
                if _precondition_failed(exc):
                    return False
                raise RemoteStoreError(f"{self.location}/{key}: {exc}") from None
            return True

        return self._run(remove())

    def stale_temporaries(self, older_than: float) -> list[str]:
        return []  # a PUT is whole or absent: S3 keeps no partial objects


def _precondition_failed(exc: OSError) -> bool:
    """Whether S3 refused a conditional write (412, or 409 for a concurrent conditional write)."""
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or exc.errno == errno.EEXIST


def open_backend(location: Any, storage_options: dict[str, Any] | None) -> Any:
    """The backend of a repository path or URL."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str) or not location:
        raise InvalidStoreError(f"a repository is a directory path or an s3:// / memory:// URL, got {type(location).__name__}")
    if is_url(location):
        scheme = url_scheme(location)
        if scheme == "memory":
            name = location[len("memory://") :].strip("/")
            if storage_options:
                raise InvalidStoreError("storage_options do not apply to a memory:// repository")
            return MemoryBackend(name)
        if scheme in ("s3", "s3a"):
            return S3Backend(location, storage_options)
        raise InvalidStoreError(f"repositories live in a directory, s3:// or memory://, not {scheme}://")
    if storage_options:
        raise InvalidStoreError(f"storage_options apply to URLs only (s3://, memory://), not to {location!r}")
    # Absolute: a lazily loaded version keeps reading its chunks after the process changes directory.
    root = Path(os.path.abspath(location))
    if root.exists() and not root.is_dir():
        raise RepositoryError(f"{location!r} is not a directory")
    return LocalBackend(root)

"""One router from any ``store`` argument to a :class:`~treeshard.storage.sources.ByteSource`.

A directory or ``.zip`` path, an fsspec URL (``s3://``, ``http(s)://``,
``memory://``, a ``.zip`` at any of them) or a zarr ``Store``. ``storage_options``
given for anything but a URL are refused, not ignored. Imports stay inside the
branches: a local open pays for neither zarr nor the remote backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidStoreError, StoreNotFoundError
from ..spec import ROOT_METADATA
from .sources import ByteSource
from .urls import check_storage_options, is_repository_reference, is_url


def open_source(store: Any, storage_options: Any = None) -> tuple[ByteSource, str]:
    """``(source, description)`` for a directory, a ``.zip`` path, a URL or a zarr ``Store``.

    Paths are checked before anything is read: a directory holds plain files
    only, a zip stored members only.
    """
    opener = getattr(type(store), "__treeshard_source__", None)
    if opener is not None:  # a version of a model repository (treeshard.repository)
        check_storage_options(store, storage_options)
        return opener(store)
    if is_repository_reference(store):
        from ..repository.refs import version_of_reference  # "repo@alias", "s3://bucket/repo@v3"

        version = version_of_reference(store, storage_options)
        if version is not None:
            return type(version).__treeshard_source__(version)
    check_storage_options(store, storage_options)
    if is_url(store):
        from .remote import open_url_for_reading

        return open_url_for_reading(store, storage_options), store
    if isinstance(store, (str, os.PathLike)):
        path = Path(store)
        if not path.exists():
            raise StoreNotFoundError(f"no treeshard store at {str(path)!r}")
        if path.is_dir():
            if not (path / ROOT_METADATA).is_file():
                raise StoreNotFoundError(f"{str(path)!r} is not a treeshard store (no {ROOT_METADATA})")
            from .local import check_directory_entries
            from .sources import DirectorySource

            check_directory_entries(path)  # plain files only: no symlink to /dev/zero, no FIFO
            return DirectorySource(path), str(path)
        from .ziprules import is_zip_path

        if is_zip_path(path):
            from .sources import ZipSource
            from .ziprules import check_zip_members

            check_zip_members(path)  # stored members only: no zip bomb
            return ZipSource(path), str(path)
        from .local import not_a_store

        raise not_a_store(path)
    if is_zarr_store(store):
        from .sources import ZarrStoreSource

        return ZarrStoreSource(store), repr(store)
    raise InvalidStoreError(f"store must be a path or a zarr Store, got {type(store).__name__}")


def is_zarr_store(store: Any) -> bool:
    """Whether ``store`` is a zarr ``Store`` (zarr is imported only for what may be one)."""
    if type(store).__module__.split(".")[0] != "zarr" and not hasattr(store, "supports_partial_writes"):
        return False
    from zarr.abc.store import Store

    return isinstance(store, Store)

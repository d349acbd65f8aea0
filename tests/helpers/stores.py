"""Store locations, round trips, and editing a saved store's config record.

``reseal`` rewrites the digest record after an edit, as anyone can do to a
store that is not signed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import zarr

import treeshard


STORE_KINDS = ("directory", "zip", "memory")


def make_store(kind: str, tmp_path: Path) -> Any:
    """A fresh store location of the given kind."""
    if kind == "directory":
        return tmp_path / "model"
    if kind == "zip":
        return tmp_path / "model.zip"
    if kind == "memory":
        return zarr.storage.MemoryStore()
    if kind == "localstore":
        return zarr.storage.LocalStore(tmp_path / "local")
    if kind == "zipstore":
        return zarr.storage.ZipStore(tmp_path / "store.zip", mode="w")
    raise ValueError(kind)


def reopen_for_reading(kind: str, store: Any, tmp_path: Path) -> Any:
    """What a reader passes to ``load`` for a store written by ``save``."""
    if kind == "zipstore":
        store.close()
        return zarr.storage.ZipStore(tmp_path / "store.zip", mode="r")
    return store


def round_trip(estimator: Any, kind: str, tmp_path: Path, *, lazy: bool = True, **save_kwargs: Any) -> Any:
    store = make_store(kind, tmp_path)
    treeshard.save(estimator, store, **save_kwargs)
    return treeshard.load(reopen_for_reading(kind, store, tmp_path), lazy=lazy)


def read_config(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "zarr.json").read_text())["attributes"]["treeshard"]


def edit_config(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Apply ``edit(config_dict)`` (which changes the dict in place) to a directory
    store's config record in ``zarr.json``."""
    meta_path = Path(path) / "zarr.json"
    document = json.loads(meta_path.read_text())
    edit(document["attributes"]["treeshard"])
    meta_path.write_text(json.dumps(document))


def reseal(store: Any) -> None:
    """Rewrite the digest record of an edited store (a directory path or a zarr store).

    Anyone can do this to a store that is not signed; the edit then passes the
    per-chunk sha256 check and meets the structural checks a load makes, which
    is what tests of malformed content are about. A root ``zarr.json`` that is
    no longer JSON leaves the record as it was (the root fails to parse before
    any digest is checked).
    """
    from treeshard.integrity import record_digest

    if isinstance(store, (str, os.PathLike)):
        store = zarr.storage.LocalStore(store)
    try:
        record_digest(store)
    except (ValueError, RecursionError, AttributeError, TypeError):  # unparseable JSON documents
        pass


def stored_files(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) with its bytes."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

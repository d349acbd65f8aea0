"""Zip rules, once for local files and zips read over byte ranges.

A treeshard zip holds stored (uncompressed) members only: chunks are already
compressed, and a deflated member could expand without limit when read whole
(a zip bomb). A member's data starts after its local header, whose name and
extra field lengths may differ from the central directory's.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from ..errors import FormatError, IntegrityError, StoreNotFoundError
from ..spec import MAX_STORE_ENTRIES, ROOT_METADATA

#: The fixed part of a local file header (signature to extra field length).
LOCAL_HEADER_BYTES = 30


def is_zip_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".zip")


def check_member_count(where: str, count: int) -> None:
    """Refuse more members than a store may hold (``where``: the zip, quoted)."""
    if count > MAX_STORE_ENTRIES:
        raise FormatError(f"{where}: {count} zip members exceeds the {MAX_STORE_ENTRIES} limit")


def check_stored_member(where: str, info: zipfile.ZipInfo, *, file_size: int | None = None) -> None:
    """Refuse a compressed member, or one whose sizes disagree (or exceed ``file_size``)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise FormatError(
            f"{where}: member {info.filename[:200]!r} is compressed; treeshard stores only hold stored members "
            f"(zip a store directory's contents with `cd DIR && zip -0 -r ../model.zip .`, or save to a .zip path)"
        )
    if info.file_size != info.compress_size or (file_size is not None and info.file_size > file_size):
        raise FormatError(f"{where}: member {info.filename[:200]!r} declares an impossible size")


def check_zip_members(path: Path) -> None:
    """Refuse a zip file whose members are compressed or lie about their size (see the module docs)."""
    where = repr(str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise FormatError(f"{where}: unreadable zip ({exc})") from None
    check_member_count(where, len(members))
    size = path.stat().st_size
    for member in members:
        check_stored_member(where, member, file_size=size)
    check_root_member(where, [member.filename for member in members])


def check_root_member(where: str, names: list[str]) -> None:
    """Refuse a zip without a root ``zarr.json``, naming the folder that holds one (a zipped store directory)."""
    if ROOT_METADATA in names:
        return
    nested = sorted((name for name in names if name.endswith("/" + ROOT_METADATA)), key=lambda name: (name.count("/"), name))
    if nested:
        folder = nested[0][: -len(ROOT_METADATA)]
        raise StoreNotFoundError(
            f"{where} is not a treeshard store: its {ROOT_METADATA} is under {folder[:200]!r}, not at the root "
            f"(zip the store directory's contents, not the directory: `cd DIR && zip -0 -r ../model.zip .`)"
        )
    raise StoreNotFoundError(f"{where} is not a treeshard store (no {ROOT_METADATA})")


def local_data_offset(where: str, info: Any, header: bytes) -> int:
    """Where the data of member ``info`` starts, from the first ``LOCAL_HEADER_BYTES`` of its local header."""
    if len(header) != LOCAL_HEADER_BYTES or header[:4] != b"PK\x03\x04":
        raise IntegrityError(f"{where}: {info.filename[:200]!r}: bad zip local header")
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + LOCAL_HEADER_BYTES + name_length + extra_length

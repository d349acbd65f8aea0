"""References to versions: ``v3``, an alias such as ``production``, or ``latest``.

Resolving a reference costs one small read (an alias document), or for
``latest`` the ``refs/latest`` hint, the hinted version's manifest (which the
load then uses: it proves the version exists) and a check that no newer
version exists. Like the
rest of the read path, this module imports neither zarr nor sklearn.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import FormatError, RefNotFoundError
from ..spec import loads_json
from .versions import VersionRef, check_newer, not_found, version_id, version_key

LATEST = "latest"
LATEST_KEY = "refs/latest"
ALIAS_FORMAT = 1
#: Earlier versions an alias remembers for :meth:`~treeshard.Repository.rollback`.
MAX_ALIAS_HISTORY = 100
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
_VERSION_RE = re.compile(r"^v([1-9][0-9]{0,9})\Z")
MAX_ALIAS_BYTES = 256 * 1024


def parse_ref(ref: Any) -> tuple[str, Any]:
    """``("version", n)``, ``("latest", None)`` or ``("alias", name)``; :class:`RefNotFoundError` if malformed."""
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise RefNotFoundError(f"a version reference is a version id ('v3'), an alias or 'latest', got {type(ref).__name__}")
    if isinstance(ref, int):
        if ref < 1:
            raise RefNotFoundError(f"version numbers start at 1, got {ref}")
        return "version", ref
    match = _VERSION_RE.match(ref)
    if match:
        return "version", int(match[1])
    if ref == LATEST:
        return "latest", None
    if _ALIAS_RE.match(ref) and not re.match(r"^v[0-9]+\Z", ref):
        return "alias", ref
    raise RefNotFoundError(
        f"{ref[:100]!r} is not a version reference: expected a version id ('v3'), 'latest' or an alias "
        "(a letter, then up to 63 letters, digits, '_' or '-')"
    )


def check_alias_name(name: Any) -> str:
    if not (isinstance(name, str) and _ALIAS_RE.match(name) and name != LATEST and not re.match(r"^v[0-9]+\Z", name)):
        raise RefNotFoundError(
            f"{str(name)[:100]!r} cannot be an alias: an alias is a letter, then up to 63 letters, digits, '_' or '-', "
            "and neither 'latest' nor a version id"
        )
    return name


def alias_key(name: str) -> str:
    return f"aliases/{name}.json"


def parse_alias(raw: bytes, name: str, where: str) -> dict[str, Any]:
    """An alias document, checked: ``{"version": int, "history": [int], "public_key": str | None, ...}``."""
    if len(raw) > MAX_ALIAS_BYTES:
        raise FormatError(f"{where}: {len(raw):,} bytes exceeds the {MAX_ALIAS_BYTES:,}-byte limit")
    try:
        document = loads_json(raw)
    except ValueError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from None
    check_newer(document, "treeshard_alias", ALIAS_FORMAT, where)
    if isinstance(document, dict) and document.get("treeshard_alias") == ALIAS_FORMAT and isinstance(document.get("name"), str) and document["name"] != name:
        raise FormatError(
            f"{where}: the document belongs to alias {document['name'][:100]!r}, not {name!r} (a copied file?): "
            f"set {name!r} with `treeshard alias` or Repository.set_alias instead"
        )
    if not isinstance(document, dict) or document.get("treeshard_alias") != ALIAS_FORMAT or document.get("name") != name:
        raise FormatError(f"{where}: not a format-{ALIAS_FORMAT} alias document for {name!r}")
    history = document.get("history")
    if not _is_number(document.get("version")) or not isinstance(history, list) or not all(map(_is_number, history)):
        raise FormatError(f"{where}: 'version' must be a version number and 'history' a list of them")
    key = document.get("public_key")
    if key is not None and not isinstance(key, str):
        raise FormatError(f"{where}: 'public_key' must be a PEM string or null")
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 10**10


def read_alias(backend: Any, name: str) -> tuple[dict[str, Any], str] | None:
    """``(document, tag)`` of an alias, None if it does not exist."""
    got = backend.read_tagged(alias_key(name))
    if got is None:
        return None
    raw, tag = got
    return parse_alias(raw, name, f"{backend.location}/{alias_key(name)}"), tag


def latest_number(backend: Any) -> int | None:
    """The highest version number: the ``refs/latest`` hint, then a check for newer versions
    (a save that died after publishing its version leaves the hint behind)."""
    hint = read_hint(backend)
    if hint is None or not backend.exists(version_key(hint)):
        numbers = list_numbers(backend)
        return max(numbers) if numbers else None
    while backend.exists(version_key(hint + 1)):
        hint += 1
    return hint


def latest_manifest(backend: Any) -> tuple[int, bytes | None] | None:
    """``(highest version number, its manifest bytes or None)``, None for an empty repository.

    Reading the hinted version's manifest both proves that it exists and saves its load
    a request; a newer version (a save that died after publishing) is not read here.
    """
    hint = read_hint(backend)
    raw = None if hint is None else backend.read(version_key(hint))
    if hint is None or raw is None:
        numbers = list_numbers(backend)
        return (max(numbers), None) if numbers else None
    number = hint
    while backend.exists(version_key(number + 1)):
        number += 1
    return number, raw if number == hint else None


def read_hint(backend: Any) -> int | None:
    """The number ``refs/latest`` holds: the highest ever published (never lowered, so that a
    deleted version's number is never given to another version)."""
    raw = backend.read(LATEST_KEY)
    return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 10 else None


def list_numbers(backend: Any) -> list[int]:
    out = []
    for key, _, _ in backend.list("versions/"):
        name = key[len("versions/") :]
        if len(name) == 15 and name.endswith(".json") and name[:10].isdigit() and int(name[:10]) > 0:
            out.append(int(name[:10]))
    return sorted(out)


def resolve(backend: Any, ref: Any, storage_options: dict[str, Any] | None = None) -> VersionRef:
    """The version a reference names (an alias's policy key travels with it)."""
    kind, value = parse_ref(ref)
    public_key = None
    if kind == "latest":
        latest = latest_manifest(backend)
        if latest is None:
            raise RefNotFoundError(not_found(backend, "the repository has no version yet"))
        value, raw = latest
        if raw is not None:
            return VersionRef(backend.location, value, storage_options, None, prefetched=[raw])
    elif kind == "alias":
        alias = read_alias(backend, value)
        if alias is None:
            raise RefNotFoundError(not_found(backend, f"no alias {value!r}"))
        document = alias[0]
        value = document["version"]
        public_key = None if document.get("public_key") is None else document["public_key"].encode()
    return VersionRef(backend.location, value, storage_options, public_key)


def version_of_reference(text: str, storage_options: dict[str, Any] | None) -> VersionRef | None:
    """The version ``"REPOSITORY@REF"`` names (``"models/churn@production"``), or None if the
    text after the last ``@`` is not a reference (then it is an ordinary path or URL)."""
    location, _, ref = text.rpartition("@")
    try:
        parse_ref(ref)
    except RefNotFoundError:
        return None
    from .backends import open_backend

    version = resolve(open_backend(location, storage_options), ref, storage_options)
    return version


__all__ = ["LATEST", "parse_ref", "resolve", "version_id", "version_of_reference"]

"""The :class:`Repository`: versions, aliases, rollback and garbage collection.

Layout (every key relative to the repository's directory or URL prefix)::

    treeshard.repository.json   marker and alias policies
    versions/NNNNNNNNNN.json    one manifest per version (written once)
    objects/XX/SHA256           chunks, content-addressed, shared by versions
    aliases/NAME.json           the version an alias names, and its history
    refs/latest                 the highest version number (a hint)
    staging/TOKEN.json          the objects a save in progress will use
    tombstones/N                a delete in progress
    gc.lock                     a gc in progress

See ``docs/REPOSITORY.md`` for the protocol and why it is safe.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AliasConflictError, FormatError, RefNotFoundError, RepositoryError, SignatureError
from ..pipeline.record import PIPELINE_KEY
from ..spec import DIGEST_KEY, ROOT_METADATA, SIGNATURE_KEY, loads_json
from .backends import _alive, machine_tag, open_backend
from .refs import (
    LATEST_KEY,
    MAX_ALIAS_HISTORY,
    alias_key,
    check_alias_name,
    latest_number,
    list_numbers,
    parse_ref,
    read_alias,
    read_hint,
    resolve,
)
from .versions import (
    MANIFEST_FORMAT,
    MARKER_KEY,
    MAX_VERSION,
    Manifest,
    VersionRef,
    check_newer,
    encode_manifest,
    not_a_repository,
    not_found,
    number_packs,
    object_key,
    place_chunks,
    read_manifest,
    split_files,
    version_id,
    version_key,
)

GC_LOCK_KEY = "gc.lock"
#: Node rows per chunk in a repository: versions share chunks, so finer chunks share more.
REPOSITORY_NODE_ROWS = 16384
#: A save or gc older than this (seconds) is taken for dead: its staging record or lock is ignored.
DEFAULT_GRACE = 3600.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VersionInfo:
    """One version of a repository as :meth:`Repository.versions` lists it."""

    id: str
    number: int
    created: str
    message: str | None
    digest: str
    signer: str | None
    model: dict[str, Any]
    versions: dict[str, str]
    metadata: dict[str, Any]
    aliases: tuple[str, ...] = ()
    #: Why the version's manifest cannot be read (None: it can); its other fields are then empty.
    damaged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["aliases"] = list(self.aliases)
        return out


@dataclass
class SaveStats:
    """What the last :meth:`Repository.save` wrote."""

    bytes_written: int = 0
    objects_written: int = 0
    objects_reused: int = 0
    store_bytes: int = 0  # the size of the same model as a plain store


@dataclass
class GcReport:
    """What :meth:`Repository.gc` removed."""

    objects_deleted: int = 0
    bytes_freed: int = 0
    keys_deleted: list[str] = field(default_factory=list)


class Repository:
    """Versions of models, with aliases and rollback, in a directory, ``s3://`` or ``memory://``.

    Every version is a complete treeshard store (read by the ordinary reader,
    checked chunk by chunk against its digest record) whose chunks are
    shared with earlier versions; a version appears in one atomic step, and
    an alias moves by compare-and-swap.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A directory (created on first save), ``s3://bucket/prefix`` or ``memory://name``.
    storage_options : dict, optional
        For ``s3://``: s3fs options (credentials, ``client_kwargs={"endpoint_url": ...}``).

    Examples
    --------
    >>> import treeshard
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> repo = treeshard.Repository("memory://doc-example")
    >>> v1 = repo.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), message="first")
    >>> repo.set_alias("production", v1)
    'v1'
    >>> repo.load("production").predict([[1]])
    array([1.])
    """

    def __init__(self, path_or_url: Any, *, storage_options: dict[str, Any] | None = None) -> None:
        self._backend = open_backend(path_or_url, storage_options)
        self._storage_options = storage_options
        self.location = self._backend.location
        #: Seconds after which a staging record or gc lock is taken for a dead process's.
        self.grace = DEFAULT_GRACE
        #: Node rows per chunk for new versions (a power of two).
        self.node_rows = REPOSITORY_NODE_ROWS
        #: What the last :meth:`save` of this object wrote.
        self.last_save: SaveStats | None = None
        self._marked = False

    def __repr__(self) -> str:
        return f"Repository({self.location!r})"

    def _where(self, key: str) -> str:
        return f"{self.location}/{key}"

    def exists(self) -> bool:
        """Whether a repository is at this location (its first :meth:`save` creates it).

        Examples
        --------
        >>> import treeshard
        >>> treeshard.Repository("memory://not-created-yet").exists()
        False
        """
        return self._backend.exists(MARKER_KEY)

    def _require_repository(self) -> None:
        if not self.exists():
            raise RepositoryError(not_a_repository(self.location))

    # ------------------------------------------------------------------ saving
    def save(
        self,
        model: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        message: str | None = None,
        sign_with: Any = None,
        input_example: Any = None,
        codec: str = "lz4",
    ) -> str:
        """Save ``model`` as a new version and return its id (``"v1"``, ``"v2"``, ...).

        Parameters
        ----------
        model : a fitted estimator :func:`treeshard.save` supports.
        metadata : mapping, optional
            JSON-safe data of your own (``{"dataset": ..., "metrics": {...}}``), kept in
            the version's record and in the model's store.
        message : str, optional
            A line describing the version.
        sign_with : Ed25519 private key (PEM bytes, path or key), optional
            Sign the version's content digest (an alias policy may require it).
        input_example : array or DataFrame, optional
            Rows like the model's input (one row may be 1-D): their column dtypes are
            recorded. ValueError if their width is not the model's ``n_features_in_``.
        codec : {"lz4", "zstd", "none"}
        """
        from ..saving import encode_files

        if message is not None and not isinstance(message, str):
            raise TypeError(f"message must be a string, got {type(message).__name__}")
        files = encode_files(model, codec=codec, metadata=metadata, node_rows=self.node_rows)
        signer = None
        if sign_with is not None:
            from ..integrity import key_id, load_private_key, signature_record

            private = load_private_key(sign_with)
            files[SIGNATURE_KEY] = signature_record(files[DIGEST_KEY], private)
            signer = key_id(private.public_key())
        entries, chunks = split_files(files)
        record = json.loads(files[ROOT_METADATA])["attributes"]["treeshard"]
        document = {
            "treeshard_version": MANIFEST_FORMAT,
            "created": _now(),
            "message": message,
            "digest": json.loads(files[DIGEST_KEY])["digest"],
            "signer": signer,
            "model": _model_summary(model, record, input_example),
            "versions": record["versions"],
            "metadata": record.get("metadata", {}),
            "files": entries,
        }
        stats = SaveStats(store_bytes=sum(len(v) if isinstance(v, bytes) else sum(map(len, v)) for v in files.values()))
        backend = self._backend
        if not self._marked:
            if backend.exists(ROOT_METADATA):  # a plain store: a later overwriting save of it would take every version
                raise RepositoryError(
                    f"{self.location} is a treeshard store, not a repository: give the repository a directory of its own"
                )
            if not backend.create(MARKER_KEY, encode_manifest({"treeshard_repository": 1, "created": _now(), "policies": {}})):
                marker = None
                with contextlib.suppress(ValueError):  # a damaged marker holds only alias policies: saves go on
                    marker = loads_json(backend.read(MARKER_KEY) or b"{}")
                check_newer(marker, "treeshard_repository", 1, self._where(MARKER_KEY))
            self._marked = True
        staging = f"staging/{os.getpid()}-{uuid.uuid4().hex}.json"
        known = self._known_chunks()
        try:
            while True:
                pack, pack_sha = place_chunks(entries, chunks, known)
                used = {part[2] for entry in entries.values() for part in entry.get("parts", [])}
                # The staging record first, then the gc lock check: a gc either sees this record or
                # this save sees its lock (and waits), so no pack this save uses is collected.
                backend.write(staging, encode_manifest({"created": time.time(), "objects": sorted(used)}))
                self._wait_for_gc()
                # A gc that ran before the record was written may have taken a pack the earlier
                # versions used (their versions deleted): place those chunks again.
                gone = {sha for sha in used - {pack_sha} if not backend.exists(object_key(sha))}
                if not gone:
                    break
                known = {sha: place for sha, place in known.items() if place[1] not in gone}
            new_chunks = {part[0] for entry in entries.values() for part in entry.get("parts", []) if part[2] == pack_sha}
            stats.objects_written = len(new_chunks)
            stats.objects_reused = len({part[0] for entry in entries.values() for part in entry.get("parts", [])}) - len(new_chunks)
            if pack and not backend.exists(object_key(pack_sha)):
                backend.write(object_key(pack_sha), pack)
                stats.bytes_written += len(pack)
            document["packs"] = number_packs(entries)
            number = self._publish(document, stats)
            self._advance_latest(number)
        finally:
            backend.delete(staging)
        self.last_save = stats
        return version_id(number)

    #: Versions whose chunks a save looks up (the newest ones): a chunk only an older version
    #: has is stored again.
    KNOWN_VERSIONS = 8

    def _known_chunks(self) -> dict[str, tuple[int, str, int]]:
        known: dict[str, tuple[int, str, int]] = {}
        for number in list_numbers(self._backend)[-self.KNOWN_VERSIONS :]:
            try:
                known.update(read_manifest(self._backend, number).chunks)
            except RefNotFoundError:
                continue  # deleted meanwhile
            except FormatError:
                continue  # damaged: its chunks are not reused (the new version stores its own)
        return known

    def _wait_for_gc(self) -> None:
        deadline = time.monotonic() + self.grace
        while True:
            raw = self._backend.read(GC_LOCK_KEY)
            if raw is None or _age(raw) > self.grace or _holder_is_dead(raw):
                return
            if time.monotonic() > deadline:
                raise RepositoryError(f"{self.location}: a gc has held {GC_LOCK_KEY} for too long")
            time.sleep(0.05)

    def _publish(self, document: dict[str, Any], stats: SaveStats) -> int:
        """Claim the next free version number with a create-only write of the manifest."""
        hint = read_hint(self._backend)
        number = max(hint or 0, latest_number(self._backend) or 0) + 1
        for attempt in range(1000):
            if number > MAX_VERSION:  # its manifest's key would be longer: a version nothing lists or names
                raise RepositoryError(
                    f"{self.location}: no version number is left after v{MAX_VERSION} ({LATEST_KEY} holds {hint}); "
                    f"if that file was edited, write the highest existing version number into it"
                )
            document["version"] = number
            raw = encode_manifest(document)
            if self._backend.create(version_key(number), raw):
                stats.bytes_written += len(raw)
                return number
            number += 1
            if attempt % 8 == 7:  # many writers: skip ahead to the newest
                number = max(number, (latest_number(self._backend) or 0) + 1)
        raise RepositoryError(f"{self.location}: could not claim a version number")

    def _advance_latest(self, number: int) -> None:
        for _ in range(100):
            got = self._backend.read_tagged(LATEST_KEY)
            if got is not None and got[0].isdigit() and int(got[0]) >= number:
                return
            if self._backend.replace(LATEST_KEY, str(number).encode(), None if got is None else got[1]):
                return

    # ------------------------------------------------------------------ reading
    def resolve(self, ref: Any = "latest") -> VersionRef:
        """The version ``ref`` names: a :class:`~treeshard.repository.VersionRef` that
        :func:`treeshard.load`, :func:`treeshard.open` and :class:`treeshard.Predictor` accept."""
        return resolve(self._backend, ref, self._storage_options)

    def open(self, ref: Any = "latest", **options: Any) -> Any:
        """:func:`treeshard.open` of a version (``"v3"``, an alias or ``"latest"``)."""
        from ..api import open as open_store

        return open_store(self.resolve(ref), **options)

    def load(self, ref: Any = "latest", **options: Any) -> Any:
        """:func:`treeshard.load` of a version; the options are :func:`treeshard.load`'s
        (``verify=True`` first checks every byte of the version, as :meth:`verify`)."""
        from ..api import load

        return load(self.resolve(ref), **options)

    def verify(self, ref: Any, *, public_key: Any = None) -> str:
        """Check every byte of a version against its digest record (and signature), as
        ``treeshard verify`` does for a store; raises :class:`~treeshard.IntegrityError`
        (:class:`~treeshard.SignatureError` with ``public_key``) naming what differs."""
        version = self.resolve(ref)
        self._verify(version, public_key)
        return f"{version_id(version.version)}: intact"

    def _verify(self, version: VersionRef, public_key: Any) -> None:
        from ..integrity import verify_store
        from .versions import VersionSource

        verify_store(VersionSource(self._backend, read_manifest(self._backend, version.version)), public_key=public_key)

    def predictor(self, ref: Any = "latest", **options: Any) -> Any:
        """A :class:`treeshard.Predictor` over a version (no sklearn, no zarr)."""
        from ..predictor import Predictor

        return Predictor(self.resolve(ref), **options)

    def manifest(self, ref: Any) -> Manifest:
        return read_manifest(self._backend, self.resolve(ref).version)

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first, with its metadata and the aliases that name it (a version
        whose manifest cannot be read is listed with ``damaged``, the reason)."""
        named: dict[int, list[str]] = {}
        for name, number in self.aliases().items():
            named.setdefault(number, []).append(name)
        out = []
        for number in list_numbers(self._backend):
            aliases = tuple(sorted(named.get(number, [])))
            try:
                manifest = read_manifest(self._backend, number)
            except RefNotFoundError:
                continue  # deleted while listing
            except FormatError as exc:  # listed, not hidden: the history shows every version
                out.append(VersionInfo(version_id(number), number, "", None, "", None, {}, {}, {}, aliases, damaged=str(exc)))
                continue
            out.append(_info(manifest, aliases))
        return out

    def info(self, ref: Any) -> VersionInfo:
        return _info(self.manifest(ref))

    def aliases(self) -> dict[str, int]:
        """``{alias: version number}``."""
        out = {}
        for key, _, _ in self._backend.list("aliases/"):
            name = key[len("aliases/") :].removesuffix(".json")
            try:
                check_alias_name(name)
            except RefNotFoundError:
                continue
            alias = read_alias(self._backend, name)
            if alias is not None:
                out[name] = alias[0]["version"]
        return dict(sorted(out.items()))

    def alias_history(self, name: str) -> list[int]:
        """The versions ``name`` named before (oldest first), then the one it names."""
        alias = read_alias(self._backend, check_alias_name(name))
        if alias is None:
            raise RefNotFoundError(not_found(self._backend, f"no alias {name!r}"))
        return [*alias[0]["history"], alias[0]["version"]]

    # ------------------------------------------------------------------ aliases
    def set_alias(self, name: str, version: Any, *, expect: Any = None) -> str:
        """Point alias ``name`` at ``version`` (an id, another alias or ``"latest"``); returns
        the id of the version it now names.

        ``expect``: the version the alias must name now (``""``: the alias must not
        exist yet); else :class:`~treeshard.AliasConflictError`. Without it, the move
        is still a compare-and-swap against what was read, retried on a race.
        """
        name = check_alias_name(name)
        target = self.resolve(version).version
        expected = _expected(expect)
        manifest = read_manifest(self._backend, target)  # the version exists and is complete
        public_key = self._check_policy(name, manifest)

        def point(document: dict[str, Any] | None) -> tuple[int, list[int]] | None:
            if document is None:
                return target, []
            if document["version"] == target and document.get("public_key") == public_key:
                return None  # already there: a rerun adds no history entry for rollback to step over
            return target, [*document["history"], document["version"]]

        self._move_alias(name, expected, point, public_key)
        return version_id(target)

    def rollback(self, name: str, *, expect: Any = None) -> str:
        """Move alias ``name`` back to the version it named before the last move; returns that id.

        ``expect``: the version the alias must name now, else
        :class:`~treeshard.AliasConflictError` (without it, two rollbacks at once move the
        alias back two steps).
        """
        name = check_alias_name(name)
        expected = _expected(expect)
        result: list[int] = []

        def back(document: dict[str, Any] | None) -> tuple[int, list[int]]:
            if document is None:
                raise RefNotFoundError(not_found(self._backend, f"no alias {name!r}"))
            history = list(document["history"])
            while history and history[-1] == document["version"]:  # moves to the version it named (older treeshard recorded them)
                history.pop()
            if not history:
                raise RepositoryError(f"{self.location}: alias {name!r} names {version_id(document['version'])} and has no earlier version")
            previous = history[-1]
            if not self._backend.exists(version_key(previous)):
                raise RefNotFoundError(
                    f"{self.location}: alias {name!r} named {version_id(previous)} before {version_id(document['version'])}, "
                    f"but {version_id(previous)} was deleted: point the alias at an existing version instead "
                    f"(set_alias / treeshard alias)"
                )
            result[:] = [previous]
            return previous, history[:-1]

        self._move_alias(name, expected, back, None, check_policy=True)
        return version_id(result[0])

    def delete_alias(self, name: str, *, expect: Any = None) -> str:
        """Remove alias ``name`` (compare-and-delete); returns the id of the version it named.

        ``expect``: the version it must name now, else :class:`~treeshard.AliasConflictError`.
        The versions it named stay (:meth:`delete` them, then :meth:`gc`).
        """
        name = check_alias_name(name)
        expected = _expected(expect)
        for _ in range(1000):
            current = read_alias(self._backend, name)
            if current is None:
                raise RefNotFoundError(not_found(self._backend, f"no alias {name!r}"))
            document, tag = current
            self._check_expected(name, expected, document["version"])
            if self._backend.remove(alias_key(name), tag):
                return version_id(document["version"])
        raise AliasConflictError(f"{self.location}: alias {name!r} kept changing; gave up")

    def _check_expected(self, name: str, expected: int | None | str, now: int | None) -> None:
        """:class:`~treeshard.AliasConflictError` unless alias ``name``, naming version ``now``
        (None: it does not exist), is as ``expected`` (``"any"``: whatever it names)."""
        if expected != "any" and now != expected:
            named = "does not exist" if now is None else f"names {version_id(now)}"
            wanted = "not to exist" if expected is None else f"to name {version_id(expected)}"
            raise AliasConflictError(f"{self.location}: alias {name!r} {named}, expected it {wanted}")

    def _move_alias(self, name: str, expected: int | None | str, step: Any, public_key: str | None, *, check_policy: bool = False) -> None:
        key = alias_key(name)
        for _ in range(1000):
            current = read_alias(self._backend, name)
            document, tag = (None, None) if current is None else current
            self._check_expected(name, expected, None if document is None else document["version"])
            moved = step(document)
            if moved is None:
                return
            target, history = moved
            if check_policy:
                public_key = self._check_policy(name, read_manifest(self._backend, target))
            new = {
                "treeshard_alias": 1,
                "name": name,
                "version": target,
                "history": history[-MAX_ALIAS_HISTORY:],
                "public_key": public_key,
                "updated": _now(),
            }
            raw = encode_manifest(new)
            if self._backend.replace(key, raw, tag):
                tombstone = self._backend.read(f"tombstones/{target}")
                # A delete of the target raced this move; a killed delete's tombstone (its process
                # gone from this machine, or older than the grace period) blocks nothing.
                if tombstone is not None and _age(tombstone) <= self.grace and not _holder_is_dead(tombstone):
                    self._undo_move(key, raw, current)
                    raise RefNotFoundError(
                        f"{self.location}: {version_id(target)} is being deleted (tombstones/{target}; one left by a "
                        f"killed delete is ignored {self.grace:.0f} s after it was written, and removed by gc)"
                    )
                # A delete that ran whole between this move's check of the target and its write
                # (it read the aliases before this write, and removed its tombstone before the
                # check above) deleted the manifest first: the target is gone.
                if not self._backend.exists(version_key(target)):
                    self._undo_move(key, raw, current)
                    raise RefNotFoundError(f"{self.location}: {version_id(target)} was deleted while alias {name!r} moved to it; the alias was left as it was")
                return
        raise AliasConflictError(f"{self.location}: alias {name!r} kept changing; gave up")

    def _undo_move(self, key: str, written: bytes, previous: tuple[dict[str, Any], str] | None) -> None:
        got = self._backend.read_tagged(key)
        if got is None or got[0] != written:
            return  # moved again since: not ours to undo
        tag = got[1]
        if previous is None:
            self._backend.delete(key)
        else:
            self._backend.replace(key, encode_manifest(previous[0]), tag)

    # ------------------------------------------------------------------ policies and signatures
    def require_signature(self, alias: str, public_key: Any) -> None:
        """Make alias ``alias`` accept only versions signed by ``public_key``; its readers then
        check that signature on every open. Pass ``None`` to lift the policy."""
        from ..integrity import load_public_key

        name = check_alias_name(alias)
        pem = None if public_key is None else _public_pem(load_public_key(public_key))
        for _ in range(100):
            got = self._backend.read_tagged(MARKER_KEY)
            marker = parse_marker(got[0], self._where(MARKER_KEY)) if got else {"treeshard_repository": 1, "created": _now(), "policies": {}}
            policies = dict(marker["policies"])
            if pem is None:
                policies.pop(name, None)
            else:
                policies[name] = {"public_key": pem}
            marker["policies"] = policies
            if self._backend.replace(MARKER_KEY, encode_manifest(marker), None if got is None else got[1]):
                break
        current = read_alias(self._backend, name)
        if current is not None:
            self._move_alias(name, current[0]["version"], lambda d: (d["version"], d["history"]), None, check_policy=True)

    def _check_policy(self, name: str, manifest: Manifest) -> str | None:
        raw = self._backend.read(MARKER_KEY)
        policy = parse_marker(raw, self._where(MARKER_KEY))["policies"].get(name) if raw else None
        if not policy:
            return None
        check_version_signature(manifest, policy["public_key"].encode(), f"alias {name!r} requires a signed version: {version_id(manifest.number)}")
        return policy["public_key"]

    # ------------------------------------------------------------------ deleting
    def delete(self, version: Any) -> None:
        """Delete a version (its manifest; :meth:`gc` reclaims its chunks). Refused while an alias names it."""
        from ..errors import VersionInUseError

        kind, number = parse_ref(version)
        if kind != "version":
            raise RefNotFoundError(f"delete takes a version id ('v3'), not {version!r}")
        if not self._backend.exists(version_key(number)):
            raise RefNotFoundError(f"{self.location}: no version {version_id(number)}")
        tombstone = f"tombstones/{number}"
        # The tombstone first, then the aliases: an alias move to this version either is
        # seen here, or sees the tombstone after its own write and undoes itself.
        self._backend.write(tombstone, encode_manifest({"created": time.time(), **_holder()}))
        try:
            users = sorted(name for name, target in self.aliases().items() if target == number)
            if users:
                raise VersionInUseError(f"{self.location}: {version_id(number)} is named by alias(es) {', '.join(users)}; move them first")
            self._backend.delete(version_key(number))
        finally:
            self._backend.delete(tombstone)

    def gc(self) -> GcReport:
        """Delete the objects no version uses (nor any save in progress), and dead scratch files."""
        backend = self._backend
        # Without the marker this is not a repository (a typo, another program's folder): every
        # file under objects/ would look unused.
        self._require_repository()
        report = GcReport()
        lock = encode_manifest({"created": time.time(), **_holder()})
        if not backend.create(GC_LOCK_KEY, lock):
            got = backend.read_tagged(GC_LOCK_KEY)
            if got is not None and _age(got[0]) <= self.grace and not _holder_is_dead(got[0]):
                raise RepositoryError(f"{self.location}: another gc is running ({GC_LOCK_KEY})")
            if not backend.replace(GC_LOCK_KEY, lock, None if got is None else got[1]):
                raise RepositoryError(f"{self.location}: another gc is running ({GC_LOCK_KEY})")
        try:
            # Staging records before versions: a save that publishes meanwhile is in one or the other.
            used: set[str] = set()
            stale = []
            for key, _, _ in backend.list("staging/"):
                raw = backend.read(key)
                if raw is None:
                    continue
                try:
                    record = json.loads(raw)
                    fresh = time.time() - float(record["created"]) <= self.grace
                    objects = [str(sha) for sha in record["objects"]]
                except (ValueError, KeyError, TypeError):
                    fresh, objects = False, []
                if fresh:
                    used.update(objects)
                else:
                    stale.append(key)
            for number in list_numbers(backend):
                try:
                    used.update(read_manifest(backend, number).objects)
                except RefNotFoundError:
                    continue
                except FormatError as exc:
                    raise FormatError(
                        f"{exc}; gc deleted nothing, as it cannot tell which objects {version_id(number)} uses: "
                        f"restore that file, or delete {version_id(number)}"
                    ) from None
            for key, _, size in backend.list("objects/"):
                if key.rsplit("/", 1)[-1] not in used:
                    backend.delete(key)
                    report.objects_deleted += 1
                    report.bytes_freed += size
                    report.keys_deleted.append(key)
            for key, _, _ in backend.list("tombstones/"):
                raw = backend.read(key)
                if raw is not None and (_age(raw) > self.grace or _holder_is_dead(raw)):  # a killed delete's
                    stale.append(key)
            for key in stale + backend.stale_temporaries(time.time() - self.grace):
                backend.delete(key)
                report.keys_deleted.append(key)
            newest = latest_number(backend)
            if newest is not None:
                self._advance_latest(newest)  # forward only: numbers are never reused
        finally:
            backend.delete(GC_LOCK_KEY)
        return report

    # ------------------------------------------------------------------ comparing
    def diff(self, a: Any, b: Any) -> dict[str, Any]:
        """Params, metadata and metrics that differ between two versions, and trees added,
        removed or changed (by content)."""
        from .diff import diff_versions

        return diff_versions(self, self.resolve(a), self.resolve(b))


def parse_marker(raw: bytes, where: str) -> dict[str, Any]:
    """The repository's marker document, checked: ``{"policies": {alias: {"public_key": PEM}}, ...}``."""
    try:
        marker = loads_json(raw)
    except ValueError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from None
    check_newer(marker, "treeshard_repository", 1, where)
    policies = marker.get("policies", {}) if isinstance(marker, dict) else None
    if (
        not isinstance(marker, dict)
        or marker.get("treeshard_repository") != 1
        or not isinstance(policies, dict)
        or not all(isinstance(p, dict) and isinstance(p.get("public_key"), str) for p in policies.values())
    ):
        raise FormatError(f"{where}: not a repository marker: expected 'treeshard_repository': 1 and 'policies' mapping aliases to {{'public_key': PEM}}")
    return {**marker, "policies": policies}


def _public_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _holder() -> dict[str, Any]:
    """Who holds a lock: this process, on this machine (``machine_tag``: host and pid namespace)."""
    return {"machine": machine_tag(), "pid": os.getpid()}


def _holder_is_dead(raw: bytes) -> bool:
    """Whether a lock's holder is a process of this machine that is gone (killed during a gc):
    its lock then blocks nothing, without waiting for the grace period."""
    try:
        holder = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(holder, dict) or holder.get("machine") != machine_tag():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and pid > 0 and not _alive(pid)


def _age(raw: bytes) -> float:
    try:
        return time.time() - float(json.loads(raw)["created"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _expected(expect: Any) -> int | None | str:
    if expect is None:
        return "any"
    if expect == "":
        return None
    kind, value = parse_ref(expect)
    if kind != "version":
        raise RefNotFoundError(f"expect= takes a version id ('v3') or '' (no alias yet), not {expect!r}")
    return value


def _info(manifest: Manifest, aliases: tuple[str, ...] = ()) -> VersionInfo:
    document = manifest.document
    return VersionInfo(
        id=version_id(manifest.number),
        number=manifest.number,
        created=str(document.get("created")),
        message=document.get("message"),
        digest=str(document.get("digest")),
        signer=document.get("signer"),
        model=dict(document.get("model") or {}),
        versions=dict(document.get("versions") or {}),
        metadata=dict(document.get("metadata") or {}),
        aliases=aliases,
    )


def _model_summary(model: Any, record: dict[str, Any], input_example: Any) -> dict[str, Any]:
    """What a model registry records about a model, automatically."""
    from ..adapters.families import ESTIMATORS

    if PIPELINE_KEY in record:
        summary = _pipeline_summary(model, record)
    else:
        summary = {
            "estimator": record["estimator"],
            "estimator_type": ESTIMATORS[record["estimator"]].estimator_type,
            "params": record["params"],
            "n_features_in": int(model.n_features_in_),
            "n_trees": record["trees"]["n_trees"],
            "n_nodes": record["trees"]["n_nodes"],
        }
    summary["python"] = platform.python_version()
    names = getattr(model, "feature_names_in_", None)
    summary["feature_names"] = None if names is None else [str(n) for n in names]
    classes = getattr(model, "classes_", None)
    if classes is not None:
        summary["classes"] = [c.tolist() for c in classes] if isinstance(classes, list) else classes.tolist()
    summary["feature_dtypes"] = _dtypes(input_example, getattr(model, "n_features_in_", None))
    return summary


def _pipeline_summary(model: Any, record: dict[str, Any]) -> dict[str, Any]:
    """A pipeline's summary: its root class, its type as sklearn tags it, its ensembles' trees and nodes.

    ``params`` holds each ensemble's params by group (``models/0``, ...): what a diff compares.
    """
    from sklearn.base import is_classifier, is_regressor

    configs: dict[str, dict[str, Any]] = {}

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("kind") == "ensemble" and isinstance(value.get("config"), dict):
                configs[value["group"]] = value["config"]
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(record[PIPELINE_KEY])
    from sklearn.base import is_outlier_detector

    kind = "classifier" if is_classifier(model) else "regressor" if is_regressor(model) else "outlier_detector" if is_outlier_detector(model) else "transformer"
    n_features = getattr(model, "n_features_in_", None)
    return {
        "estimator": type(model).__name__,
        "estimator_type": kind,
        "ensembles": {group: config["estimator"] for group, config in sorted(configs.items())},
        "params": {group: config["params"] for group, config in sorted(configs.items())},
        "n_features_in": None if n_features is None else int(n_features),
        "n_trees": sum(int(config["trees"]["n_trees"]) for config in configs.values()),
        "n_nodes": sum(int(config["trees"]["n_nodes"]) for config in configs.values()),
    }


def _dtypes(example: Any, n_features: Any) -> dict[str, str] | list[str] | None:
    if example is None:
        return None
    dtypes = getattr(example, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items"):  # a DataFrame
        out: dict[str, str] | list[str] = {str(name): str(dtype) for name, dtype in dtypes.items()}
    else:
        import numpy as np

        array = np.asarray(example)
        if array.ndim not in (1, 2):
            raise ValueError(f"input_example must be rows like the model's input (a 2-D array or a DataFrame), got a {array.ndim}-D array")
        out = [str(array.dtype)] * array.shape[-1]  # a 1-D example is one row
    if n_features is not None and len(out) != int(n_features):
        raise ValueError(f"input_example has {len(out)} columns, but the model takes {int(n_features)} features")
    return out


def check_version_signature(manifest: Manifest, public_key: Any, where: str) -> None:
    """Raise :class:`~treeshard.SignatureError` unless the version's digest record is signed by ``public_key``."""
    from ..integrity import check_signature_document
    from ..storage.digest import parse_digest

    record = manifest.files.get(DIGEST_KEY)
    if record is None or record.data is None:
        raise SignatureError(f"{where}: the version has no inline {DIGEST_KEY}: it cannot be signed")
    signature = manifest.files.get(SIGNATURE_KEY)
    try:
        check_signature_document(None if signature is None else signature.data, parse_digest(record.data), public_key)
    except SignatureError as exc:
        raise SignatureError(f"{where}: {exc}") from None

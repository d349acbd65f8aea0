"""Model repositories (issue 16): history, aliases, rollback, concurrency, crashes and gc,
on a local directory, on the moto S3 server and in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.servers import s3_env, s3_server  # noqa: F401 - the session's moto server
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

import treeshard
from treeshard.errors import (
    AliasConflictError,
    FormatError,
    IntegrityError,
    RefNotFoundError,
    RepositoryError,
    SignatureError,
    VersionInUseError,
)
from treeshard.repository.versions import VersionSource, object_key, read_manifest, version_key

NOT_A_REPOSITORY = "{location}: not a treeshard repository (no treeshard.repository.json; a repository is created by its first save): check the path"
SRC = str(Path(treeshard.__file__).resolve().parents[1])
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(600, 8, n_informative=5, n_classes=3, random_state=0)


def _forest(data: tuple[np.ndarray, np.ndarray], n: int, seed: int = 0) -> RandomForestClassifier:
    X, y = data
    return RandomForestClassifier(n, random_state=seed, n_jobs=1).fit(X, y)


@pytest.fixture(params=["local", "s3", "memory"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> treeshard.Repository:
    if request.param == "local":
        return treeshard.Repository(tmp_path / "repo")
    if request.param == "memory":
        return treeshard.Repository(f"memory://test-{uuid.uuid4().hex}")
    server = request.getfixturevalue("s3_server")
    return treeshard.Repository(f"s3://models/repo-{uuid.uuid4().hex}", storage_options=server.storage_options)


def _url_and_options(repo: treeshard.Repository) -> dict[str, Any]:
    return {"storage_options": repo._storage_options} if repo.location.startswith("s3://") else {}


# --------------------------------------------------------------------------- history and aliases
def test_history_and_alias_round_trip(repo: treeshard.Repository, data: Any) -> None:
    X, _ = data
    first, second = _forest(data, 4), _forest(data, 6, seed=1)
    v1 = repo.save(first, metadata={"dataset": "d-1", "metrics": {"acc": 0.5}}, message="first", input_example=X[:2])
    v2 = repo.save(second, metadata={"metrics": {"acc": 0.75}})
    assert (v1, v2) == ("v1", "v2")
    repo.set_alias("production", v1)

    history = repo.versions()
    assert [(v.id, v.message, v.aliases) for v in history] == [("v1", "first", ("production",)), ("v2", None, ())]
    info = history[0]
    assert info.metadata == {"dataset": "d-1", "metrics": {"acc": 0.5}}
    assert info.model["estimator"] == "RandomForestClassifier"
    assert info.model["estimator_type"] == "classifier"
    assert info.model["params"]["n_estimators"] == 4
    assert info.model["n_features_in"] == 8
    assert info.model["classes"] == [0, 1, 2]
    assert info.model["feature_dtypes"] == ["float64"] * 8
    assert info.model["n_trees"] == 4
    assert set(info.versions) == {"treeshard", "sklearn", "numpy", "zarr", "python"}
    assert info.signer is None
    with repo.open("v1") as handle:
        assert handle.info.metadata == {"dataset": "d-1", "metrics": {"acc": 0.5}}
    assert repo.aliases() == {"production": 1}

    for ref, model in (("v1", first), ("production", first), ("latest", second), ("v2", second), (2, second)):
        assert np.array_equal(repo.load(ref).predict_proba(X), model.predict_proba(X)), ref
        assert np.array_equal(repo.predictor(ref).predict_proba(X), model.predict_proba(X)), ref
    # "REPOSITORY@REF" anywhere a store is accepted.
    options = _url_and_options(repo)
    if not repo.location.startswith("memory://"):
        assert np.array_equal(treeshard.load(f"{repo.location}@production", **options).predict_proba(X), first.predict_proba(X))
        assert np.array_equal(treeshard.Predictor(f"{repo.location}@latest", **options).predict_proba(X), second.predict_proba(X))


def test_latest_costs_three_requests_on_s3(s3_server: Any, data: Any) -> None:
    """The hint, the hinted version's manifest (which the open then uses) and a check for a newer version."""
    X, _ = data
    location = f"s3://models/repo-{uuid.uuid4().hex}"
    repo = treeshard.Repository(location, storage_options=s3_server.storage_options)
    repo.save(_forest(data, 3))
    second = _forest(data, 4, seed=1)
    repo.save(second)
    prefix = "/" + location[len("s3://") :]
    s3_server.counter.reset()
    with treeshard.open(f"{location}@latest", storage_options=s3_server.storage_options) as handle:
        assert handle.info.n_estimators == 4
    assert [(method, path) for method, path, _ in s3_server.counter.log] == [
        ("GET", f"{prefix}/refs/latest"),
        ("GET", f"{prefix}/{version_key(2)}"),
        ("HEAD", f"{prefix}/{version_key(3)}"),
    ]
    # A version published by a save that died before moving the hint: found, and its manifest read.
    third = _forest(data, 5, seed=2)
    backend = repo._backend
    repo.save(third)
    backend.write("refs/latest", b"2")
    version = repo.resolve("latest")
    assert version.version == 3 and version.prefetched == []
    assert np.array_equal(treeshard.load(version).predict_proba(X), third.predict_proba(X))
    # The hinted version deleted: the listing decides.
    repo.delete("v3")
    backend.write("refs/latest", b"3")
    assert np.array_equal(repo.load("latest").predict_proba(X), second.predict_proba(X))


def test_rollback(repo: treeshard.Repository, data: Any) -> None:
    for n in (2, 3, 4):
        repo.save(_forest(data, n))
    for version in ("v1", "v3", "v2"):
        repo.set_alias("production", version)
    assert repo.alias_history("production") == [1, 3, 2]
    assert repo.rollback("production") == "v3"
    assert repo.resolve("production").version == 3
    assert repo.rollback("production") == "v1"
    with pytest.raises(RepositoryError) as excinfo:
        repo.rollback("production")
    assert str(excinfo.value) == f"{repo.location}: alias 'production' names v1 and has no earlier version"
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.rollback("staging")
    assert str(excinfo.value) == f"{repo.location}: no alias 'staging'"


def test_alias_compare_and_swap(repo: treeshard.Repository, data: Any) -> None:
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    repo.set_alias("production", "v1", expect="")
    with pytest.raises(AliasConflictError) as excinfo:
        repo.set_alias("production", "v2", expect="")
    assert str(excinfo.value) == f"{repo.location}: alias 'production' names v1, expected it not to exist"
    with pytest.raises(AliasConflictError) as excinfo:
        repo.set_alias("production", "v2", expect="v2")
    assert str(excinfo.value) == f"{repo.location}: alias 'production' names v1, expected it to name v2"
    with pytest.raises(AliasConflictError) as excinfo:
        repo.set_alias("staging", "v2", expect="v1")
    assert str(excinfo.value) == f"{repo.location}: alias 'staging' does not exist, expected it to name v1"
    repo.set_alias("production", "v2", expect="v1")
    repo.set_alias("staging", "production")  # an alias can name what another names
    assert repo.aliases() == {"production": 2, "staging": 2}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("v0", "'v0' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        ("", "'' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        ("prod/../x", "'prod/../x' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        ("v01", "'v01' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        ("v1\n", "'v1\\n' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        ("latest\n", "'latest\\n' is not a version reference: expected a version id ('v3'), 'latest' or an alias (a letter, then up to 63 letters, digits, '_' or '-')"),
        (0, "version numbers start at 1, got 0"),
        (2.0, "a version reference is a version id ('v3'), an alias or 'latest', got float"),
        (True, "a version reference is a version id ('v3'), an alias or 'latest', got bool"),
        (None, "a version reference is a version id ('v3'), an alias or 'latest', got NoneType"),
        ("v9", "{location}: no version v9"),
        ("champion", "{location}: no alias 'champion'"),
    ],
)
def test_bad_refs(tmp_path: Path, data: Any, ref: Any, message: str) -> None:
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.load(ref)
    assert str(excinfo.value) == message.format(location=repo.location)


def test_bad_alias_names_and_empty_repository(tmp_path: Path, data: Any) -> None:
    repo = treeshard.Repository(tmp_path / "repo")
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.load("latest")
    assert str(excinfo.value) == NOT_A_REPOSITORY.format(location=repo.location)
    repo.save(_forest(data, 2))
    for name in ("latest", "v3", "1st", "a b", "production\n", "v1\n"):
        with pytest.raises(RefNotFoundError) as excinfo:
            repo.set_alias(name, "v1")
        assert str(excinfo.value) == (
            f"{name!r} cannot be an alias: an alias is a letter, then up to 63 letters, digits, '_' or '-', "
            "and neither 'latest' nor a version id"
        )
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.set_alias("production", "v2")
    assert str(excinfo.value) == f"{repo.location}: no version v2"
    assert repo.aliases() == {}


def test_delete(repo: treeshard.Repository, data: Any) -> None:
    X, _ = data
    repo.save(_forest(data, 2))
    model = _forest(data, 3)
    repo.save(model)
    repo.set_alias("production", "v1")
    with pytest.raises(VersionInUseError) as excinfo:
        repo.delete("v1")
    assert str(excinfo.value) == f"{repo.location}: v1 is named by alias(es) production; move them first"
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.delete("production")
    assert str(excinfo.value) == "delete takes a version id ('v3'), not 'production'"
    repo.set_alias("production", "v2")
    repo.delete("v1")
    assert [v.id for v in repo.versions()] == ["v2"]
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.load("v1")
    assert str(excinfo.value) == f"{repo.location}: no version v1"
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.delete("v1")
    assert str(excinfo.value) == f"{repo.location}: no version v1"
    assert np.array_equal(repo.load("latest").predict_proba(X), model.predict_proba(X))
    assert repo.save(_forest(data, 4)) == "v3"
    # The newest version deleted: "latest" is the one before, and its number is never given again.
    repo.delete("v3")
    assert repo.resolve("latest").version == 2
    repo.gc()
    assert repo.save(_forest(data, 5)) == "v4"


# --------------------------------------------------------------------------- storage
def test_a_version_is_a_plain_store(tmp_path: Path, data: Any) -> None:
    """Every file a version serves, written to a directory, is a store that verifies and loads."""
    X, _ = data
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, data[1])
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(model)
    source = VersionSource(repo._backend, read_manifest(repo._backend, 1))
    out = tmp_path / "plain"
    for key in source.manifest.files:
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        (out / key).write_bytes(source.get(key))
    treeshard.verify(out)  # raises IntegrityError on any difference from the digest record
    assert np.array_equal(treeshard.load(out).predict(X), model.predict(X))


def test_warm_start_shares_chunks(tmp_path: Path) -> None:
    X, y = make_classification(6000, 10, n_informative=6, n_classes=3, random_state=0)
    model = RandomForestClassifier(40, random_state=0, n_jobs=1, warm_start=True).fit(X, y)
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(model)
    full = repo.last_save
    assert full.objects_reused == 0
    model.n_estimators = 44
    model.fit(X, y)
    repo.save(model)
    warm = repo.last_save
    assert warm.objects_reused > 0
    assert warm.bytes_written < 0.25 * warm.store_bytes  # 4 of 44 trees are new
    assert np.array_equal(repo.load("v2").predict_proba(X), model.predict_proba(X))
    # The same model again writes only its manifest.
    repo.save(model)
    assert repo.last_save.objects_written == 0


def test_missing_object_and_malformed_manifest(tmp_path: Path, data: Any) -> None:
    X, _ = data
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 3))
    repo.save(_forest(data, 3))  # the same model: the same objects
    manifest = read_manifest(repo._backend, 1)
    pack = manifest.files["nodes/threshold/c/0"].parts[0][2]
    packed = (tmp_path / "repo" / object_key(pack)).read_bytes()
    (tmp_path / "repo" / object_key(pack)).unlink()
    with pytest.raises(IntegrityError) as excinfo:
        repo.load("v1", lazy=False)
    assert f": pack {pack[:16]} is missing from the repository {repo.location} (or is truncated)" in str(excinfo.value)

    with pytest.raises(IntegrityError) as excinfo:
        repo.verify("v2")
    message = str(excinfo.value)
    assert message.startswith("store differs from the digest recorded at save time (")
    assert (
        "\n  array 'nodes/threshold', shard 'c/0' (nodes/threshold/c/0): "
        f"pack {pack[:16]} is missing from the repository {repo.location} (or is truncated)\n"
    ) in message
    # One flipped byte inside a chunk of the pack: verify names that chunk.
    _, size, _, offset = manifest.files["nodes/feature/c/0"].parts[0]
    damaged = bytearray(packed)
    damaged[offset + size - 5] ^= 1
    (tmp_path / "repo" / object_key(pack)).write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError) as excinfo:
        repo.load("v2", verify=True)
    assert "array 'nodes/feature', shard 'c/0' (nodes/feature/c/0): content differs: inner chunk(s) 0 of the shard" in str(excinfo.value)
    repo.save(_forest(data, 4, seed=9))
    assert repo.verify("latest") == "v3: intact"

    path = tmp_path / "repo" / version_key(1)
    document = json.loads(path.read_bytes())
    for edit, message in (
        (lambda d: d.update(version=2), "names version 2, expected 1"),
        (lambda d: d["files"].pop("zarr.json"), "'files' must be an object holding the store's zarr.json"),
        (lambda d: d["files"]["nodes/feature/c/0"].update(size=1), "files.nodes/feature/c/0: parts and tail do not add up to its size"),
        (lambda d: d["files"].update({"../x": {"size": 0, "data": ""}}), "files.../x: not a store key"),
        (lambda d: d["files"]["zarr.json"].update(data="!!"), "files.zarr.json: bad base64"),
        (lambda d: d.update(packs=["x"]), "'packs' must be a list of sha256 digests"),
        (lambda d: d["files"]["nodes/feature/c/0"]["parts"][0].__setitem__(2, 7), "files.nodes/feature/c/0: a part is not [chunk sha256, size, pack number, offset]"),
        (lambda d: d.update(metadata=json.loads("[" * 70 + "]" * 70)), "nested deeper than 64 levels"),
    ):
        edited = json.loads(json.dumps(document))
        edit(edited)
        path.write_text(json.dumps(edited))
        with pytest.raises(FormatError) as excinfo:
            repo.load("v1")
        assert str(excinfo.value).startswith(f"{repo.location}/{version_key(1)}: ")
        assert message in str(excinfo.value)
    path.write_bytes(b"{")
    with pytest.raises(FormatError, match="not valid JSON"):
        repo.load("v1")


# --------------------------------------------------------------------------- signatures
def test_signed_alias_policy(tmp_path: Path, data: Any) -> None:
    X, _ = data
    private, public = treeshard.generate_key_pair()
    other_private, other_public = treeshard.generate_key_pair()
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    signed = _forest(data, 3)
    repo.save(signed, sign_with=private)
    repo.save(_forest(data, 4), sign_with=other_private)
    assert [v.signer for v in repo.versions()][0] is None
    assert repo.versions()[1].signer == treeshard.integrity.key_id(public)
    repo.require_signature("production", public)
    with pytest.raises(SignatureError) as excinfo:
        repo.set_alias("production", "v1")
    assert str(excinfo.value).startswith("alias 'production' requires a signed version: v1: store is not signed")
    with pytest.raises(SignatureError) as excinfo:
        repo.set_alias("production", "v3")
    assert "is signed by key" in str(excinfo.value)
    repo.set_alias("production", "v2")
    assert np.array_equal(repo.load("production").predict_proba(X), signed.predict_proba(X))
    with pytest.raises(SignatureError) as excinfo:  # the policy cannot be read around
        repo.load("production", check_chunks=False)
    assert str(excinfo.value) == "cannot check the signature: check_chunks=False (every read must be checked against the signed record)"
    # A reader through the alias checks the signature: a version edited after signing is refused.
    path = tmp_path / "repo" / version_key(2)
    document = json.loads(path.read_bytes())
    document["files"]["treeshard.sig"] = json.loads(json.dumps(read_manifest_document(tmp_path, 3)["files"]["treeshard.sig"]))
    path.write_text(json.dumps(document))
    with pytest.raises(SignatureError):
        repo.predictor("production")
    assert repo.predictor("v2") is not None  # by id, no policy applies (the digest still checks every chunk)


def read_manifest_document(tmp_path: Path, number: int) -> dict[str, Any]:
    return json.loads((tmp_path / "repo" / version_key(number)).read_bytes())


# --------------------------------------------------------------------------- gc
def test_gc_keeps_what_versions_and_aliases_use(repo: treeshard.Repository, data: Any) -> None:
    X, _ = data
    models = [_forest(data, n, seed=n) for n in (2, 3, 4)]
    for model in models:
        repo.save(model)
    repo.set_alias("production", "v2")
    only_v1 = read_manifest(repo._backend, 1).objects - read_manifest(repo._backend, 2).objects - read_manifest(repo._backend, 3).objects
    assert only_v1
    pack_sizes = {key.rsplit("/", 1)[-1]: size for key, _, size in repo._backend.list("objects/")}
    assert repo.gc().objects_deleted == 0
    repo.delete("v1")
    report = repo.gc()
    assert {key.rsplit("/", 1)[-1] for key in report.keys_deleted if key.startswith("objects/")} == only_v1
    assert report.objects_deleted == len(only_v1)
    assert report.bytes_freed == sum(pack_sizes[sha] for sha in only_v1)
    for ref, model in (("production", models[1]), ("v3", models[2])):
        assert np.array_equal(repo.load(ref, lazy=False).predict_proba(X), model.predict_proba(X))
    assert repo.gc().objects_deleted == 0


def test_gc_spares_saves_in_progress(tmp_path: Path, data: Any) -> None:
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    objects = read_manifest(repo._backend, 1).objects
    repo.set_alias("production", "v1")
    repo.save(_forest(data, 3, seed=5))
    repo.set_alias("production", "v2")
    repo.delete("v1")
    # A save that listed these objects (and may reuse them) is in progress: gc keeps them.
    record = {"created": time.time(), "objects": sorted(objects)}
    repo._backend.write("staging/other-save.json", json.dumps(record).encode())
    assert not objects & {k.rsplit("/", 1)[-1] for k in repo.gc().keys_deleted}
    assert all(repo._backend.exists(object_key(sha)) for sha in objects)
    # A staging record older than the grace period belongs to a dead save.
    record["created"] = time.time() - 2 * repo.grace
    repo._backend.write("staging/other-save.json", json.dumps(record).encode())
    deleted = repo.gc().keys_deleted
    assert "staging/other-save.json" in deleted
    assert not any(repo._backend.exists(object_key(sha)) for sha in objects - read_manifest(repo._backend, 2).objects)


def test_save_waits_for_a_running_gc(tmp_path: Path, data: Any) -> None:
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo._backend.write("gc.lock", json.dumps({"created": time.time(), "pid": 0}).encode())
    saved: list[str] = []
    thread = threading.Thread(target=lambda: saved.append(repo.save(_forest(data, 3))))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and saved == [] and not repo._backend.exists(version_key(2))
    repo._backend.delete("gc.lock")
    thread.join(60)
    assert saved == ["v2"]
    repo._backend.write("gc.lock", json.dumps({"created": time.time(), "pid": 0}).encode())
    with pytest.raises(RepositoryError) as excinfo:
        repo.gc()
    assert str(excinfo.value) == f"{repo.location}: another gc is running (gc.lock)"


# --------------------------------------------------------------------------- several processes
WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [{src!r}]
    import treeshard
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    location, options, worker, task, rounds = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    repo = treeshard.Repository(location, storage_options=options or None)
    X, y = make_classification(600, 8, n_informative=5, n_classes=3, random_state=0)
    out = []
    if task == "save":
        for i in range(rounds):
            model = RandomForestClassifier(2, random_state=100 * worker + i, n_jobs=1).fit(X, y)
            out.append([repo.save(model, metadata={{"worker": worker, "round": i}}), 100 * worker + i])
    else:  # move the alias from what it names to this worker's version, compare-and-swap
        mine = f"v{{worker + 1}}"
        wins = conflicts = 0
        while wins < rounds:
            current = f"v{{repo.resolve('production').version}}"
            try:
                repo.set_alias("production", mine if current != mine else f"v{{(worker + 1) % 4 + 1}}", expect=current)
                wins += 1
            except treeshard.AliasConflictError:
                conflicts += 1
        out = [wins, conflicts]
    print(json.dumps(out))
    """
).format(src=SRC)


def _start_workers(repo: treeshard.Repository, task: str, n: int, rounds: int) -> list[subprocess.Popen]:
    options = json.dumps(repo._storage_options or {})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]))
    return [
        subprocess.Popen([sys.executable, "-c", WORKER, repo.location, options, str(i), task, str(rounds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(n)
    ]


def _run_workers(repo: treeshard.Repository, task: str, n: int, rounds: int, procs: list[subprocess.Popen] | None = None) -> list[Any]:
    procs = procs or _start_workers(repo, task, n, rounds)
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


@pytest.fixture(params=["local", "s3"])
def shared_repo(request: pytest.FixtureRequest, tmp_path: Path) -> treeshard.Repository:
    if request.param == "local":
        return treeshard.Repository(tmp_path / "repo")
    server = request.getfixturevalue("s3_server")
    return treeshard.Repository(f"s3://models/shared-{uuid.uuid4().hex}", storage_options=server.storage_options)


def test_concurrent_saves_from_processes(shared_repo: treeshard.Repository, data: Any) -> None:
    X, y = data
    outs = _run_workers(shared_repo, "save", 4, 3)
    ids = [version for out in outs for version, _ in out]
    assert len(set(ids)) == 12
    assert sorted(v.id for v in shared_repo.versions()) == sorted(ids)
    for out in outs:
        for version, seed in out:
            model = RandomForestClassifier(2, random_state=seed, n_jobs=1).fit(X, y)
            assert np.array_equal(shared_repo.load(version).predict_proba(X), model.predict_proba(X)), version
    assert shared_repo.resolve("latest").version == 12


def test_gc_while_processes_save(shared_repo: treeshard.Repository, data: Any) -> None:
    """gc run over and over while three processes save: no version loses a chunk."""
    X, y = data
    shared_repo.save(_forest(data, 2, seed=50))
    procs = _start_workers(shared_repo, "save", 3, 3)
    runs = 0
    while any(proc.poll() is None for proc in procs) or runs == 0:
        shared_repo.gc()
        runs += 1
    outs = _run_workers(shared_repo, "save", 3, 3, procs)
    shared_repo.gc()
    for out in outs:
        for version, seed in out:
            model = RandomForestClassifier(2, random_state=seed, n_jobs=1).fit(X, y)
            assert np.array_equal(shared_repo.load(version, lazy=False).predict_proba(X), model.predict_proba(X)), version
    assert runs >= 2


def test_alias_compare_and_swap_under_contention(shared_repo: treeshard.Repository, data: Any) -> None:
    for n in range(4):
        shared_repo.save(_forest(data, 2, seed=n))
    shared_repo.set_alias("production", "v1")
    outs = _run_workers(shared_repo, "alias", 4, 5)
    wins = sum(out[0] for out in outs)
    assert wins == 20
    # Every successful move is in the alias's history: none was lost to a race.
    assert len(shared_repo.alias_history("production")) == 1 + wins


# --------------------------------------------------------------------------- crashes
KILLER = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    sys.path[:0] = [{src!r}]
    import treeshard
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    location, options, kills = sys.argv[1], json.loads(sys.argv[2]) or None, int(sys.argv[3])
    X, y = make_classification(3000, 10, n_informative=6, n_classes=3, random_state=0)
    models = [RandomForestClassifier(8 + k, random_state=k, n_jobs=1).fit(X, y) for k in range(3)]
    import treeshard.api, treeshard.repository.core, treeshard.writer  # imported once, before the forks
    if options:
        import s3fs  # noqa: F401 - its session starts in each child
    rng = random.Random(0)
    finished = []

    def child(k, delay):
        # Fork a process that saves (and moves the alias) forever; kill it `delay` s after it is
        # ready (None: once it has saved one version). The versions it reported, and the time taken.
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            repo = treeshard.Repository(location, storage_options=options)
            repo._backend.exists("gc.lock")  # the S3 client's set-up, before the clock starts
            os.write(write, b"ready\\n")
            while True:
                os.write(write, b"saving\\n")
                version = repo.save(models[k % 3], metadata={{"model": k % 3}})
                repo.set_alias("production", version)
                os.write(write, (version + "\\n").encode())
                k += 1
        os.close(write)
        with os.fdopen(read) as reader:
            assert reader.readline() == "ready\\n"
            start = time.perf_counter()
            if delay is None:
                lines = [reader.readline(), reader.readline()]
            else:
                time.sleep(delay)
            elapsed = time.perf_counter() - start
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            lines = (lines if delay is None else []) + reader.read().split()
        lines = [line.strip() for line in lines if line.strip()]
        return lines, elapsed

    # Kill moments span one and a half saves, measured on this machine now (it may be loaded).
    lines, one_save = child(0, None)
    finished += [line for line in lines if line != "saving"]
    inside = 0  # kills that landed inside a save
    for kill in range(kills):
        lines, _ = child(kill, rng.uniform(0.0, 1.5 * one_save))
        finished += [line for line in lines if line != "saving"]
        inside += bool(lines) and lines[-1] == "saving"
    print(json.dumps([finished, inside]))
    """
).format(src=SRC)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("where", ["local", "s3"])
def test_sigkill_during_save_leaves_the_repository_consistent(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Saves (and alias moves) killed at random moments (50 locally, 30 on S3): every visible version is complete,
    the alias names one, and gc afterwards removes only what no version uses."""
    if where == "local":
        location, options, kills = str(tmp_path / "repo"), None, 50
    else:  # each kill costs a new S3 session (about half a second): fewer kills
        location, options, kills = f"s3://models/killed-{uuid.uuid4().hex}", request.getfixturevalue("s3_server").storage_options, 30
    command = [sys.executable, "-c", KILLER, location, json.dumps(options), str(kills)]
    # Meanwhile a reader serves the alias over and over: it never meets a partial version.
    reader = treeshard.Repository(location, storage_options=options)
    served, stop, failures = [], threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                served.append(reader.predictor("production").n_estimators)
            except RefNotFoundError as exc:  # before the first save, then before the first alias move only
                if str(exc) not in (NOT_A_REPOSITORY.format(location=reader.location), f"{reader.location}: no alias 'production'"):
                    failures.append(exc)
            except treeshard.TreeshardError as exc:
                failures.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert served and set(served) <= {8, 9, 10}
    assert done.returncode == 0, done.stderr
    finished, inside = json.loads(done.stdout.strip().splitlines()[-1])
    assert inside >= kills // 2  # most kills landed inside a save
    X, y = make_classification(3000, 10, n_informative=6, n_classes=3, random_state=0)
    models = [RandomForestClassifier(8 + k, random_state=k, n_jobs=1).fit(X, y) for k in range(3)]
    repo = treeshard.Repository(location, storage_options=options)
    visible = repo.versions()
    assert {v.id for v in visible} >= set(finished)
    assert len(visible) >= 1, done.stderr[-3000:]

    def check_all() -> None:
        for info in repo.versions():
            expected = models[info.metadata["model"]]
            assert np.array_equal(repo.load(info.id, lazy=False).predict_proba(X), expected.predict_proba(X)), info.id
        assert repo.resolve("production").version in {v.number for v in repo.versions()}

    check_all()
    repo.grace = 0.0  # every save is over: their staging records and scratch files are dead
    repo.gc()
    check_all()
    assert [key for key, _, _ in repo._backend.list("staging/")] == []
    if where == "local":
        assert not list((tmp_path / "repo" / ".tmp").iterdir())


# --------------------------------------------------------------------------- command line and imports
def test_cli(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    location = str(tmp_path / "repo")
    repo = treeshard.Repository(location)
    repo.save(_forest(data, 2), metadata={"metrics": {"acc": 0.5}}, message="first")
    model = _forest(data, 2)
    model.set_params(n_estimators=3, warm_start=True).fit(*data)
    repo.save(model, metadata={"metrics": {"acc": 0.6}})
    assert main(["alias", location, "production", "v1"]) == 0
    assert main(["alias", location, "production", "v2", "--expect", "v1"]) == 0
    assert main(["alias", location, "production", "v1", "--expect", "v1"]) == 1
    assert main(["rollback", location, "production"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["production -> v1", "production -> v2", "production -> v1"]
    assert out.err == f"error: {location}: alias 'production' names v2, expected it to name v1\n"

    assert main(["log", location, "--json"]) == 0
    log = json.loads(capsys.readouterr().out)
    assert log["aliases"] == {"production": "v1"}
    assert [(v["id"], v["message"], v["aliases"]) for v in log["versions"]] == [("v1", "first", ["production"]), ("v2", None, [])]
    assert main(["log", location]) == 0
    text = capsys.readouterr().out
    assert text.startswith("v2  ") and "v1 (production)" in text and "    first" in text

    assert main(["diff", location, "v1", "v2", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["params"] == {"n_estimators": [2, 3], "warm_start": [False, True]}
    assert diff["metrics"] == {"acc": [0.5, 0.6]}
    assert diff["trees"] == {"from": 2, "to": 3, "added": 1, "removed": 0, "changed": 0, "unchanged": 2}
    assert main(["diff", location, "v1", "v2"]) == 0
    assert "trees: 2 -> 3 (+1 added, -0 removed, 0 changed, 2 unchanged)" in capsys.readouterr().out
    assert main(["gc", location]) == 0
    assert capsys.readouterr().out == "deleted 0 objects (0 bytes), 0 scratch files\n"
    # "REPOSITORY@REF" wherever the command line takes a store.
    assert main(["verify", f"{location}@production"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {location}@production: ")
    assert main(["info", f"{location}@latest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_trees"] == 3


def test_serving_an_alias_imports_neither_sklearn_nor_zarr(tmp_path: Path, data: Any) -> None:
    X, _ = data
    model = _forest(data, 3)
    repo = treeshard.Repository(tmp_path / "repo")
    repo.set_alias("production", repo.save(model))
    script = f"""
import json, sys
import treeshard
p = treeshard.Predictor({str(tmp_path / 'repo') + '@production'!r})
heavy = sorted(m for m in ("sklearn", "zarr", "asyncio", "treeshard.api", "pandas", "scipy") if m in sys.modules)
print(json.dumps({{"heavy": heavy, "proba": p.predict_proba({X[:5].tolist()!r}).tolist()}}))
"""
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120, env=env)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert np.array_equal(np.array(out["proba"]), model.predict_proba(X[:5]))


def test_a_lazy_forest_from_a_repository_pickles_as_a_reference(tmp_path: Path, data: Any) -> None:
    import pickle

    X, _ = data
    model = _forest(data, 5)
    repo = treeshard.Repository(tmp_path / "repo")
    repo.set_alias("production", repo.save(model))
    lazy = repo.load("production")
    payload = pickle.dumps(lazy)
    treeshard.save(model, tmp_path / "plain")
    # A reference to the version, as small as a lazy model's reference to a plain store.
    assert len(payload) < len(pickle.dumps(treeshard.load(tmp_path / "plain"))) + 1000
    repo.set_alias("production", repo.save(_forest(data, 2, seed=3)))
    # The reference names the version, not the alias: moving the alias does not change the model.
    assert np.array_equal(pickle.loads(payload).predict_proba(X), model.predict_proba(X))


# --------------------------------------------------------------------------- pipelines
def _pipelines(data: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any]:
    """Two pipelines sharing one fitted forest: the second only changes the scaler."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = data
    first = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(6, random_state=0, n_jobs=1))]).fit(X, y)
    second = Pipeline([("scale", MinMaxScaler().fit(X)), ("forest", first[-1])])
    return first, second


def test_pipeline_versions_aliases_rollback_gc_and_diff(repo: treeshard.Repository, data: Any) -> None:
    X, _ = data
    first, second = _pipelines(data)
    assert repo.save(first, message="standard", input_example=X[:2]) == "v1"
    assert repo.save(second) == "v2"
    # The forest's chunks are content-addressed: the second version writes only what changed.
    assert repo.last_save.objects_reused > 0
    info = repo.info("v1")
    assert info.model["estimator"] == "Pipeline"
    assert info.model["estimator_type"] == "classifier"
    assert info.model["ensembles"] == {"models/0": "RandomForestClassifier"}
    assert info.model["params"]["models/0"]["n_estimators"] == 6
    assert (info.model["n_trees"], info.model["n_features_in"], info.model["classes"]) == (6, 8, [0, 1, 2])
    assert info.model["feature_dtypes"] == ["float64"] * 8
    assert info.message == "standard"

    repo.set_alias("production", "v1")
    repo.set_alias("production", "v2")
    for ref, model in (("v1", first), ("production", second), ("latest", second)):
        assert np.array_equal(repo.load(ref).predict_proba(X), model.predict_proba(X)), ref
        assert np.array_equal(repo.load(ref, lazy=True).predict(X), model.predict(X)), ref
        assert np.array_equal(repo.predictor(ref).predict_proba(X), model.predict_proba(X)), ref
    if not repo.location.startswith("memory://"):
        options = _url_and_options(repo)
        assert np.array_equal(treeshard.load(f"{repo.location}@production", **options).predict(X), second.predict(X))
        assert np.array_equal(treeshard.Predictor(f"{repo.location}@v1", **options).predict_proba(X), first.predict_proba(X))

    diff = repo.diff("v1", "v2")
    assert diff["estimator"] == ["Pipeline", "Pipeline"]
    assert diff["params"] == {}
    assert diff["trees"] == {"from": 6, "to": 6, "added": 0, "removed": 0, "changed": 0, "unchanged": 6}

    assert repo.rollback("production") == "v1"
    assert np.array_equal(repo.load("production").predict_proba(X), first.predict_proba(X))
    repo.set_alias("production", "v2")
    repo.delete("v1")
    repo.gc()
    assert np.array_equal(repo.load("production", lazy=False).predict_proba(X), second.predict_proba(X))
    with pytest.raises(RefNotFoundError):
        repo.load("v1")


def test_pipeline_diff_counts_changed_trees_per_ensemble(tmp_path: Path, data: Any) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = data
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(4, random_state=0, n_jobs=1))]).fit(X, y))
    repo.save(Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(5, random_state=1, n_jobs=1))]).fit(X, y))
    diff = repo.diff("v1", "v2")
    assert list(diff["params"]) == ["models/0"]
    assert [p["n_estimators"] for p in diff["params"]["models/0"]] == [4, 5]
    assert [p["random_state"] for p in diff["params"]["models/0"]] == [0, 1]
    assert diff["trees"] == {"from": 4, "to": 5, "added": 1, "removed": 0, "changed": 4, "unchanged": 0}
    # A version of a pipeline is a plain pipeline store.
    source = VersionSource(repo._backend, read_manifest(repo._backend, 2))
    out = tmp_path / "plain"
    for key in source.manifest.files:
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        (out / key).write_bytes(source.get(key))
    treeshard.verify(out)
    assert np.array_equal(treeshard.load(out).predict(X), repo.load("v2").predict(X))


def test_estimator_type_of_each_root_family(tmp_path: Path, data: Any) -> None:
    from sklearn.ensemble import IsolationForest

    X, y = data
    repo = treeshard.Repository(tmp_path / "repo")
    models = {
        "classifier": _forest(data, 3),
        "regressor": GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X, y),
        "outlier_detector": IsolationForest(n_estimators=3, random_state=0).fit(X),
    }
    for expected, model in models.items():
        version = repo.save(model)
        assert repo.info(version).model["estimator_type"] == expected
        treeshard.save(model, tmp_path / f"{expected}.zip")
        assert treeshard.open(tmp_path / f"{expected}.zip").info.estimator_type == expected


# --------------------------------------------------------------------------- a deploying team's mistakes
def test_gc_and_the_command_line_refuse_a_folder_that_is_not_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``treeshard gc`` of a mistyped path (here a git repository's .git) deleted every file under objects/."""
    from treeshard.cli import main

    folder = tmp_path / "project" / ".git"
    (folder / "objects" / "ab").mkdir(parents=True)
    (folder / "objects" / "ab" / "cdef").write_bytes(b"a git object")
    repo = treeshard.Repository(folder)
    message = NOT_A_REPOSITORY.format(location=str(folder))
    assert not repo.exists()
    with pytest.raises(RepositoryError) as excinfo:
        repo.gc()
    assert str(excinfo.value) == message
    for command in ("gc", "log"):
        assert main([command, str(folder)]) == 1
        assert capsys.readouterr().err == f"error: {message}\n"
    assert main(["diff", str(folder), "v1", "v2"]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert (folder / "objects" / "ab" / "cdef").read_bytes() == b"a git object"
    for ref in ("production", "v1", "latest"):
        with pytest.raises(RefNotFoundError) as excinfo:
            treeshard.load(f"{tmp_path / 'nowhere'}@{ref}")
        assert str(excinfo.value) == NOT_A_REPOSITORY.format(location=str(tmp_path / "nowhere"))


def test_an_emptied_repository_has_no_version_yet(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo.delete("v1")
    assert repo.exists()
    assert main(["log", repo.location]) == 0
    assert capsys.readouterr().out == f"{repo.location}: no versions (every one was deleted)\n"
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.load("latest")
    assert str(excinfo.value) == f"{repo.location}: the repository has no version yet"
    assert repo.gc().objects_deleted == 1


def test_setting_an_alias_again_leaves_its_history_alone(repo: treeshard.Repository, data: Any) -> None:
    """A rerun deploy step (``treeshard alias REPO production v2`` twice) made the next rollback a no-op."""
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    repo.set_alias("production", "v1")
    repo.set_alias("production", "v2")
    repo.set_alias("production", "v2")
    repo.set_alias("production", "latest", expect="v2")
    assert repo.alias_history("production") == [1, 2]
    assert repo.rollback("production") == "v1"


def test_rollback_to_a_deleted_version_says_so(repo: treeshard.Repository, data: Any) -> None:
    for n in (2, 3, 4):
        repo.save(_forest(data, n))
    for version in ("v1", "v2", "v3"):
        repo.set_alias("production", version)
    repo.delete("v2")
    repo.gc()
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.rollback("production")
    assert str(excinfo.value) == (
        f"{repo.location}: alias 'production' named v2 before v3, but v2 was deleted: point the alias at an existing "
        "version instead (set_alias / treeshard alias)"
    )
    assert repo.alias_history("production") == [1, 2, 3]
    repo.set_alias("production", "v1")
    assert repo.resolve("production").version == 1


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (b"{oops", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        (b"[]", "not a repository marker: expected 'treeshard_repository': 1 and 'policies' mapping aliases to {'public_key': PEM}"),
        (b'{"treeshard_repository": 1, "policies": []}', "not a repository marker: expected 'treeshard_repository': 1 and 'policies' mapping aliases to {'public_key': PEM}"),
        # a policy without its key must not silently lift the signature requirement
        (b'{"treeshard_repository": 1, "policies": {"production": {}}}', "not a repository marker: expected 'treeshard_repository': 1 and 'policies' mapping aliases to {'public_key': PEM}"),
    ],
)
def test_a_damaged_marker_is_a_format_error(tmp_path: Path, data: Any, marker: bytes, message: str) -> None:
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    repo.set_alias("production", "v1")
    repo.set_alias("production", "v2")
    (tmp_path / "repo" / "treeshard.repository.json").write_bytes(marker)
    where = f"{repo.location}/treeshard.repository.json: "
    for move in (lambda: repo.set_alias("staging", "v1"), lambda: repo.rollback("production"), lambda: repo.require_signature("production", None)):
        with pytest.raises(FormatError) as excinfo:
            move()
        assert str(excinfo.value) == where + message
    assert repo.aliases() == {"production": 2}


def test_a_killed_delete_s_tombstone_expires(repo: treeshard.Repository, data: Any) -> None:
    """A delete killed between its tombstone and its end blocked every alias move to that version, forever."""
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    backend = repo._backend
    backend.write("tombstones/1", json.dumps({"created": time.time()}).encode())  # a delete in progress
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.set_alias("production", "v1")
    assert str(excinfo.value) == (
        f"{repo.location}: v1 is being deleted (tombstones/1; one left by a killed delete is ignored 3600 s after it was "
        "written, and removed by gc)"
    )
    assert repo.aliases() == {}
    assert repo.gc().keys_deleted == []
    backend.write("tombstones/1", json.dumps({"created": time.time() - 2 * repo.grace}).encode())  # its process was killed
    repo.set_alias("production", "v1")
    assert repo.aliases() == {"production": 1}
    assert repo.gc().keys_deleted == ["tombstones/1"]
    assert [key for key, _, _ in backend.list("tombstones/")] == []


def test_a_damaged_manifest_blocks_neither_saves_nor_loads_of_other_versions(tmp_path: Path, data: Any) -> None:
    X, _ = data
    repo = treeshard.Repository(tmp_path / "repo")
    model = _forest(data, 3)
    repo.save(model)
    repo.save(model)
    (tmp_path / "repo" / version_key(2)).write_bytes(b"{")
    assert repo.save(model) == "v3"  # v2's chunks are not reused: v3 refers to v1's
    assert np.array_equal(repo.load("latest").predict_proba(X), model.predict_proba(X))
    objects = sorted(key for key, _, _ in repo._backend.list("objects/"))
    with pytest.raises(FormatError) as excinfo:
        repo.gc()
    assert str(excinfo.value) == (
        f"{repo.location}/{version_key(2)}: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
        "gc deleted nothing, as it cannot tell which objects v2 uses: restore that file, or delete v2"
    )
    assert sorted(key for key, _, _ in repo._backend.list("objects/")) == objects
    repo.delete("v2")
    assert repo.gc().objects_deleted == 0


def test_a_damaged_manifest_is_listed_as_damaged(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """One unreadable manifest made versions() and `treeshard log` fail whole, when a team needs the history most."""
    from treeshard.cli import main

    repo = treeshard.Repository(tmp_path / "repo")
    model = _forest(data, 3)
    repo.save(model, metadata={"note": "café"})
    repo.save(model)
    repo.set_alias("production", "v2")
    (tmp_path / "repo" / version_key(2)).write_bytes(b"{")
    reason = f"{repo.location}/{version_key(2)}: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    first, second = repo.versions()
    assert (first.id, first.damaged, first.metadata) == ("v1", None, {"note": "café"})
    assert (second.id, second.number, second.aliases, second.damaged, second.model) == ("v2", 2, ("production",), reason, {})
    assert main(["log", str(repo.location)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"v2 (production)  DAMAGED: {reason}"
    assert lines[1].startswith("v1  ") and lines[-1] == '    metadata {"note": "café"}'
    assert main(["log", str(repo.location), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["versions"]
    assert [v["damaged"] for v in listed] == [None, reason]


def test_verify_a_version_on_s3_from_the_command_line(s3_env: Any, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``treeshard verify s3://bucket/repo@production`` (docs/REPOSITORY.md) was refused as an unlistable URL."""
    from treeshard.cli import main

    location = f"s3://models/repo-{uuid.uuid4().hex}"
    repo = treeshard.Repository(location)
    repo.save(_forest(data, 2))
    repo.set_alias("production", "v1")
    assert main(["verify", f"{location}@production"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {location}@production: 25 files match sha256 digest ")
    assert treeshard.verify(f"{location}@v1").startswith("25 files match sha256 digest ")
    with pytest.raises(treeshard.errors.InvalidStoreError) as excinfo:
        treeshard.verify(f"{location}/plain-store")
    assert str(excinfo.value) == "verifying needs a store whose files can be listed (a directory, a .zip or a zarr Store): `treeshard verify` a downloaded copy"


def test_diff_text_names_each_section(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    repo = treeshard.Repository(tmp_path / "repo")
    model = _forest(data, 2)
    repo.save(model, metadata={"dataset": "d-1", "metrics": {"acc": 0.5}})
    repo.save(model, metadata={"dataset": "d-2", "metrics": {"acc": 0.5}})
    assert main(["diff", repo.location, "v1", "v2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "v1 -> v2",
        '  metadata dataset: "d-1" -> "d-2"',
        "  trees: 2 -> 2 (+0 added, -0 removed, 0 changed, 2 unchanged)",
    ]


def test_a_relative_repository_survives_a_change_of_directory(tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version loaded lazily from a relative path read its chunks from the new working directory."""
    X, _ = data
    model = _forest(data, 3)
    monkeypatch.chdir(tmp_path)
    repo = treeshard.Repository("models/churn")
    repo.save(model)
    repo.set_alias("production", "v1")
    assert repo.location == str(tmp_path / "models" / "churn")
    lazy = treeshard.load("models/churn@production", lazy=True)
    predictor = treeshard.Predictor("models/churn@v1")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert np.array_equal(lazy.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(predictor.predict_proba(X), model.predict_proba(X))
    assert repo.aliases() == {"production": 1}


def test_delete_from_the_command_line(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """gc frees what deleted versions used, and the command line had no way to delete one."""
    from treeshard.cli import main

    location = str(tmp_path / "my repo")
    repo = treeshard.Repository(location)
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3, seed=1))
    repo.set_alias("production", "v2")
    assert main(["delete", location, "v1"]) == 0
    assert capsys.readouterr().out == f"deleted v1; `treeshard gc '{location}'` frees the chunks no other version uses\n"
    assert [v.id for v in repo.versions()] == ["v2"]
    assert main(["delete", location, "v2"]) == 1
    assert capsys.readouterr().err == f"error: {location}: v2 is named by alias(es) production; move them first\n"
    assert main(["delete", location, "production"]) == 1
    assert capsys.readouterr().err == "error: delete takes a version id ('v3'), not 'production'\n"
    assert main(["gc", location]) == 0
    assert capsys.readouterr().out.startswith("deleted 1 objects (")


def test_a_plain_store_is_not_made_a_repository(tmp_path: Path, data: Any) -> None:
    """Repository(store).save() wrote versions into a model's directory; treeshard.save(..., overwrite=True) of that
    store would then have replaced them all."""
    model = _forest(data, 2)
    treeshard.save(model, tmp_path / "model")
    before = sorted(path.name for path in (tmp_path / "model").iterdir())
    repo = treeshard.Repository(tmp_path / "model")
    with pytest.raises(RepositoryError) as excinfo:
        repo.save(model)
    assert str(excinfo.value) == f"{tmp_path / 'model'} is a treeshard store, not a repository: give the repository a directory of its own"
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == before


def test_diff_of_a_single_metric_and_of_another_estimator(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``metadata={"metrics": 0.91}`` changes were dropped from the diff; a change of estimator was not printed."""
    from treeshard.cli import main

    X, y = data
    repo = treeshard.Repository(tmp_path / "repo")
    forest = _forest(data, 2)
    repo.save(forest, metadata={"metrics": 0.5})
    repo.save(forest, metadata={"metrics": 0.75})
    repo.save(GradientBoostingRegressor(n_estimators=2, random_state=0).fit(X, y), metadata={"metrics": {"r2": 0.1}})
    assert repo.diff("v1", "v2")["metadata"] == {"metrics": [0.5, 0.75]}
    assert repo.diff("v1", "v2")["metrics"] == {}
    assert repo.diff("v2", "v3")["metadata"] == {"metrics": [0.75, {"r2": 0.1}]}
    assert main(["diff", repo.location, "v2", "v3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["v2 -> v3", "  estimator: RandomForestClassifier -> GradientBoostingRegressor"]
    assert '  metadata metrics: 0.75 -> {"r2": 0.1}' in lines


def test_rollback_with_expect(repo: treeshard.Repository, data: Any) -> None:
    """Two operators rolling back at once moved the alias back two steps; expect= lets each insist on what it saw."""
    for n in (2, 3, 4):
        repo.save(_forest(data, n))
    for version in ("v1", "v2", "v3"):
        assert repo.set_alias("production", version) == version
    assert repo.rollback("production", expect="v3") == "v2"
    with pytest.raises(AliasConflictError) as excinfo:
        repo.rollback("production", expect="v3")
    assert str(excinfo.value) == f"{repo.location}: alias 'production' names v2, expected it to name v3"
    assert repo.alias_history("production") == [1, 2]


def test_rollback_with_expect_from_the_command_line(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    location = str(tmp_path / "repo")
    repo = treeshard.Repository(location)
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    assert main(["alias", location, "production", "v1"]) == 0
    assert main(["alias", location, "production", "latest"]) == 0
    assert main(["rollback", location, "production", "--expect", "v1"]) == 1
    assert main(["rollback", location, "production", "--expect", "v2"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == ["production -> v1", "production -> v2", "production -> v1"]
    assert out.err == f"error: {location}: alias 'production' names v2, expected it to name v1\n"


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="needs Linux pid namespaces")
def test_a_gc_killed_on_this_machine_blocks_no_save(tmp_path: Path, data: Any) -> None:
    """A gc killed with SIGKILL left gc.lock, and every save then waited for the grace period (an hour)."""
    location = str(tmp_path / "repo")
    repo = treeshard.Repository(location)
    repo.save(_forest(data, 2))
    repo.delete("v1")
    code = f"import sys, time; sys.path[:0] = [{SRC!r}]; import treeshard; r = treeshard.Repository({location!r}); r._backend.list = lambda prefix: time.sleep(60); r.gc()"
    gc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not repo._backend.exists("gc.lock") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(repo._backend.read("gc.lock"))["pid"] == gc.pid
    gc.kill()
    gc.wait()
    saved: list[str] = []
    thread = threading.Thread(target=lambda: saved.append(repo.save(_forest(data, 3))), daemon=True)
    thread.start()
    thread.join(30)
    assert saved == ["v2"]
    assert repo.gc().objects_deleted == 1
    assert not repo._backend.exists("gc.lock")


def test_gc_judges_only_this_machine_s_temporaries_by_pid(tmp_path: Path, data: Any) -> None:
    """gc deleted the temporaries of a save running in another container (or host) sharing the directory: their
    pids are not alive here."""
    from treeshard.repository.backends import machine_tag

    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    dead = 2**22 + 1  # above the kernel's default pid_max: no such process here
    scratch = tmp_path / "repo" / ".tmp"
    for name in (f"{dead}-{'a' * 32}-{machine_tag()}", f"{dead}-{'b' * 32}-0123456789ab", f"{dead}-{'c' * 32}"):
        (scratch / name).write_bytes(b"partial")
    assert sorted(repo.gc().keys_deleted) == [f".tmp/{dead}-{'a' * 32}-{machine_tag()}", f".tmp/{dead}-{'c' * 32}"]
    assert [path.name for path in scratch.iterdir()] == [f"{dead}-{'b' * 32}-0123456789ab"]
    repo.grace = 0.0
    assert repo.gc().keys_deleted == [f".tmp/{dead}-{'b' * 32}-0123456789ab"]


def test_help_names_repository_references(capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    for command in ("info", "verify"):
        with pytest.raises(SystemExit) as excinfo:
            main([command, "--help"])
        assert excinfo.value.code == 0
        assert "REPOSITORY@REF (a version: v3, an alias or latest)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "version them in a repository (log, alias, rollback, diff, delete, gc)" in " ".join(capsys.readouterr().out.split())


def test_a_save_past_the_last_version_number_is_refused(tmp_path: Path, data: Any) -> None:
    """A refs/latest edited to 9999999999 made the next save publish v10000000000: an eleven-digit manifest that
    no listing saw and no reference could name."""
    X, _ = data
    repo = treeshard.Repository(tmp_path / "repo")
    model = _forest(data, 2)
    repo.save(model)
    (tmp_path / "repo" / "refs" / "latest").write_text("9999999999")
    with pytest.raises(RepositoryError) as excinfo:
        repo.save(_forest(data, 3))
    assert str(excinfo.value) == (
        f"{repo.location}: no version number is left after v9999999999 (refs/latest holds 9999999999); "
        "if that file was edited, write the highest existing version number into it"
    )
    assert sorted(path.name for path in (tmp_path / "repo" / "versions").iterdir()) == ["0000000001.json"]
    (tmp_path / "repo" / "refs" / "latest").write_text("1")
    assert repo.save(_forest(data, 3)) == "v2"
    assert np.array_equal(repo.load("v1").predict_proba(X), model.predict_proba(X))


def test_a_repository_of_a_newer_format_asks_for_an_upgrade(tmp_path: Path, data: Any) -> None:
    from treeshard.errors import UnsupportedFormatVersionError

    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo.set_alias("production", "v1")
    root = tmp_path / "repo"
    for key, field in ((version_key(1), "treeshard_version"), ("aliases/production.json", "treeshard_alias")):
        original = (root / key).read_bytes()
        (root / key).write_text(json.dumps({**json.loads(original), field: 2}))
        with pytest.raises(UnsupportedFormatVersionError) as excinfo:
            repo.load("production")
        assert str(excinfo.value) == f"{root / key}: format 2 was written by a newer treeshard (this one reads format 1): upgrade treeshard"
        (root / key).write_bytes(original)
    marker = root / "treeshard.repository.json"
    marker.write_text(json.dumps({**json.loads(marker.read_bytes()), "treeshard_repository": 2}))
    message = f"{marker}: format 2 was written by a newer treeshard (this one reads format 1): upgrade treeshard"
    for write in (lambda r: r.save(_forest(data, 3)), lambda r: r.set_alias("production", "v1")):
        with pytest.raises(UnsupportedFormatVersionError) as excinfo:
            write(treeshard.Repository(root))
        assert str(excinfo.value) == message
    assert [v.id for v in repo.versions()] == ["v1"]


def _before_the_next_write(monkeypatch, repo, action) -> None:  # type: ignore[no-untyped-def]
    """Run ``action`` (another process's step) once, just before ``repo``'s next conditional write."""
    replace = repo._backend.replace

    def first(key: str, raw: bytes, tag: Any) -> bool:
        monkeypatch.setattr(repo._backend, "replace", replace)
        action()
        return replace(key, raw, tag)

    monkeypatch.setattr(repo._backend, "replace", first)


def test_an_alias_never_names_a_version_deleted_during_its_move(repo: treeshard.Repository, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete that ran whole between set_alias's check of its target and its write (reading the aliases before
    the write, removing its tombstone before the move looked for it) left the alias naming a deleted version."""
    X, _ = data
    repo.save(_forest(data, 2))
    second = _forest(data, 3)
    repo.save(second)
    repo.set_alias("production", "v2")
    other = treeshard.Repository(repo.location, **_url_and_options(repo))
    _before_the_next_write(monkeypatch, repo, lambda: other.delete("v1"))
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.set_alias("production", "v1")
    assert str(excinfo.value) == f"{repo.location}: v1 was deleted while alias 'production' moved to it; the alias was left as it was"
    assert repo.aliases() == {"production": 2}
    assert repo.alias_history("production") == [2]
    assert np.array_equal(repo.load("production").predict_proba(X), second.predict_proba(X))


def test_input_example_must_match_the_model(tmp_path: Path, data: Any) -> None:
    """A one-row example (X[0]) recorded one dtype for an 8-feature model; an example of another width was
    recorded as it was."""
    import pandas as pd

    X, _ = data
    repo = treeshard.Repository(tmp_path / "repo")
    model = _forest(data, 2)
    assert repo.info(repo.save(model, input_example=X[0])).model["feature_dtypes"] == ["float64"] * 8
    frame = pd.DataFrame(X[:2].astype(np.float32), columns=[f"f{i}" for i in range(8)])
    assert repo.info(repo.save(model, input_example=frame)).model["feature_dtypes"] == {f"f{i}": "float32" for i in range(8)}
    for example, message in (
        (X[:2, :3], "input_example has 3 columns, but the model takes 8 features"),
        (frame.iloc[:, :5], "input_example has 5 columns, but the model takes 8 features"),
        (X[None], "input_example must be rows like the model's input (a 2-D array or a DataFrame), got a 3-D array"),
    ):
        with pytest.raises(ValueError) as excinfo:
            repo.save(model, input_example=example)
        assert str(excinfo.value) == message
    assert [v.id for v in repo.versions()] == ["v1", "v2"]


def test_show_an_alias_and_its_history_from_the_command_line(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """What did production name before? The command line could not say (Repository.alias_history only)."""
    from treeshard.cli import main

    location = str(tmp_path / "repo")
    repo = treeshard.Repository(location)
    for n in (2, 3, 4):
        repo.save(_forest(data, n))
    assert main(["alias", location, "production", "v1"]) == 0
    assert main(["alias", location, "production"]) == 0
    assert main(["alias", location, "production", "v3"]) == 0
    assert main(["alias", location, "production", "v2"]) == 0
    assert main(["alias", location, "production"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "production -> v1",
        "production -> v1",
        "production -> v3",
        "production -> v2",
        "production -> v2 (before: v3, v1)",
    ]
    assert main(["alias", location, "staging"]) == 1
    assert capsys.readouterr().err == f"error: {location}: no alias 'staging'\n"
    assert main(["alias", location, "production", "--expect", "v2"]) == 2
    assert capsys.readouterr().err == "error: --expect needs a VERSION to move the alias to\n"


def test_rollback_steps_over_history_entries_of_the_current_version(tmp_path: Path, data: Any) -> None:
    """An alias document written before reruns were no-ops holds the current version again in its history:
    rollback moved to the version it already named."""
    repo = treeshard.Repository(tmp_path / "repo")
    for n in (2, 3):
        repo.save(_forest(data, n))
    repo.set_alias("production", "v1")
    repo.set_alias("production", "v2")
    path = tmp_path / "repo" / "aliases" / "production.json"
    path.write_text(json.dumps({**json.loads(path.read_bytes()), "history": [1, 2, 2]}))
    assert repo.rollback("production") == "v1"
    assert repo.alias_history("production") == [1]
    path.write_text(json.dumps({**json.loads(path.read_bytes()), "history": [1, 1]}))
    with pytest.raises(RepositoryError) as excinfo:
        repo.rollback("production")
    assert str(excinfo.value) == f"{repo.location}: alias 'production' names v1 and has no earlier version"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_delete_killed_on_this_machine_blocks_no_alias_move(tmp_path: Path, data: Any) -> None:
    """A delete killed after writing its tombstone blocked alias moves to that version for the grace period."""
    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    repo.set_alias("production", "v2")
    pid = os.fork()
    if pid == 0:  # the deleting process, killed between its tombstone and its end
        repo._backend.delete = lambda key: os.kill(os.getpid(), signal.SIGKILL)
        repo.delete("v1")
        os._exit(0)
    os.waitpid(pid, 0)
    assert json.loads(repo._backend.read("tombstones/1"))["pid"] == pid
    repo.set_alias("production", "v1")
    assert repo.aliases() == {"production": 1}
    assert repo.gc().keys_deleted == ["tombstones/1"]


def test_an_alias_file_copied_by_hand_is_named(tmp_path: Path, data: Any) -> None:
    import shutil

    repo = treeshard.Repository(tmp_path / "repo")
    repo.save(_forest(data, 2))
    repo.set_alias("production", "v1")
    aliases = tmp_path / "repo" / "aliases"
    shutil.copy(aliases / "production.json", aliases / "staging.json")
    with pytest.raises(FormatError) as excinfo:
        repo.load("staging")
    assert str(excinfo.value) == (
        f"{aliases / 'staging.json'}: the document belongs to alias 'production', not 'staging' (a copied file?): "
        "set 'staging' with `treeshard alias` or Repository.set_alias instead"
    )


def test_delete_an_alias(repo: treeshard.Repository, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An alias could be moved but never removed: a stale one (canary) kept its version from being deleted."""
    repo.save(_forest(data, 2))
    repo.save(_forest(data, 3))
    repo.set_alias("canary", "v1")
    repo.set_alias("production", "v2")
    with pytest.raises(AliasConflictError) as excinfo:
        repo.delete_alias("canary", expect="v2")
    assert str(excinfo.value) == f"{repo.location}: alias 'canary' names v1, expected it to name v2"
    assert repo.delete_alias("canary", expect="v1") == "v1"
    assert repo.aliases() == {"production": 2}
    with pytest.raises(RefNotFoundError) as excinfo:
        repo.delete_alias("canary")
    assert str(excinfo.value) == f"{repo.location}: no alias 'canary'"
    repo.delete("v1")
    # A move that read the alias before another process removed it: retried as a new alias.
    other = treeshard.Repository(repo.location, **_url_and_options(repo))
    _before_the_next_write(monkeypatch, repo, lambda: other.delete_alias("production"))
    repo.set_alias("production", "v2")
    assert repo.aliases() == {"production": 2}
    assert repo.alias_history("production") == [2]


def test_delete_an_alias_from_the_command_line(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    location = str(tmp_path / "repo")
    treeshard.Repository(location).save(_forest(data, 2))
    assert main(["alias", location, "canary", "v1"]) == 0
    assert main(["alias", location, "canary", "--delete", "--expect", "v1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["canary -> v1", "deleted alias canary (it named v1)"]
    assert main(["alias", location, "canary", "--delete"]) == 1
    assert capsys.readouterr().err == f"error: {location}: no alias 'canary'\n"
    assert main(["alias", location, "canary", "v1", "--delete"]) == 2
    assert capsys.readouterr().err == "error: --delete takes no VERSION\n"

"""Content digests, signatures, ``treeshard verify`` and ``treeshard sign``."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import treeshard
from treeshard import IntegrityError, MissingDependencyError, SignatureError, integrity
from treeshard.cli import main as cli
from treeshard.spec import DIGEST_KEY, SIGNATURE_KEY
from treeshard.storage.router import open_source

pytest.importorskip("cryptography")

X = np.random.RandomState(0).normal(size=(200, 4))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)


@pytest.fixture(scope="module")
def model():
    return RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, Y)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("alice", "mallory"):
        private, public = integrity.generate_key_pair()
        (folder / f"{name}.pem").write_bytes(private)
        (folder / f"{name}.pub.pem").write_bytes(public)
        out[name] = (folder / f"{name}.pem", folder / f"{name}.pub.pem")
    return out


def saved(model, tmp_path: Path, kind: str) -> Path:
    path = tmp_path / ("model.zip" if kind == "zip" else "model")
    treeshard.save(model, path)
    return path


def verify(path: Path, **kwargs) -> None:
    store, _ = open_source(path)
    try:
        integrity.verify_store(store, **kwargs)
    finally:
        store.close()


def chunk_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and "/c/" in p.as_posix())


# --------------------------------------------------------------------------- digest
@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_fresh_store_verifies(model, tmp_path, kind):
    path = saved(model, tmp_path, kind)
    verify(path)
    assert cli(["verify", str(path)]) == 0


def test_memory_store_digest_and_verify(model):
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    integrity.verify_store(store)
    record = json.loads(integrity._get(open_source(store)[0], DIGEST_KEY))
    assert set(record) == {"treeshard_digest", "algorithm", "config", "files", "arrays", "digest"}
    assert "nodes/threshold" in record["arrays"] and "c/0" in record["arrays"]["nodes/threshold"]["chunks"]


def test_digest_file_is_the_canonical_json_of_the_record(model):
    """Saves write ``treeshard.sha256`` with the record's members encoded once: the canonical bytes."""
    from treeshard.saving import encode_files
    from treeshard.spec import canonical_json

    files = encode_files(model)
    record = json.loads(files[DIGEST_KEY])
    assert files[DIGEST_KEY] == canonical_json(record)
    body = {key: value for key, value in record.items() if key != "digest"}
    assert record["digest"] == integrity._sha256(canonical_json(body))
    arrays = {name: {chunk: (entry["sha256"], entry["inner"]) for chunk, entry in array["chunks"].items()} for name, array in record["arrays"].items()}
    config = json.loads(files["zarr.json"])["attributes"]["treeshard"]
    del files[DIGEST_KEY]
    assert integrity.digest_file(files, config=config, arrays=arrays) == canonical_json(
        integrity.digest_of_files(files, config=config, arrays=arrays)
    )


def test_digest_is_independent_of_store_kind(model, tmp_path):
    a = integrity.compute_digest(zarr.storage.LocalStore(saved(model, tmp_path, "directory")))
    b = integrity.compute_digest(zarr.storage.LocalStore(saved(model, tmp_path / "again", "directory")))
    assert a["files"]["nodes/threshold/c/0"] == b["files"]["nodes/threshold/c/0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 200 + "]" * 200, r"^nodes/threshold/zarr\.json: not valid JSON \(JSON nested deeper than 96 levels\)$"),
        ("{", r"^nodes/threshold/zarr\.json: not valid JSON \(Expecting property name"),
    ],
)
def test_digest_of_malformed_metadata_names_the_document(model, tmp_path, text, message):
    """``compute_digest`` (``treeshard sign``) parses with the reader's limits: never a RecursionError."""
    path = saved(model, tmp_path, "directory")
    (path / "nodes" / "threshold" / "zarr.json").write_text(text)
    with pytest.raises(treeshard.errors.FormatError, match=message):
        integrity.compute_digest(zarr.storage.LocalStore(path))


def test_every_single_byte_corruption_of_a_chunk_is_detected(model, tmp_path):
    path = saved(model, tmp_path, "directory")
    rng = random.Random(0)
    files = chunk_files(path)
    for _ in range(40):
        target = rng.choice(files)
        original = target.read_bytes()
        position = rng.randrange(len(original))
        corrupt = bytearray(original)
        corrupt[position] ^= rng.randrange(1, 256)
        target.write_bytes(bytes(corrupt))
        array = target.relative_to(path).as_posix().split("/c/")[0]
        with pytest.raises(IntegrityError, match=f"array '{array}', shard") as caught:
            verify(path)
        assert not isinstance(caught.value, SignatureError)
        target.write_bytes(original)
    verify(path)


def test_corrupt_inner_chunk_is_named(model, tmp_path):
    path = saved(model, tmp_path, "directory")
    shard = path / "nodes" / "value" / "c" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"array 'nodes/value', shard 'c/0/0'.*inner chunk\(s\) 0"):
        verify(path)
    data[3] ^= 0xFF
    data[-5] ^= 0x01  # inside the shard index
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="shard index"):
        verify(path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "nodes" / "feature" / "c" / "0").unlink(), r"array 'nodes/feature', shard 'c/0'.*missing"),
        (lambda p: (p / "nodes" / "feature" / "c" / "1").write_bytes(b"x"), r"nodes/feature/c/1: not part of the saved model"),
        (lambda p: _truncate(p / "nodes" / "impurity" / "c" / "0"), r"array 'nodes/impurity'.*expected \d+ \(truncated"),
        (lambda p: _edit_json(p / "zarr.json", lambda d: d["attributes"]["treeshard"]["metadata"].update(x=1)), r"zarr.json: .*expected|zarr.json: content differs"),
        (lambda p: _edit_json(p / "nodes" / "threshold" / "zarr.json", lambda d: d.update(fill_value=1.0)), r"array 'nodes/threshold', metadata"),
        (lambda p: (p / DIGEST_KEY).unlink(), "saved without a content digest"),
        (lambda p: _edit_json(p / DIGEST_KEY, lambda d: d["files"].pop("zarr.json")), "does not match its own 'digest'"),
        (lambda p: (p / DIGEST_KEY).write_bytes(b"[" * 100_000), "not valid JSON|not a format"),
        (lambda p: (p / DIGEST_KEY).write_text('{"treeshard_digest": 1, "algorithm": "md5"}'), "not a format-1 sha256"),
    ],
    ids=["missing-shard", "extra-shard", "truncated", "config", "array-metadata", "no-digest", "edited-record", "deep-json", "algorithm"],
)
def test_damage_is_reported(model, tmp_path, damage, message):
    path = saved(model, tmp_path, "directory")
    damage(path)
    with pytest.raises(IntegrityError, match=message):
        verify(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(path.read_bytes())
    edit(document)
    path.write_text(json.dumps(document))


def test_gradient_boosting_and_zstd(tmp_path):
    gb = GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, Y)
    path = tmp_path / "gb.zip"
    treeshard.save(gb, path, codec="zstd")
    verify(path)


# --------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_sign_and_verify(model, tmp_path, keys, kind):
    path = saved(model, tmp_path, kind)
    alice_private, alice_public = keys["alice"]
    with pytest.raises(SignatureError, match="not signed"):
        verify(path, public_key=alice_public)
    assert integrity.sign_store(path, alice_private) == integrity.key_id(alice_public)
    verify(path, public_key=alice_public)
    verify(path, public_key=alice_public.read_bytes())
    verify(path, public_key=alice_public.read_text())
    verify(path)  # the signature is not part of the digest
    with pytest.raises(SignatureError, match="signed by key .* not by the expected key"):
        verify(path, public_key=keys["mallory"][1])
    np.testing.assert_array_equal(treeshard.load(path).predict(X), model.predict(X))
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        assert names[-1] == "zarr.json" and names.count(SIGNATURE_KEY) == 1
        assert not list(tmp_path.glob(".model.zip.tmp*"))


def test_resigning_replaces_the_signature(model, tmp_path, keys):
    path = saved(model, tmp_path, "zip")
    integrity.sign_store(path, keys["alice"][0])
    integrity.sign_store(path, keys["mallory"][0])
    verify(path, public_key=keys["mallory"][1])
    with pytest.raises(SignatureError):
        verify(path, public_key=keys["alice"][1])


def test_tampered_signed_store(model, tmp_path, keys):
    path = saved(model, tmp_path, "directory")
    integrity.sign_store(path, keys["alice"][0])
    shard = path / "nodes" / "threshold" / "c" / "0"
    data = bytearray(shard.read_bytes())
    data[10] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"(?s)signed content.*array 'nodes/threshold'"):
        verify(path, public_key=keys["alice"][1])


def test_forged_digest_record_fails_the_signature(model, tmp_path, keys):
    """An attacker who edits a chunk and recomputes the digest still cannot sign."""
    path = saved(model, tmp_path, "directory")
    integrity.sign_store(path, keys["alice"][0])
    shard = path / "nodes" / "threshold" / "c" / "0"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    forged = integrity.compute_digest(zarr.storage.LocalStore(path))
    (path / DIGEST_KEY).write_bytes(integrity.canonical_json(forged))
    verify(path)  # consistent with itself
    with pytest.raises(SignatureError, match="modified after signing"):
        verify(path, public_key=keys["alice"][1])


def test_resaving_drops_the_old_signature(model, tmp_path, keys):
    path = saved(model, tmp_path, "directory")
    integrity.sign_store(path, keys["alice"][0])
    treeshard.save(model, path, overwrite=True)
    assert not (path / SIGNATURE_KEY).exists()
    with pytest.raises(SignatureError, match="not signed"):
        verify(path, public_key=keys["alice"][1])


def test_refuses_to_sign_a_corrupt_store(model, tmp_path, keys):
    path = saved(model, tmp_path, "directory")
    (path / "nodes" / "feature" / "c" / "0").write_bytes(b"junk")
    with pytest.raises(IntegrityError, match="refusing to sign"):
        integrity.sign_store(path, keys["alice"][0])
    assert not (path / SIGNATURE_KEY).exists()


@pytest.mark.parametrize(
    "signature, message",
    [(b"{", "malformed"), (b'{"algorithm": "rsa"}', "malformed"), (b'{"algorithm": "ed25519", "signature": "!!"}', "malformed")],
)
def test_malformed_signature_file(model, tmp_path, keys, signature, message):
    path = saved(model, tmp_path, "directory")
    (path / SIGNATURE_KEY).write_bytes(signature)
    with pytest.raises(SignatureError, match=message):
        verify(path, public_key=keys["alice"][1])


def test_bad_keys(model, tmp_path, keys):
    path = saved(model, tmp_path, "directory")
    with pytest.raises(SignatureError, match="not a PEM public key"):
        verify(path, public_key=b"not a key")
    with pytest.raises(SignatureError, match="not a usable PEM private key"):
        integrity.sign_store(path, keys["alice"][1])  # a public key where a private one goes
    with pytest.raises(SignatureError, match="cannot read key file"):
        integrity.sign_store(path, tmp_path / "nope.pem")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(SignatureError, match="not an Ed25519 public key"):
        verify(path, public_key=pem)


def test_missing_cryptography_names_the_extra(model, tmp_path, monkeypatch):
    path = saved(model, tmp_path, "directory")
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    with pytest.raises(MissingDependencyError, match=r"pip install treeshard\[sign\]"):
        verify(path, public_key=b"x")
    assert isinstance(MissingDependencyError("x"), ImportError)


# --------------------------------------------------------------------------- CLI
def test_cli_verify_and_sign(model, tmp_path, keys, capsys):
    path = saved(model, tmp_path, "zip")
    assert cli(["verify", str(path), "--public-key", str(keys["alice"][1])]) == 1
    assert "not signed" in capsys.readouterr().out
    assert cli(["sign", str(path), "--key", str(keys["alice"][0])]) == 0
    assert integrity.key_id(keys["alice"][1]) in capsys.readouterr().out
    assert cli(["verify", str(path), "--public-key", str(keys["alice"][1])]) == 0
    assert capsys.readouterr().out.startswith(f"OK {path}")
    assert cli(["verify", str(path), "--public-key", str(keys["mallory"][1])]) == 1
    assert "not by the expected key" in capsys.readouterr().out


def test_cli_verify_names_the_corrupt_chunk(model, tmp_path, capsys):
    path = saved(model, tmp_path, "directory")
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    shard = copy / "nodes" / "impurity" / "c" / "0"
    data = bytearray(shard.read_bytes())
    data[0] ^= 0x80
    shard.write_bytes(bytes(data))
    assert cli(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"CORRUPT {copy}") and "array 'nodes/impurity', shard 'c/0'" in out


def _flip_zip_member_byte(path: Path, key: str) -> None:
    """Flip the first data byte of the stored member ``key``: its CRC-32 no longer matches."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(key).header_offset
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[offset + 26 : offset + 28], "little")  # the local header's own lengths
    extra_length = int.from_bytes(data[offset + 28 : offset + 30], "little")
    data[offset + 30 + name_length + extra_length] ^= 0xFF
    path.write_bytes(bytes(data))


def test_cli_verify_names_an_unreadable_key_once(model, tmp_path, capsys):
    path = saved(model, tmp_path, "zip")
    _flip_zip_member_byte(path, "nodes/impurity/c/0")
    assert cli(["verify", str(path)]) == 1
    assert capsys.readouterr().out == (
        f"CORRUPT {path}: store differs from the digest recorded at save time (1 problem(s)):\n"
        "  array 'nodes/impurity', shard 'c/0' (nodes/impurity/c/0): unreadable zip member (Bad CRC-32)\n"
    )


def test_cli_entry_point_exit_codes(model, tmp_path):
    path = saved(model, tmp_path, "directory")
    run = [sys.executable, "-m", "treeshard.cli", "verify"]
    assert subprocess.run([*run, str(path)], check=False, capture_output=True).returncode == 0
    (path / "nodes" / "feature" / "c" / "0").write_bytes(b"")
    result = subprocess.run([*run, str(path)], check=False, capture_output=True, text=True)
    assert result.returncode == 1 and "nodes/feature" in result.stdout


def test_verify_paths_without_zarr_stores(model, tmp_path, keys, capsys):
    for kind in ("directory", "zip"):
        path = saved(model, tmp_path / kind, kind)
        integrity.verify_store(path)
        integrity.sign_store(path, keys["alice"][0])
        integrity.verify_store(str(path), public_key=keys["alice"][1])
    with pytest.raises(treeshard.StoreNotFoundError):
        integrity.verify_store(tmp_path / "missing")
    assert cli(["verify", str(tmp_path / "missing")]) == 1
    assert "no treeshard store" in capsys.readouterr().err


def test_load_with_verify_and_public_key(model, tmp_path, keys):
    path = saved(model, tmp_path, "zip")
    np.testing.assert_array_equal(treeshard.load(path, verify=True).predict(X), model.predict(X))
    with pytest.raises(SignatureError, match="not signed"):
        treeshard.load(path, public_key=keys["alice"][1])
    integrity.sign_store(path, keys["alice"][0])
    np.testing.assert_array_equal(treeshard.load(path, public_key=keys["alice"][1]).predict(X), model.predict(X))
    with pytest.raises(SignatureError, match="not by the expected key"):
        treeshard.load(path, public_key=keys["mallory"][1])
    directory = saved(model, tmp_path / "d", "directory")
    (directory / "fitted" / "tree_random_state" / "c" / "0").write_bytes(b"\x00" * 8)
    with pytest.raises(IntegrityError, match="fitted/tree_random_state"):
        treeshard.load(directory, verify=True)


# --------------------------------------------------------------------------- every chunk bound to its place
# Issue 11: each chunk's crc32c holds wherever the chunk is put; the sha256 the digest record
# holds for its place does not. Uncompressed chunks of 32 nodes, 2 to a shard: shard files
# of one column (and of two int32 columns) have equal sizes, as a sync tool would swap them.
def _small_chunk_store(model, path: Path) -> Path:
    from helpers.counting_store import save_with_small_chunks

    save_with_small_chunks(model, path, chunk_rows=32, chunks_per_shard=2, codec="none")
    return path


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """``(model, directory store)`` of a forest whose node columns span several shards."""
    model = RandomForestClassifier(n_estimators=6, max_depth=6, random_state=0).fit(X, Y)
    return model, _small_chunk_store(model, tmp_path_factory.mktemp("chunked") / "model")


def _swap(folder: Path, a: str, b: str) -> None:
    first, second = folder / a, folder / b
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def _copy(folder: Path, source: str, target: str) -> None:
    (folder / target).write_bytes((folder / source).read_bytes())


def _message(array: str, shard: str, chunk: int) -> str:
    return f"{array}: chunk {chunk} of shard {shard} does not match its sha256 in treeshard.sha256 (a swapped, duplicated, misplaced or changed chunk)"


PLACE_EDITS = {
    # edit of the directory, the error a read of the edited chunk raises
    "swapped shards": (lambda d: _swap(d, "nodes/threshold/c/0", "nodes/threshold/c/1"), _message("nodes/threshold", "nodes/threshold/c/0", 0)),
    "duplicated shard": (lambda d: _copy(d, "nodes/threshold/c/0", "nodes/threshold/c/1"), _message("nodes/threshold", "nodes/threshold/c/1", 0)),
    "misplaced shard (another array's)": (
        lambda d: _copy(d, "nodes/feature/c/0", "nodes/left_child_offset/c/0"),
        _message("nodes/left_child_offset", "nodes/left_child_offset/c/0", 0),
    ),
}


def _edited(chunked, tmp_path: Path, edit: str, kind: str) -> Path:
    _, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    PLACE_EDITS[edit][0](folder)
    if kind == "directory":
        return folder
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:  # stored members, zarr.json last (as treeshard writes)
        for file in sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.name == "zarr.json" and p.parent == folder):
            archive.write(file, file.relative_to(folder).as_posix())
    return path


def test_place_edits_keep_sizes_and_checksums(chunked, tmp_path):
    """The edits keep sizes and valid crc32c: unchecked, swapped or duplicated thresholds
    load as a different model, and another array's chunk is caught only if its values
    happen to make invalid trees."""
    model, folder = chunked
    for a, b in [("nodes/threshold/c/0", "nodes/threshold/c/1"), ("nodes/feature/c/0", "nodes/left_child_offset/c/0")]:
        assert (folder / a).stat().st_size == (folder / b).stat().st_size
    for edit in ("swapped shards", "duplicated shard"):
        loaded = treeshard.load(_edited(chunked, tmp_path / edit, edit, "directory"), lazy=False, check_chunks=False)
        assert not np.array_equal(loaded.predict_proba(X), model.predict_proba(X)), edit
    with pytest.raises(treeshard.TreeStructureError, match="exactly one child is missing"):
        treeshard.load(_edited(chunked, tmp_path / "misplaced", "misplaced shard (another array's)", "directory"), lazy=False, check_chunks=False)


@pytest.mark.parametrize("kind", ["directory", "zip"])
@pytest.mark.parametrize("edit", list(PLACE_EDITS))
def test_a_chunk_out_of_place_fails_every_read_path(chunked, tmp_path, edit, kind):
    model, _ = chunked
    path = _edited(chunked, tmp_path, edit, kind)
    message = PLACE_EDITS[edit][1]
    assert not (tmp_path / "model" / "treeshard.sig").exists()
    with pytest.raises(IntegrityError) as eager:
        treeshard.load(path, lazy=False)
    assert str(eager.value) == message
    with pytest.raises(IntegrityError) as predictor:
        treeshard.Predictor(path)
    assert str(predictor.value) == message
    lazy = treeshard.load(path)  # reads the config and the tree offsets only
    with pytest.raises(IntegrityError) as every_tree:
        list(lazy.estimators_)
    assert str(every_tree.value) == message
    with pytest.raises(IntegrityError) as small_batch:  # the flat engine's reads (treeshard.dispatch)
        treeshard.load(path).predict(X[:1])
    assert str(small_batch.value) == message
    with pytest.raises(IntegrityError) as partial:
        treeshard.load(path, estimators=list(range(len(model.estimators_))), lazy=False)
    assert str(partial.value) == message


def test_the_unedited_chunks_of_a_lazy_model_still_read(chunked, tmp_path):
    """Checking is per chunk: a lazy model reads every tree whose chunks are in place."""
    model, _ = chunked
    path = _edited(chunked, tmp_path, "duplicated shard", "directory")  # nodes/threshold/c/1 is wrong
    lazy = treeshard.load(path)
    tree_ptr = zarr.open_array(zarr.storage.LocalStore(path), path="nodes/tree_ptr", mode="r")[:]
    first_bad = int(np.searchsorted(tree_ptr, 64, side="right")) - 1  # the tree holding node 64 (shard 1)
    assert first_bad >= 1
    for i in range(first_bad):
        np.testing.assert_array_equal(lazy.estimators_[i].tree_.threshold, model.estimators_[i].tree_.threshold)
    with pytest.raises(IntegrityError, match=re.escape(PLACE_EDITS["duplicated shard"][1])):
        lazy.estimators_[first_bad]


def test_swapped_shards_of_two_arrays_with_other_sizes(chunked, tmp_path):
    _, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    _swap(folder, "nodes/tree_ptr/c/0", "fitted/tree_random_state/c/0")
    with pytest.raises(IntegrityError, match="^nodes/tree_ptr: "):
        treeshard.load(folder)


def test_an_edited_config_fails_at_open(chunked, tmp_path):
    from helpers.stores import edit_config

    _, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    edit_config(folder, lambda config: config["metadata"].update(note="changed"))
    message = "zarr.json: the config or array metadata differ from what treeshard.sha256 recorded at save time"
    with pytest.raises(IntegrityError, match=f"^{re.escape(message)}$"):
        treeshard.open(folder)
    with pytest.raises(IntegrityError, match=f"^{re.escape(message)}$"):
        treeshard.Predictor(folder)


def test_an_edited_digest_record_fails_at_open(chunked, tmp_path):
    _, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    record = json.loads((folder / DIGEST_KEY).read_text())
    inner = record["arrays"]["nodes/threshold"]["chunks"]["c/0"]["inner"]
    inner[0], inner[1] = inner[1], inner[0]
    (folder / DIGEST_KEY).write_text(json.dumps(record))
    with pytest.raises(IntegrityError, match=r"^treeshard\.sha256: the record does not match its own 'digest' \(the record itself was edited\)$"):
        treeshard.load(folder)


def test_a_saved_digest_record_is_checked_from_its_own_text(chunked, monkeypatch):
    from treeshard.storage import digest

    _, pristine = chunked
    raw = (pristine / DIGEST_KEY).read_bytes()

    def not_encoded(value):  # type: ignore[no-untyped-def]
        raise AssertionError("a canonical record is not encoded again")

    monkeypatch.setattr(digest, "canonical_json", not_encoded)
    record = digest.parse_digest(raw)
    assert record.raw == raw and record.digest == json.loads(raw)["digest"]


def test_a_digest_record_in_other_json_text_is_checked_by_its_content(chunked):
    from treeshard.storage.digest import parse_digest

    _, pristine = chunked
    document = json.loads((pristine / DIGEST_KEY).read_bytes())
    spaced = json.dumps(document, indent=1).encode()  # the same record, other text
    assert parse_digest(spaced).digest == document["digest"]
    document["files"].pop("zarr.json")
    with pytest.raises(IntegrityError, match=r"^treeshard\.sha256: the record does not match its own 'digest' \(the record itself was edited\)$"):
        parse_digest(json.dumps(document, indent=1).encode())
    # The digest member moved into an array's entry: the record has none of its own
    document = json.loads((pristine / DIGEST_KEY).read_bytes())
    document["arrays"]["nodes/threshold"]["digest"] = document.pop("digest")
    with pytest.raises(IntegrityError, match=r"^treeshard\.sha256: digest: not a sha256 hex digest$"):
        parse_digest(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())


def test_a_store_without_a_digest_record_loads_with_a_warning(chunked, tmp_path):
    model, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    (folder / DIGEST_KEY).unlink()
    with pytest.warns(treeshard.UnverifiedStoreWarning, match="no treeshard.sha256 digest record") as record:
        loaded = treeshard.load(folder, lazy=False)
    assert len(record) == 1 and record[0].filename == __file__  # names the caller's line
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with pytest.warns(treeshard.UnverifiedStoreWarning):
        np.testing.assert_array_equal(treeshard.Predictor(folder).predict_proba(X), model.predict_proba(X))


def test_check_chunks_false_skips_the_record(chunked, tmp_path):
    """The opt-out for trusted files: no record read, no warning, and (what it costs) no check."""
    import warnings

    model, _ = chunked
    path = _edited(chunked, tmp_path, "duplicated shard", "directory")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = treeshard.load(path, lazy=False, check_chunks=False)
        predictor = treeshard.Predictor(path, check_chunks=False)
    assert not np.array_equal(loaded.predict_proba(X), model.predict_proba(X))  # a different model, unnoticed
    np.testing.assert_array_equal(predictor.predict_proba(X), loaded.predict_proba(X))
    (path / DIGEST_KEY).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        treeshard.open(path, check_chunks=False).close()


# --------------------------------------------------------------------------- a signature authenticates what a lazy load reads
def test_a_signed_store_authenticates_each_chunk_a_lazy_load_reads(chunked, tmp_path, keys):
    model, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    integrity.sign_store(folder, keys["alice"][0])
    lazy = treeshard.load(folder, public_key=keys["alice"][1])  # the record's signature only: no tree read
    np.testing.assert_array_equal(lazy.estimators_[0].tree_.threshold, model.estimators_[0].tree_.threshold)
    # A chunk changed after signing: the signature still holds (the record is intact) and the
    # lazy model refuses the chunk when it reads it.
    _copy(folder, "nodes/threshold/c/0", "nodes/threshold/c/1")
    lazy = treeshard.load(folder, public_key=keys["alice"][1])
    with pytest.raises(IntegrityError, match=re.escape(PLACE_EDITS["duplicated shard"][1])):
        list(lazy.estimators_)
    # The record rewritten to match (what works on an unsigned store): the signature fails.
    from helpers.stores import reseal

    sig = (folder / SIGNATURE_KEY).read_bytes()
    reseal(folder)
    (folder / SIGNATURE_KEY).write_bytes(sig)
    with pytest.raises(SignatureError, match=r"invalid signature: treeshard.sha256 was modified after signing"):
        treeshard.load(folder, public_key=keys["alice"][1])
    with pytest.raises(SignatureError, match=r"^cannot check the signature: check_chunks=False"):
        treeshard.load(pristine, public_key=keys["alice"][1], check_chunks=False)


# --------------------------------------------------------------------------- the Predictor requires a signature
@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_predictor_refuses_a_store_not_signed_by_the_key(model, tmp_path, keys, kind):
    """As load(public_key=...): a serverless handler can insist on a signed model."""
    path = saved(model, tmp_path, kind)
    alice_private, alice_public = keys["alice"]
    with pytest.raises(SignatureError, match=rf"^store is not signed \(no {re.escape(SIGNATURE_KEY)}\); expected a signature by key "):
        treeshard.Predictor(path, public_key=alice_public)
    integrity.sign_store(path, alice_private)
    np.testing.assert_array_equal(treeshard.Predictor(path, public_key=alice_public).predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(treeshard.Predictor(path, public_key=alice_public.read_bytes()).predict(X), model.predict(X))
    with pytest.raises(SignatureError, match="signed by key .* not by the expected key"):
        treeshard.Predictor(path, public_key=keys["mallory"][1])
    with pytest.raises(SignatureError, match=r"^cannot check the signature: check_chunks=False"):
        treeshard.Predictor(path, public_key=alice_public, check_chunks=False)


def test_predictor_of_a_signed_store_refuses_a_chunk_changed_after_signing(chunked, tmp_path, keys):
    _, pristine = chunked
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    integrity.sign_store(folder, keys["alice"][0])
    _copy(folder, "nodes/threshold/c/0", "nodes/threshold/c/1")
    with pytest.raises(IntegrityError, match=re.escape(PLACE_EDITS["duplicated shard"][1])):
        treeshard.Predictor(folder, public_key=keys["alice"][1])

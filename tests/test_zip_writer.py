"""The ``.zip`` target: members packed as zipfile packs them, and the overwrite check that reads
an existing zip once per save."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
import zarr
from sklearn.tree import DecisionTreeClassifier

import treeshard
import treeshard.storage.targets as targets
from treeshard import StoreExistsError
from treeshard.saving import encode_files
from treeshard.storage.local import check_replaceable_path

X = np.random.RandomState(0).normal(size=(300, 6))
Y = (X[:, 0] - X[:, 2] > 0).astype(int)
STAMP = (2026, 11, 29, 7, 15, 33)  # odd seconds: zip times count two-second steps


@pytest.fixture(scope="module")
def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit(X, Y)


@pytest.fixture(scope="module")
def other_tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)


def _zipfile_bytes(files: dict, keys: list[str], stamp: tuple[int, ...]) -> bytes:
    """What ``zipfile`` writes for ``files``, member by member as the writer used to add them."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key in keys:
            info = zipfile.ZipInfo(key, date_time=stamp)
            info.external_attr = 0o644 << 16
            parts = [files[key]] if isinstance(files[key], bytes) else files[key]
            info.file_size = sum(map(len, parts))
            with archive.open(info, "w") as member:
                for part in parts:
                    member.write(part)
    return sink.getvalue()


CASES = {
    "parts and an empty member": {"a/c/0": [b"chunk", b"", b"crc!"], "empty": b"", "zarr.json": b"{}"},
    "one member": {"zarr.json": b'{"node_type": "group"}'},
    "no member": {},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_small_zip_is_what_zipfile_writes(case):
    files = CASES[case]
    keys = targets._ordered(files)
    assert targets.small_zip(files, keys, STAMP) == _zipfile_bytes(files, keys, STAMP)


def test_small_zip_of_a_store_is_what_zipfile_writes_and_plain_zarr_reads(tree, tmp_path):
    files = encode_files(tree)
    keys = targets._ordered(files)
    packed = targets.small_zip(files, keys, STAMP)
    assert packed == _zipfile_bytes(files, keys, STAMP)
    path = tmp_path / "m.zip"
    path.write_bytes(packed)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == keys and keys[-1] == "zarr.json"
    group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    assert np.array_equal(group["nodes/feature"][:], tree.tree_.feature)


@pytest.mark.parametrize(
    ("files", "stamp"),
    [({"é/zarr.json": b"{}"}, STAMP), ({"a\x00b": b""}, STAMP), ({"zarr.json": b"{}"}, (1979, 12, 31, 0, 0, 0))],
    ids=["non-ascii name", "nul in a name", "date before 1980"],
)
def test_small_zip_leaves_to_zipfile_what_zipfile_rewrites(files, stamp):
    assert targets.small_zip(files, targets._ordered(files), stamp) is None


def test_small_zip_leaves_to_zipfile_a_zip_that_needs_zip64_records():
    files = {f"k{i}": b"" for i in range(0xFFFF)}
    assert targets.small_zip(files, sorted(files), STAMP) is None


def test_a_zip_is_the_same_file_by_either_path(tree, tmp_path, monkeypatch):
    """The packed path (a small store) and zipfile (past ZIP_IN_MEMORY_BYTES) write the same file."""
    monkeypatch.setattr(time, "localtime", lambda *args: time.struct_time((*STAMP, 6, 333, 0)))
    files = encode_files(tree)
    targets._write_zip(files, tmp_path / "packed.zip")
    monkeypatch.setattr(targets, "ZIP_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(targets, "small_zip", lambda *args: pytest.fail("a large store is written by zipfile"))
    targets._write_zip(files, tmp_path / "zipfile.zip")
    assert (tmp_path / "packed.zip").read_bytes() == (tmp_path / "zipfile.zip").read_bytes()
    assert np.array_equal(treeshard.load(tmp_path / "packed.zip").predict(X), tree.predict(X))


# --------------------------------------------------------------------------- the overwrite check
def _count_zip_opens(monkeypatch) -> list[object]:
    opened: list[object] = []
    original = zipfile.ZipFile.__init__

    def counting(self, file, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(file)
        return original(self, file, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting)
    return opened


def test_overwriting_a_zip_reads_the_old_one_once(tree, other_tree, tmp_path, monkeypatch):
    path = tmp_path / "m.zip"
    treeshard.save(tree, path)
    opened = _count_zip_opens(monkeypatch)
    treeshard.save(other_tree, path, overwrite=True)
    assert opened == [path]
    assert np.array_equal(treeshard.load(path).predict(X), other_tree.predict(X))


def test_a_fresh_zip_save_reads_no_zip(tree, tmp_path, monkeypatch):
    opened = _count_zip_opens(monkeypatch)
    treeshard.save(tree, tmp_path / "m.zip")
    assert opened == []


def test_overwrite_refuses_a_zip_that_is_not_a_store(tree, tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday.jpg", b"jpeg")
    before = path.read_bytes()
    with pytest.raises(StoreExistsError, match=r"photos.zip' is not a treeshard store; refusing to replace it$"):
        treeshard.save(tree, path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.zip"]


def test_overwrite_refuses_a_directory_named_like_a_zip(tree, tmp_path):
    path = tmp_path / "m.zip"
    path.mkdir()
    (path / "notes.txt").write_text("keep")
    with pytest.raises(StoreExistsError, match=r"m.zip' is not a zip file; refusing to replace it$"):
        treeshard.save(tree, path, overwrite=True)
    assert (path / "notes.txt").read_text() == "keep"


def test_a_target_replaced_while_saving_is_checked_again(tree, other_tree, tmp_path, monkeypatch):
    """The check before the rename reads the target again once it changed since the first check."""
    path = tmp_path / "m.zip"
    treeshard.save(tree, path)
    write_zip = targets._write_zip

    def meanwhile(files, zip_path):
        write_zip(files, zip_path)
        path.write_bytes(b"someone else's file")

    monkeypatch.setattr(targets, "_write_zip", meanwhile)
    with pytest.raises(StoreExistsError, match=r"m.zip' is not a zip file; refusing to replace it$"):
        treeshard.save(other_tree, path, overwrite=True)
    assert path.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"], "no temporary files left behind"


def test_a_target_created_while_saving_is_not_replaced(tree, tmp_path, monkeypatch):
    path = tmp_path / "m.zip"
    write_zip = targets._write_zip

    def meanwhile(files, zip_path):
        write_zip(files, zip_path)
        path.write_bytes(b"someone else's file")

    monkeypatch.setattr(targets, "_write_zip", meanwhile)
    with pytest.raises(StoreExistsError, match=r"m.zip' exists; pass overwrite=True to replace it$"):
        treeshard.save(tree, path)
    assert path.read_bytes() == b"someone else's file"


def test_check_replaceable_path_returns_a_stamp_that_spares_the_second_read(tree, tmp_path, monkeypatch):
    path = tmp_path / "m.zip"
    assert check_replaceable_path(path, overwrite=True) is None
    treeshard.save(tree, path)
    stamp = check_replaceable_path(path, overwrite=True)
    assert stamp is not None
    opened = _count_zip_opens(monkeypatch)
    assert check_replaceable_path(path, overwrite=True, verified=stamp) == stamp
    assert opened == []
    path.write_bytes(b"not a zip")  # a new stamp: read again
    with pytest.raises(StoreExistsError, match=r"is not a zip file; refusing to replace it$"):
        check_replaceable_path(path, overwrite=True, verified=stamp)
    with pytest.raises(StoreExistsError, match=r"exists; pass overwrite=True to replace it$"):
        check_replaceable_path(path, overwrite=False, verified=stamp)


def test_small_zip_leaves_to_zipfile_what_needs_zip64_fields(monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    files = {"a": b"x" * 900}
    assert targets.small_zip(files, ["a"], STAMP) == _zipfile_bytes(files, ["a"], STAMP)
    assert targets.small_zip({"a": b"x" * 960}, ["a"], STAMP) is None  # zipfile's member rule: size * 1.05 > ZIP64_LIMIT
    assert targets.small_zip({"a": b"x" * 950}, ["a"], STAMP) is None  # the central directory would end past it

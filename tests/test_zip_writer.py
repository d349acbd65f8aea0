"""The ``.zip`` target: the overwrite check that reads an existing zip once per save."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

import treeshard
import treeshard.storage.targets as targets
from treeshard import StoreExistsError
from treeshard.storage.local import check_replaceable_path

X = np.random.RandomState(0).normal(size=(300, 6))
Y = (X[:, 0] - X[:, 2] > 0).astype(int)


@pytest.fixture(scope="module")
def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit(X, Y)


@pytest.fixture(scope="module")
def other_tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)


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


def _someone_writes_after_the_zip(monkeypatch, path) -> None:  # noqa: ANN001
    """Another process writes ``path`` once the save's temporary zip is written, before the rename."""
    write_zip = targets._write_zip

    def meanwhile(files, zip_path):  # noqa: ANN001, ANN202
        write_zip(files, zip_path)
        path.write_bytes(b"someone else's file")

    monkeypatch.setattr(targets, "_write_zip", meanwhile)


def test_a_target_replaced_while_saving_is_checked_again(tree, other_tree, tmp_path, monkeypatch):
    """The check before the rename reads the target again once it changed since the first check."""
    path = tmp_path / "m.zip"
    treeshard.save(tree, path)
    _someone_writes_after_the_zip(monkeypatch, path)
    with pytest.raises(StoreExistsError, match=r"m.zip' is not a zip file; refusing to replace it$"):
        treeshard.save(other_tree, path, overwrite=True)
    assert path.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"], "no temporary files left behind"


def test_a_target_created_while_saving_is_not_replaced(tree, tmp_path, monkeypatch):
    path = tmp_path / "m.zip"
    _someone_writes_after_the_zip(monkeypatch, path)
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

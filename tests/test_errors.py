"""The errors a user can meet: all exported, all documented, and helpful for common mistakes."""

from __future__ import annotations

import inspect
import pickle
import re
import zipfile
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

import treeshard
from treeshard import errors

README = Path(__file__).resolve().parents[1] / "README.md"
ERROR_CLASSES = [
    obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == errors.__name__ and issubclass(obj, Exception)
]


def test_every_error_is_exported_from_treeshard():
    assert sorted(errors.__all__) == sorted(cls.__name__ for cls in ERROR_CLASSES)
    for cls in ERROR_CLASSES:
        assert getattr(treeshard, cls.__name__) is cls
        assert cls.__name__ in treeshard.__all__


def test_every_error_is_listed_once_in_the_readme():
    text = README.read_text()
    section = text[text.index("### Errors") : text.index("## Serverless")]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    for cls in ERROR_CLASSES:
        if cls is errors.TreeshardError:
            assert "`treeshard.TreeshardError`" in section
        elif not issubclass(cls, Warning):
            assert len(re.findall(rf"`{cls.__name__}`", table)) == 1, cls.__name__


def test_every_public_name_resolves():
    for name in treeshard.__all__:
        assert getattr(treeshard, name) is not None, name
    assert treeshard.ConversionError.__mro__[1:3] == (treeshard.TreeshardError, ValueError)
    assert issubclass(treeshard.InvalidStoreError, TypeError)


@pytest.fixture(scope="module")
def model():
    X, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)


def hint(path: Path, kind: str) -> str:
    return (
        f"{str(path)!r} is neither a directory nor a .zip file: it looks like {kind}. Loading a pickle runs whatever "
        f"code it holds: if you made this file or fully trust it, convert it once with "
        f"`treeshard convert {str(path)!r} model.zip --trust-pickle`"
    )


def write_joblib(path: Path, model, compress) -> None:  # type: ignore[no-untyped-def]
    joblib.dump(model, path, compress=compress)


def write_pickle(path: Path, model, protocol) -> None:  # type: ignore[no-untyped-def]
    with open(path, "wb") as file:
        pickle.dump(model, file, protocol=protocol)


PICKLED = [
    ("model.joblib", write_joblib, 0, "a pickle (or uncompressed joblib) file"),
    ("model.joblib", write_joblib, 3, "a zlib-compressed joblib file"),
    ("model.joblib", write_joblib, ("gzip", 3), "a gzip-compressed joblib file"),
    ("model.pkl", write_joblib, ("bz2", 3), "a bz2-compressed joblib file"),
    ("model.pkl", write_joblib, ("xz", 3), "a xz-compressed joblib file"),
    ("model.pkl", write_pickle, 2, "a pickle (or uncompressed joblib) file"),
    ("model.pkl", write_pickle, 5, "a pickle (or uncompressed joblib) file"),
    ("model.bin", write_pickle, 4, "a pickle (or uncompressed joblib) file"),
]


@pytest.mark.parametrize(("name", "write", "option", "kind"), PICKLED)
@pytest.mark.parametrize("opener", ["load", "open", "Predictor", "verify"])
def test_a_pickle_given_by_mistake_points_to_convert(tmp_path, model, name, write, option, kind, opener):
    path = tmp_path / name
    write(path, model, option)
    with pytest.raises(treeshard.FormatError) as raised:
        getattr(treeshard, opener)(path)
    assert str(raised.value) == hint(path, kind)


def test_a_zip_without_the_zip_suffix_is_named(tmp_path):
    path = tmp_path / "model.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "{}")
    with pytest.raises(treeshard.FormatError) as raised:
        treeshard.load(path)
    assert str(raised.value) == f"{str(path)!r} is neither a directory nor a .zip file: it is a zip file; a treeshard zip store must be named *.zip"


@pytest.mark.parametrize("content", [b"", b"hello", b"\x78 but named .txt"])
def test_any_other_file_gets_the_plain_message(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(treeshard.FormatError) as raised:
        treeshard.load(path)
    assert str(raised.value) == f"{str(path)!r} is neither a directory nor a .zip file"

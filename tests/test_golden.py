"""Golden stores: stores written once by ``tests/golden/make_golden.py`` still load, forever.

Like numcodecs' ``check_backwards_compatibility``: the committed stores are
decoded on every run and every prediction compared with the committed
expected outputs. A failure here means a change broke stores that users
already have: fix the reader, never the golden files.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr

import treeshard
from treeshard import SklearnVersionWarning

GOLDEN = Path(__file__).resolve().parent / "golden"
FORMAT_DIRS = sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name.startswith("v"))
CASES = [(d, name) for d in FORMAT_DIRS for name in sorted(json.loads((d / "manifest.json").read_text())["cases"])]
IDS = [f"{d.name}-{name}" for d, name in CASES]


def load_golden(path, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        # Golden stores were written by some sklearn version; a newer one warns.
        warnings.simplefilter("ignore", SklearnVersionWarning)
        return treeshard.load(path, **kwargs)


def test_there_are_golden_stores_for_format_version_1():
    assert [d.name for d in FORMAT_DIRS][:1] == ["v1"]
    families = {json.loads((GOLDEN / "v1" / "manifest.json").read_text())["cases"][name]["estimator"] for _, name in CASES}
    assert {"RandomForestClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier", "GradientBoostingRegressor"} <= families
    assert {"DecisionTreeClassifier", "ExtraTreeRegressor"} <= families


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize(("directory", "name"), CASES, ids=IDS)
def test_golden_store_predicts_as_recorded(directory, name, lazy):
    manifest = json.loads((directory / "manifest.json").read_text())["cases"][name]
    with np.load(directory / f"{name}.npz", allow_pickle=False) as recorded:
        expected = {key: recorded[key] for key in recorded.files}
    model = load_golden(directory / name, lazy=lazy)
    assert type(model).__name__ == manifest["estimator"]
    X = expected.pop("X")
    assert sorted(expected) == sorted(m for m in manifest["methods"] if m != "X")
    for method, values in expected.items():
        got = np.asarray(getattr(model, method)(X))
        assert got.dtype == values.dtype and got.shape == values.shape, method
        assert np.array_equal(got, values), method


@pytest.mark.parametrize(("directory", "name"), CASES, ids=IDS)
def test_golden_store_info(directory, name):
    manifest = json.loads((directory / "manifest.json").read_text())
    with treeshard.open(directory / name) as handle:
        info = handle.info
    assert info.format_version == int(directory.name[1:])
    assert info.estimator == manifest["cases"][name]["estimator"]
    assert info.codec == manifest["cases"][name]["codec"]
    assert info.metadata == {"golden": name}
    assert info.versions["sklearn"] == manifest["sklearn"]


@pytest.mark.parametrize(("directory", "name"), CASES[:2], ids=IDS[:2])
def test_golden_store_reads_from_a_zip_and_memory(directory, name, tmp_path):
    """The same bytes read through the other store kinds."""
    with np.load(directory / f"{name}.npz", allow_pickle=False) as recorded:
        X, expected = recorded["X"], recorded["predict"]
    zipped = tmp_path / "golden.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted((directory / name).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory / name).as_posix())
    assert np.array_equal(load_golden(zipped).predict(X), expected)
    memory = zarr.storage.MemoryStore()
    source = zarr.storage.LocalStore(directory / name, read_only=True)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def copy() -> None:
        async for key in source.list():
            await memory.set(key, await source.get(key, prototype=default_buffer_prototype()))

    sync(copy())
    assert np.array_equal(load_golden(memory).predict(X), expected)


def test_golden_stores_are_tiny():
    for directory, name in CASES:
        size = sum(p.stat().st_size for p in (directory / name).rglob("*") if p.is_file())
        assert size < 64 * 1024, f"{name}: {size} bytes"

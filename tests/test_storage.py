"""The store-argument routers: ``storage_options`` belong to URLs, and a path or Store given them is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from sklearn.tree import DecisionTreeRegressor

import treeshard
from treeshard.errors import InvalidStoreError
from treeshard.storage.urls import check_storage_options, is_url

OPTIONS = {"anon": True}


@pytest.fixture(scope="module")
def model() -> DecisionTreeRegressor:
    return DecisionTreeRegressor(random_state=0).fit(np.arange(8.0).reshape(-1, 1), np.arange(8.0))


@pytest.mark.parametrize("name", ["model.zip", "model"])
def test_storage_options_for_a_path_are_refused_by_every_entry_point(model: Any, tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    message = f"storage_options apply to URLs only (s3://, https://, ...), not to {path!r}"
    with pytest.raises(InvalidStoreError) as info:
        treeshard.save(model, path, storage_options=OPTIONS)
    assert str(info.value) == message
    assert not (tmp_path / name).exists()
    treeshard.save(model, path)
    for read in (
        lambda: treeshard.open(path, storage_options=OPTIONS),
        lambda: treeshard.load(path, storage_options=OPTIONS),
        lambda: treeshard.Predictor(path, storage_options=OPTIONS),
    ):
        with pytest.raises(InvalidStoreError) as info:
            read()
        assert str(info.value) == message


def test_storage_options_for_a_store_object_are_refused(model: Any) -> None:
    store = zarr.storage.MemoryStore()
    with pytest.raises(InvalidStoreError) as info:
        treeshard.save(model, store, storage_options=OPTIONS)
    assert str(info.value) == "storage_options apply to URLs only (s3://, https://, ...), not to a MemoryStore"
    treeshard.save(model, store)
    with pytest.raises(InvalidStoreError) as info:
        treeshard.load(store, storage_options=OPTIONS)
    assert str(info.value) == "storage_options apply to URLs only (s3://, https://, ...), not to a MemoryStore"


def test_empty_or_absent_options_are_fine_anywhere(model: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path, storage_options={})
    loaded = treeshard.load(path, storage_options=None)
    assert np.array_equal(loaded.tree_.threshold, model.tree_.threshold)
    check_storage_options("s3://bucket/model.zip", OPTIONS)  # a URL takes them


def test_url_detection_is_one_rule() -> None:
    assert is_url("s3://bucket/model.zip") and is_url("memory://m") and is_url("HTTPS://host/m")
    assert not is_url("dir/with://inside") and not is_url("model.zip") and not is_url(Path("s3://x"))

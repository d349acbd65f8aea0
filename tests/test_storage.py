"""The store-argument routers: ``storage_options`` belong to URLs, and a path or Store given them is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from sklearn.tree import DecisionTreeRegressor

import treeshard
from treeshard.errors import InvalidStoreError, StoreExistsError
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


# --------------------------------------------------------------------------- byte sources and the router
@pytest.mark.parametrize("kind", ["directory", "zip", "memory"])
def test_every_local_source_follows_the_byte_source_protocol(model: Any, tmp_path: Path, kind: str) -> None:
    from treeshard.spec import DIGEST_KEY, ROOT_METADATA
    from treeshard.storage.router import open_source
    from treeshard.storage.sources import ByteSource, ListableSource

    store: Any = zarr.storage.MemoryStore() if kind == "memory" else tmp_path / ("m.zip" if kind == "zip" else "m")
    treeshard.save(model, store)
    source, _ = open_source(store)
    try:
        assert isinstance(source, ByteSource) and isinstance(source, ListableSource)
        root = source.get(ROOT_METADATA)
        assert root is not None and source.size(ROOT_METADATA) == len(root)
        assert source.get_range(ROOT_METADATA, 2, 5) == root[2:7]
        tail, size = source.get_suffix(ROOT_METADATA, 10)
        assert tail == root[-10:] and size in (len(root), None)  # a Store does not ask for the size
        assert source.get("no/such/key") is None and source.size("no/such/key") is None
        assert source.get_suffix("no/such/key", 4) is None
        assert ROOT_METADATA in source.keys() and DIGEST_KEY in source.keys() and source.keys() == sorted(source.keys())
    finally:
        source.close()


def test_a_memory_store_is_read_in_the_callers_thread(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """zarr's MemoryStore answers at once: a load from it never hops to zarr's event-loop thread."""
    import zarr.core.sync

    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)

    def no_event_loop(coroutine: Any, *args: Any, **kwargs: Any) -> Any:
        coroutine.close()
        raise AssertionError("a request went through zarr's event loop")

    monkeypatch.setattr(zarr.core.sync, "sync", no_event_loop)
    X = np.arange(8.0).reshape(-1, 1)
    for lazy in (True, False):
        assert np.array_equal(treeshard.load(store, lazy=lazy).predict(X), model.predict(X))
    # and saved to, into an empty store or over a model
    fresh = zarr.storage.MemoryStore()
    treeshard.save(model, fresh)
    with pytest.raises(StoreExistsError):
        treeshard.save(model, fresh)
    other = DecisionTreeRegressor(max_depth=1).fit(X, np.arange(8.0))
    treeshard.save(other, fresh, overwrite=True)
    assert np.array_equal(treeshard.load(fresh).predict(X), other.predict(X))


def test_run_at_once_runs_only_what_needs_no_event_loop() -> None:
    import asyncio

    from treeshard.storage.sources import run_at_once

    async def answer() -> int:
        return 42

    async def yields() -> int:
        await asyncio.sleep(0)  # a bare yield to the loop
        return 1

    async def sleeps() -> int:
        await asyncio.sleep(0.01)  # asks for the running loop
        return 2

    async def fails() -> int:
        raise ValueError("the store's own error")

    started: list[Any] = []

    def request(function: Any) -> Any:
        started.append(function())
        return started[-1]

    assert run_at_once(lambda: request(answer)) == (True, 42)
    assert run_at_once(lambda: request(yields)) == (False, None)
    assert run_at_once(lambda: request(sleeps)) == (False, None)
    assert [coroutine.cr_frame for coroutine in started] == [None, None, None]  # none left suspended
    with pytest.raises(ValueError, match="the store's own error"):
        run_at_once(fails)


def test_a_store_request_that_waits_goes_through_zarrs_event_loop(model: Any) -> None:
    """Should a request of a store run in the caller's thread wait for something after all, it is
    run again through zarr's event loop, with the same answers, and so are the source's later ones."""
    import asyncio

    from treeshard.spec import ROOT_METADATA
    from treeshard.storage.sources import ZarrStoreSource

    class WaitingStore(zarr.storage.MemoryStore):
        async def get(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await super().get(*args, **kwargs)

    store = WaitingStore()
    treeshard.save(model, store)
    plain = ZarrStoreSource(zarr.storage.MemoryStore(store_dict=dict(store._store_dict)))
    source = ZarrStoreSource(store)
    assert plain._inline and not source._inline  # only zarr's own MemoryStore is run inline
    source._inline = True
    assert source.get(ROOT_METADATA) == plain.get(ROOT_METADATA)
    assert not source._inline
    assert source.get_range(ROOT_METADATA, 2, 5) == plain.get_range(ROOT_METADATA, 2, 5)
    assert source.get_suffix(ROOT_METADATA, 10) == plain.get_suffix(ROOT_METADATA, 10)
    assert source.get("no/such/key") is None and plain.get("no/such/key") is None


def test_the_router_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    from treeshard.errors import StoreNotFoundError
    from treeshard.storage.router import open_source

    with pytest.raises(InvalidStoreError, match="^store must be a path or a zarr Store, got int$"):
        open_source(3)
    with pytest.raises(StoreNotFoundError, match="no treeshard store at"):
        open_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"is not a treeshard store \(no zarr.json\)$"):
        open_source(tmp_path / "empty")


def test_a_bad_zip_local_header_is_refused() -> None:
    import zipfile

    from treeshard.errors import IntegrityError
    from treeshard.storage.ziprules import local_data_offset

    info = zipfile.ZipInfo("nodes/c/0")
    info.header_offset = 100
    good = b"PK\x03\x04" + bytes(22) + (9).to_bytes(2, "little") + (4).to_bytes(2, "little")
    assert local_data_offset("'m.zip'", info, good) == 100 + 30 + 9 + 4
    with pytest.raises(IntegrityError, match=r"^'m.zip': 'nodes/c/0': bad zip local header$"):
        local_data_offset("'m.zip'", info, b"PK\x01\x02" + good[4:])
    with pytest.raises(IntegrityError, match=r"^'m.zip': 'nodes/c/0': bad zip local header$"):
        local_data_offset("'m.zip'", info, good[:29])


def test_load_verify_checks_the_store_it_loads_not_the_path(model: Any, tmp_path: Path) -> None:
    """The store at the path is replaced after it was opened: verification reads the opened (pinned) one."""
    from treeshard.errors import IntegrityError

    path, aside = tmp_path / "m", tmp_path / "aside"
    treeshard.save(model, path)
    handle = treeshard.open(path)
    path.rename(aside)
    treeshard.save(model, path)  # an intact store at the path
    (aside / "extra").write_bytes(b"x")  # the opened store has a file the load never reads
    with pytest.raises(IntegrityError, match=r"extra: not part of the saved model \(added after saving\)"):
        handle.load(verify=True)
    treeshard.load(path, verify=True)

"""Fixtures shared by the test suite; shared helper functions live in ``tests/helpers/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zarr

import treeshard


@pytest.fixture
def memory_round_trip():
    """``round_trip`` through a MemoryStore."""

    def run(estimator: Any, *, lazy: bool = True, **save_kwargs: Any) -> Any:
        store = zarr.storage.MemoryStore()
        treeshard.save(estimator, store, **save_kwargs)
        return treeshard.load(store, lazy=lazy)

    return run


@pytest.fixture(autouse=True)
def _no_cwd_litter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run in their tmp_path so a stray relative path never litters the repo."""
    monkeypatch.chdir(tmp_path)

"""Saves are atomic: a save killed at any moment leaves the old model, the new one, or none.

A forked child saves two different models in turn over the same target,
forever; the parent kills it with SIGKILL at a random moment and checks
that the target either does not exist or loads as one of the two models
(identical predictions) and matches its content digest. The CI profile
kills 7 times per kind of store (21 kills); ``TREESHARD_KILLS=60`` runs longer.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn.ensemble import RandomForestClassifier

import treeshard
import treeshard.storage.local
import treeshard.storage.targets
from treeshard import integrity
from treeshard.storage.local import remove_stale_temporaries
from treeshard.storage.router import open_source

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

KILLS = int(os.environ.get("TREESHARD_KILLS", "7"))
X = np.random.RandomState(0).normal(size=(300, 6))
Y = (X[:, 0] - X[:, 2] > 0).astype(int)


@pytest.fixture(scope="module")
def models():
    # Different seeds: different trees, different predict_proba.
    return [RandomForestClassifier(n_estimators=6, max_depth=6, random_state=seed).fit(X, Y) for seed in (1, 2)]


def _target(tmp_path: Path, kind: str) -> Path:
    return tmp_path / ("model.zip" if kind == "zip" else "model")


def _save(model, target: Path, kind: str) -> None:
    store = zarr.storage.LocalStore(target) if kind == "store-object" else target
    treeshard.save(model, store, overwrite=True)


def _saver(models, target: Path, kind: str) -> None:  # runs in the forked child
    try:
        i = 0
        while True:
            _save(models[i % 2], target, kind)
            i += 1
    finally:
        os._exit(1)


def _classify(target: Path, models) -> str:
    """'absent', 'old-or-new' (index of the model) or raise if the target loads wrongly."""
    if not target.exists() or (target.is_dir() and not (target / "zarr.json").exists()):
        return "absent"
    loaded = treeshard.load(target, lazy=False)
    proba = loaded.predict_proba(X)
    matches = [i for i, m in enumerate(models) if np.array_equal(proba, m.predict_proba(X))]
    assert len(matches) == 1, "the target loads as neither the old nor the new model"
    store, _ = open_source(target)
    try:
        integrity.verify_store(store)
    finally:
        store.close()
    return f"model {matches[0]}"


def _temporaries(target: Path) -> list[Path]:
    return [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


@pytest.mark.parametrize("kind", ["directory", "zip", "store-object"])
def test_save_killed_at_random_points(models, tmp_path, kind):
    target = _target(tmp_path, kind)
    start = time.perf_counter()
    _save(models[0], target, kind)
    save_seconds = time.perf_counter() - start
    rng = random.Random(f"{kind}-{KILLS}")
    outcomes: dict[str, int] = {}
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:
            _saver(models, target, kind)
        time.sleep(rng.uniform(0, 3 * save_seconds))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the saver died by itself"
        outcome = _classify(target, models)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{kind}: {KILLS} kills, outcomes {outcomes}")
    if kind != "store-object":  # a store object gives no rename: "absent" is expected there
        assert outcomes.get("absent", 0) == 0, "replacing an existing directory or zip is atomic on Linux"
    # The next save removes what killed saves left behind.
    _save(models[1], target, kind)
    assert _temporaries(target) == []
    assert _classify(target, models) == "model 1"


def test_temporaries_of_a_live_save_are_kept(tmp_path):
    target = tmp_path / "model"
    mine = tmp_path / f".model.tmp-{os.getpid()}-0123456789ab"
    dead_pid = _dead_pid()
    dead = tmp_path / f".model.old-{dead_pid}-0123456789ab"
    dead_zip = tmp_path / f".model.tmp-{dead_pid}-0123456789ab.zip"
    other = tmp_path / f".other.tmp-{dead_pid}-0123456789ab"
    for path in (mine, dead, other):
        path.mkdir()
    dead_zip.write_bytes(b"partial")
    assert sorted(remove_stale_temporaries(target)) == sorted([dead, dead_zip])
    assert mine.exists() and other.exists() and not dead.exists()


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_failed_save_leaves_the_old_model(models, tmp_path, monkeypatch):
    target = tmp_path / "model.zip"
    treeshard.save(models[0], target)
    before = target.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(treeshard.storage.targets, "_write_zip", explode)
    with pytest.raises(OSError, match="disk full"):
        treeshard.save(models[1], target, overwrite=True)
    assert target.read_bytes() == before
    assert _temporaries(target) == []


@pytest.mark.parametrize("name", ["model.zip", "model"])
def test_a_folder_that_cannot_be_written_is_named_with_the_target(models, tmp_path, monkeypatch, name):
    """A read-only file system or folder fails the save at its temporary file; the error
    (same type and errno) names the target and the folder, not the temporary."""
    import errno

    target = tmp_path / name
    real_mkdir = Path.mkdir

    def refused(path):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def guarded_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        return refused(path) if Path(path).name.startswith(f".{name}.tmp-") else open(path, *args, **kwargs)

    def guarded_mkdir(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return refused(self) if self.name.startswith(f".{name}.tmp-") else real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(treeshard.storage.targets, "open", guarded_open, raising=False)  # the zip's temporary
    monkeypatch.setattr(Path, "mkdir", guarded_mkdir)  # the directory's
    message = f"[Errno {errno.EROFS}] cannot save to {str(target)!r}: {os.strerror(errno.EROFS)} (a save first writes a temporary file beside it, in {str(tmp_path)!r}, which must be writable)"
    with pytest.raises(OSError) as excinfo:
        treeshard.save(models[0], target)
    assert excinfo.value.errno == errno.EROFS and str(excinfo.value) == message
    assert not target.exists() and _temporaries(target) == []


def test_directory_replace_without_exchange(models, tmp_path, monkeypatch):
    """Where renameat2 is unavailable the fallback still ends with the new model."""
    target = tmp_path / "model"
    treeshard.save(models[0], target)
    monkeypatch.setattr(treeshard.storage.local, "_exchange", lambda a, b: False)
    treeshard.save(models[1], target, overwrite=True)
    assert _classify(target, models) == "model 1"
    assert _temporaries(target) == []


def test_large_zip_starts_writeback_over_every_byte_once(models, tmp_path, monkeypatch):
    """A zip written straight to its file asks for writeback of consecutive ranges as it goes
    (the ``fsync`` after the last write then waits for the tail only); the zip is whole."""
    import treeshard.storage.local as local

    ranges: list[tuple[int, int]] = []
    real = local.start_writeback

    def recording(fd, offset, nbytes):
        ranges.append((offset, nbytes))
        real(fd, offset, nbytes)

    monkeypatch.setattr(treeshard.storage.targets, "ZIP_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(treeshard.storage.targets, "WRITEBACK_BYTES", 4096)
    monkeypatch.setattr(treeshard.storage.targets, "start_writeback", recording)
    path = tmp_path / "m.zip"
    treeshard.save(models[0], path)
    assert len(ranges) > 1
    assert [offset for offset, _ in ranges] == [0, *np.cumsum([n for _, n in ranges])[:-1].tolist()]
    assert all(n >= 4096 for _, n in ranges) and sum(n for _, n in ranges) <= path.stat().st_size
    integrity.verify_store(path)
    assert np.array_equal(treeshard.load(path).predict_proba(X), models[0].predict_proba(X))


def test_start_writeback_of_any_range_is_harmless(tmp_path):
    """Past the end, empty or whole: nothing raised, the bytes unchanged."""
    from treeshard.storage.local import start_writeback

    path = tmp_path / "f"
    path.write_bytes(b"x" * 10000)
    with open(path, "rb+") as handle:
        for offset, nbytes in [(0, 10000), (0, 0), (5000, 1 << 40), (1 << 40, 10)]:
            start_writeback(handle.fileno(), offset, nbytes)
    assert path.read_bytes() == b"x" * 10000

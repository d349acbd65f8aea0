"""A forked child saves and loads after its parent did: no thread pool of the parent is reused.

Threads do not survive ``fork``; a pool object that did would hold tasks
nobody runs, and the child would hang. Each case runs in a forked child
with a deadline, so that a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import treeshard
from treeshard.writer import encode_array

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(function, *, seconds: float = 60) -> None:
    """Run ``function`` in a forked child; fail unless it returns True before the deadline."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if function() else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child failed"
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the child hung")


def test_a_forked_child_encodes_after_its_parent():
    big = np.arange(1 << 19, dtype=np.float64)
    encode_array("x", big, codec="lz4", rows=1 << 14)
    _in_child(lambda: len(encode_array("x", big, codec="lz4", rows=1 << 14).shards) == 1)


def test_a_forked_child_loads_after_its_parent(tmp_path):
    """Reading several columns at once decodes them in a pool: the child needs its own."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    treeshard.save(model, tmp_path / "m.zip")
    expected = model.predict_proba(X)
    assert np.array_equal(treeshard.load(tmp_path / "m.zip", lazy=False).predict_proba(X), expected)
    _in_child(lambda: np.array_equal(treeshard.load(tmp_path / "m.zip", lazy=False).predict_proba(X), expected))

"""Scoring on Dask (issue 7): two worker processes, each opening the model from a shared HTTP store.

The lazy model sent to the workers pickles as a reference (URL and tree ids,
a couple of kilobytes); the HTTP server sees the workers read the trees.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import treeshard

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
pytest_plugins = ["helpers.servers"]  # the HTTP server fixture


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def test_dask_scoring_matches_local_predictions(client: Any, http_server: Any) -> None:
    X, y = make_classification(2000, 8, n_informative=5, n_classes=3, random_state=0)
    original = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    treeshard.save(original, http_server.root / "dask-model.zip")
    model = treeshard.load(f"{http_server.url}/dask-model.zip")  # lazy: no tree read yet
    expected_proba, expected = original.predict_proba(X), original.predict(X)

    payload = pickle.dumps(model)
    assert len(payload) < 4096  # a reference, not 20 trees
    http_server.counter.reset()

    blocks = da.from_array(X, chunks=(500, X.shape[1]))
    proba = blocks.map_blocks(lambda block, m: m.predict_proba(block), m=model, dtype=np.float64, chunks=(500, 3))
    assert np.array_equal(proba.compute(), expected_proba)

    frame = dd.from_pandas(pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]), npartitions=4)
    labels = frame.map_partitions(lambda part, m: pd.Series(m.predict(part.to_numpy()), index=part.index), model, meta=(None, "int64"))
    assert np.array_equal(labels.compute().to_numpy(), expected)

    # The workers read the trees from the store themselves.
    assert any("dask-model.zip" in path for _, path, _ in http_server.counter.log)
    assert http_server.counter.bytes_sent > 0

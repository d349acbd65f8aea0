"""What a fresh process imports: ``import treeshard`` is light, the Predictor needs neither sklearn nor zarr.

Each check runs in a subprocess, because this test process has long imported
everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import treeshard

pytest_plugins = ["helpers.servers"]

HEAVY = ("sklearn", "zarr", "scipy", "numcodecs", "pandas", "joblib", "asyncio", "treeshard.api")


def _modules_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return which heavy modules it imported (and its result)."""
    script = f"""
import json, sys
{code}
print(json.dumps({{"loaded": sorted(m for m in {HEAVY!r} if m in sys.modules), "result": result}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_treeshard_is_light() -> None:
    out = _modules_after("import treeshard\nresult = sorted(treeshard.__all__)")
    assert out["loaded"] == []
    assert "Predictor" in out["result"]


def test_predictor_needs_neither_sklearn_nor_zarr(tmp_path: Path) -> None:
    """A forest in a zip and gradient boosting in a directory, both scored in one fresh process."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    models = {
        str(tmp_path / "forest.zip"): RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y),
        str(tmp_path / "boosting"): GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y),
    }
    for path, model in models.items():
        treeshard.save(model, path)
    row = X[:1].tolist()
    out = _modules_after(
        "import treeshard\n"
        f"result = [[p.predict({row!r}).tolist(), p.predict_proba({row!r}).tolist()] "
        f"for p in map(treeshard.Predictor, {list(models)!r})]"
    )
    assert out["loaded"] == []
    assert out["result"] == [[m.predict(row).tolist(), m.predict_proba(row).tolist()] for m in models.values()]


def test_save_and_load_still_import_on_demand() -> None:
    out = _modules_after("import treeshard\nresult = treeshard.load.__module__")
    assert out["result"] == "treeshard.api"
    assert "treeshard.api" in out["loaded"]


def test_sparse_input_needs_neither_sklearn_nor_zarr(tmp_path: Path) -> None:
    """scipy is the caller's (X is a scipy object); predicting from it imports no sklearn."""
    import scipy.sparse as sp

    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4))
    X[X < 0] = 0.0
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, (X[:, 0] > X[:, 1]).astype(int))
    path = str(tmp_path / "boosting.zip")
    treeshard.save(model, path)
    rows = X[:5].tolist()
    out = _modules_after(
        "import scipy.sparse, treeshard\n"
        f"result = treeshard.Predictor({path!r}).predict_proba(scipy.sparse.csr_matrix({rows!r})).tolist()"
    )
    assert out["loaded"] == ["scipy"]
    assert out["result"] == model.predict_proba(sp.csr_matrix(rows)).tolist()


def test_isolation_forest_predictor_needs_neither_sklearn_nor_zarr(tmp_path: Path) -> None:
    from sklearn.ensemble import IsolationForest

    X = np.random.RandomState(0).normal(size=(120, 4))
    model = IsolationForest(n_estimators=5, max_features=0.5, contamination=0.1, random_state=0).fit(X)
    path = str(tmp_path / "iforest.zip")
    treeshard.save(model, path)
    rows = X[:3].tolist()
    out = _modules_after(
        "import treeshard\n"
        f"p = treeshard.Predictor({path!r})\n"
        f"result = [p.score_samples({rows!r}).tolist(), p.decision_function({rows!r}).tolist(), p.predict({rows!r}).tolist()]"
    )
    assert out["loaded"] == []
    assert out["result"] == [model.score_samples(rows).tolist(), model.decision_function(rows).tolist(), model.predict(rows).tolist()]


@pytest.mark.parametrize("location", ["http", "http-zip", "s3", "s3-zip"])
def test_predictor_reads_urls_without_zarr(location: str, http_server: Any, s3_env: Any) -> None:
    """A URL store read by the Predictor goes through fsspec alone (asyncio is the backend's own)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4))
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    name = f"forest-{uuid.uuid4().hex[:8]}" + (".zip" if location.endswith("zip") else "")
    if location.startswith("http"):
        treeshard.save(model, http_server.root / name)
        url = f"{http_server.url}/{name}"
    else:
        url = f"s3://models/{name}"
        treeshard.save(model, url)
    rows = X[:3].tolist()
    out = _modules_after(f"import treeshard\nresult = treeshard.Predictor({url!r}).predict_proba({rows!r}).tolist()")
    assert [m for m in out["loaded"] if m != "asyncio"] == []
    assert out["result"] == model.predict_proba(rows).tolist()


def test_pipeline_predictor_serves_a_json_request_with_numpy_only(tmp_path: Path) -> None:
    """A serverless handler: JSON text -> mapping -> pipeline Predictor. No pandas, sklearn, scipy or
    zarr, and no pickle beyond what ``import numpy`` itself loads."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60), "city": rng.choice(["a", "b", "c"], size=60)})
    frame.loc[::7, "x"] = np.nan
    pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["x", "y"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=3, random_state=0))]).fit(frame, frame["y"] > 0)
    path = str(tmp_path / "pipeline.zip")
    treeshard.save(model, path)
    request = json.dumps([{"x": None, "y": 0.25, "city": "b"}, {"x": 1.5, "y": -2.0, "city": "unseen"}])
    out = _modules_after(
        # numpy imports pickle itself: forget it, and make any later import of it fail
        "import numpy\nsys.modules.pop('pickle', None)\n"
        "class NoPickle:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pickle':\n            raise ImportError('the read path imported pickle')\n"
        "sys.meta_path.insert(0, NoPickle())\nimport treeshard\n"
        f"p = treeshard.Predictor({path!r})\n"
        f"result = [p.predict_proba(json.loads({request!r})).tolist(), 'pickle' in sys.modules]"
    )
    assert out["loaded"] == []
    assert out["result"] == [model.predict_proba(pd.DataFrame(json.loads(request))).tolist(), False]


def test_single_model_predictor_serves_a_json_request_with_numpy_only(tmp_path: Path) -> None:
    """A forest fitted on a DataFrame, a JSON request by column name: numpy and treeshard only."""
    import pandas as pd

    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)})
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, frame["y"] > 0)
    path = str(tmp_path / "forest.zip")
    treeshard.save(model, path)
    request = json.dumps({"x": [0.5, None], "y": [0.25, -2.0]})
    out = _modules_after(f"import treeshard\nresult = treeshard.Predictor({path!r}).predict_proba(json.loads({request!r})).tolist()")
    assert out["loaded"] == []
    assert out["result"] == model.predict_proba(pd.DataFrame(json.loads(request)).astype(float)).tolist()

"""Write the golden histogram gradient boosting stores of format version 1 (run once; committed).

    .venv/bin/python tests/golden/make_hist_golden.py

Each case is a tiny ``HistGradientBoosting*`` saved as a directory store
``hist_boosting_v1/<case>/`` next to ``hist_boosting_v1/<case>.npz``: the
query columns (numbers as float64, categories as unicode strings, ``""`` for
a missing value) and the recorded ``predict``, ``decision_function`` (raw
scores: the stored baseline plus stored leaf values, which the format fixes
bit for bit) and ``predict_proba`` (through ``exp``: the recording CPU's bits,
which the test does not compare). ``tests/test_hist_gradient_boosting.py``
decodes every store on every run. Never rewrite a golden store to make a test
pass.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FORMAT_DIR = HERE / "hist_boosting_v1"


def query_frame() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(7)
    n = 60
    columns = {
        "x0": np.round(rng.normal(size=n), 2),
        "color": rng.choice(["red", "green", "blue", ""], n),
        "x2": np.round(rng.normal(size=n), 2),
        "code": rng.randint(0, 6, n).astype(np.float64),
    }
    columns["x0"][::9] = np.nan
    columns["code"][::11] = np.nan
    return columns


def as_frame(columns: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    import pandas as pd

    color = pd.Categorical(np.where(columns["color"] == "", None, columns["color"]).tolist(), categories=["blue", "green", "red"])
    return pd.DataFrame({"x0": columns["x0"], "color": color, "x2": columns["x2"], "code": columns["code"]})


def cases() -> dict[str, tuple[object, str]]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return {
        "hist_classifier_categorical": (HistGradientBoostingClassifier(max_iter=4, max_leaf_nodes=5, random_state=0), "multiclass"),
        "hist_classifier_binary_early_stopping": (
            HistGradientBoostingClassifier(max_iter=8, max_leaf_nodes=4, early_stopping=True, n_iter_no_change=2, validation_fraction=0.3, random_state=0),
            "binary",
        ),
        "hist_regressor_codes": (
            HistGradientBoostingRegressor(max_iter=4, max_leaf_nodes=5, categorical_features=["color", "code"], monotonic_cst={"x2": 1}, random_state=0),
            "regression",
        ),
    }


def main() -> None:
    import sklearn

    import treeshard

    if FORMAT_DIR.exists() and "--force" not in sys.argv:
        sys.exit(f"{FORMAT_DIR} exists; golden stores are written once (pass --force to rewrite them)")
    shutil.rmtree(FORMAT_DIR, ignore_errors=True)
    FORMAT_DIR.mkdir(parents=True)
    columns = query_frame()
    X = as_frame(columns)
    score = np.nan_to_num(columns["x0"]) + (columns["color"] == "red") - 0.5 * np.nan_to_num(columns["code"] == 2)
    targets = {"multiclass": np.digitize(score, [-0.5, 0.5]), "binary": (score > 0).astype(np.int64), "regression": score * 2.0}
    manifest = {"treeshard": treeshard.__version__, "sklearn": sklearn.__version__, "cases": {}}
    for name, (estimator, task) in cases().items():
        estimator.fit(X, targets[task])
        treeshard.save(estimator, FORMAT_DIR / name, metadata={"golden": name})
        expected = {f"X_{key}": value for key, value in columns.items()}
        for method in ("predict", "decision_function", "predict_proba"):
            if hasattr(estimator, method):
                expected[method] = getattr(estimator, method)(X)
        np.savez(FORMAT_DIR / f"{name}.npz", **expected)
        manifest["cases"][name] = {"estimator": type(estimator).__name__, "n_iter_": estimator.n_iter_}
    (FORMAT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

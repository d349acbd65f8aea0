"""Write the golden stores of format version 1 (run once; the outputs are committed).

    .venv/bin/python tests/golden/make_golden.py

Each case is a tiny model saved as a directory store ``v1/<case>/`` next to
``v1/<case>.npz``: the query rows ``X``, the expected output of every
prediction method and, for gradient boosting, ``init_raw``, the init
estimator's raw prediction (``_raw_predict_init``), saved without pickle.
``tests/test_golden.py`` decodes every store on every run and compares,
forever: a change that makes an old store unreadable or changes its
predictions fails the suite. Never rewrite an existing golden store to make a
test pass; add a new format version instead. Run again, the script writes only
the cases the manifest does not list yet (a new estimator family) and leaves
every existing store as it is.

For an IsolationForest the ``.npz`` also holds what the format alone fixes:
``depths``, each row's path terms summed in tree order (sklearn's ``depths``
in ``_compute_score_samples``), and ``estimators_samples_`` (one row per tree).

Outputs through ``exp``/``log`` (gradient boosting probabilities, and the
multiclass init, hence its raw scores) depend on numpy's SIMD level: the test
compares only what the format determines with these bits (see its docstring).
(``init_raw`` was added to the v1 ``.npz`` files later, computed from the
golden stores on a machine that reproduced their recorded raw scores bit for
bit; every other array in them is unchanged.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FORMAT_DIR = HERE / "v1"
METHODS = ("predict", "predict_proba", "decision_function", "apply")


def data(task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(42)
    X = np.round(rng.normal(size=(40, 3)), 2)
    score = X[:, 0] - X[:, 1]
    if task == "string":
        return X, np.array(["low", "mid", "high"])[np.digitize(score, [-0.5, 0.5])]
    if task == "binary":
        return X, (score > 0).astype(np.int64)
    if task == "nan":
        X[::7, 1] = np.nan
        return X, (score > 0.2).astype(np.int64)
    if task == "multioutput":
        return X, np.column_stack([score, X[:, 2]])
    return X, score * 3.0


def cases() -> dict[str, tuple[object, str, str]]:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeRegressor

    return {
        "random_forest_classifier": (RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0), "string", "lz4"),
        "extra_trees_regressor": (ExtraTreesRegressor(n_estimators=2, max_depth=2, random_state=0), "multioutput", "zstd"),
        "gradient_boosting_classifier": (GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0), "string", "lz4"),
        "gradient_boosting_regressor": (GradientBoostingRegressor(n_estimators=2, max_depth=2, loss="huber", random_state=0), "regression", "none"),
        "decision_tree_classifier": (DecisionTreeClassifier(max_depth=3, random_state=0), "nan", "lz4"),
        "extra_tree_regressor": (ExtraTreeRegressor(max_depth=3, random_state=0), "regression", "lz4"),
        "isolation_forest": (
            IsolationForest(n_estimators=2, max_samples=16, max_features=2, contamination=0.1, random_state=0),
            "nan",
            "zstd",
        ),
    }


def main() -> None:
    import sklearn

    import treeshard

    manifest_path = FORMAT_DIR / "manifest.json"
    if "--force" in sys.argv or not FORMAT_DIR.exists():
        shutil.rmtree(FORMAT_DIR, ignore_errors=True)
        FORMAT_DIR.mkdir(parents=True)
        manifest = {"treeshard": treeshard.__version__, "sklearn": sklearn.__version__, "cases": {}}
    else:
        manifest = json.loads(manifest_path.read_text())
    new = {name: case for name, case in cases().items() if name not in manifest["cases"]}
    if not new:
        sys.exit(f"{FORMAT_DIR}: every case is written; golden stores are written once (pass --force to rewrite them)")
    for name, (estimator, task, codec) in new.items():
        X, y = data(task)
        estimator.fit(X, y)
        treeshard.save(estimator, FORMAT_DIR / name, codec=codec, metadata={"golden": name})
        expected = {"X": X}
        for method in METHODS:
            if hasattr(estimator, method):
                expected[method] = getattr(estimator, method)(X)
        if hasattr(estimator, "_raw_predict_init"):
            expected["init_raw"] = estimator._raw_predict_init(X)
        if hasattr(estimator, "score_samples"):
            for method in ("score_samples", "decision_function"):
                expected[method] = getattr(estimator, method)(X)
            expected["depths"] = isolation_depths(estimator, X)
            expected["estimators_samples_"] = np.array(estimator.estimators_samples_)
        np.savez(FORMAT_DIR / f"{name}.npz", **expected)
        methods = sorted(key for key in expected if key not in RECORDED_NOT_METHODS)
        manifest["cases"][name] = {
            "estimator": type(estimator).__name__,
            "codec": codec,
            "methods": methods,
            "sklearn": sklearn.__version__,
        }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


#: Recorded in a case's ``.npz`` next to the method outputs.
RECORDED_NOT_METHODS = ("init_raw", "depths", "estimators_samples_")


def isolation_depths(forest, X):  # type: ignore[no-untyped-def]
    """sklearn's ``depths`` in ``IsolationForest._compute_score_samples``, in its order."""
    X = np.asarray(X, dtype=np.float32)
    depths = np.zeros(X.shape[0])
    subsample = forest._max_features != X.shape[1]
    for i, (tree, features) in enumerate(zip(forest.estimators_, forest.estimators_features_)):
        leaves = tree.apply(X[:, features] if subsample else X, check_input=False)
        depths += forest._decision_path_lengths[i][leaves] + forest._average_path_length_per_tree[i][leaves] - 1.0
    return depths


if __name__ == "__main__":
    main()

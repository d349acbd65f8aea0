"""Write the golden pipeline stores of format version 1 (run once each; the outputs are committed).

    .venv/bin/python tests/golden/make_pipeline_golden.py        # pipe/
    .venv/bin/python tests/golden/make_pipeline_golden.py hgb    # hgb/ only

``hgb/`` (with ``hgb.npz``): an ordinal encoder then a histogram gradient
boosting regressor with a categorical feature, stored under ``models/0/`` as
histogram boosting's own node columns and bitsets; its ``predict`` is sums
of stored values, the same on every machine. Tested by
``tests/test_pipeline_models.py``.

A small pipeline (imputer, scaler, one-hot and ordinal encoders in a
ColumnTransformer, then a random forest) is saved as the directory store
``pipelines/v1/pipe/`` next to ``pipelines/v1/pipe.npz``: the query rows and
the expected ``predict``, ``predict_proba`` and ``transform`` of the
preprocessing. Nothing goes through ``exp``/``log``, so the outputs are the
same on every machine. ``tests/test_pipeline.py`` decodes the store on every
run, with ``treeshard.load`` and the ``Predictor``. Never rewrite it to make a
test pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "pipelines" / "v1"


def data() -> np.ndarray:
    rng = np.random.RandomState(42)
    X = np.column_stack([np.round(rng.normal(size=60), 2), np.round(rng.normal(size=60), 2), rng.choice([0.0, 1.0, 2.0, 3.0], size=60), rng.choice([1.0, 2.0], size=60)])
    X[::7, 0] = np.nan
    return X


def main() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    import treeshard

    X = data()
    y = (np.nan_to_num(X[:, 0]) + X[:, 1] > 0).astype(np.int64)
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(add_indicator=True)), ("scale", StandardScaler())]), [0, 1]),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2]),
            ("ordinal", OrdinalEncoder(), [3]),
        ]
    )
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0))]).fit(X, y)
    query = data()[::-1].copy()
    query[0, 2] = 9.0  # an unknown category
    if (HERE / "pipe").exists():
        shutil.rmtree(HERE / "pipe")
    HERE.mkdir(parents=True, exist_ok=True)
    treeshard.save(model, str(HERE / "pipe"))
    np.savez(HERE / "pipe.npz", X=query, predict=model.predict(query), predict_proba=model.predict_proba(query), transform=model[:-1].transform(query))


def main_hgb() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    import treeshard

    X = data()
    y = np.nan_to_num(X[:, 0]) + X[:, 1] + (X[:, 2] == 2.0) - 0.5 * (X[:, 2] == 1.0)
    pre = ColumnTransformer([("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), [2])], remainder="passthrough")
    booster = HistGradientBoostingRegressor(max_iter=6, max_leaf_nodes=5, min_samples_leaf=3, categorical_features=[0], random_state=0)
    model = Pipeline([("pre", pre), ("hgb", booster)]).fit(X, y)
    query = data()[::-1].copy()
    query[0, 2] = 9.0  # an unknown category
    if (HERE / "hgb").exists():
        shutil.rmtree(HERE / "hgb")
    HERE.mkdir(parents=True, exist_ok=True)
    treeshard.save(model, str(HERE / "hgb"))
    np.savez(HERE / "hgb.npz", X=query, predict=model.predict(query), transform=model[:-1].transform(query))


if __name__ == "__main__":
    import sys

    main_hgb() if sys.argv[1:] == ["hgb"] else main()

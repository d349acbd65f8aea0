"""Pipeline cases of the cross-version matrix (``matrix.py`` imports this module; numpy only at import).

Each case builds a fitted pipeline from plain numpy data (the compat
virtualenvs hold no pandas): an object array whose string columns go to the
encoders and whose float columns (with NaN) go to the imputers and scalers,
columns selected by index. Query rows hold categories never seen in fit.
Outputs compared: ``predict`` (and ``predict_proba`` of forests and trees),
``transform`` of the preprocessing (``model[:-1]``), ``get_feature_names_out``
of the preprocessing; outputs through ``exp``/``log`` are listed in
``recomputed`` (the writer recomputes them on this machine).

``skops`` cases hold a step with no treeshard schema (PCA): they load under
the writer's sklearn minor version only and are refused with the error of
:func:`skops_refusal` under any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class PipelineCase:
    build: Callable[[], Any]
    task: str  # "classification" or "regression"
    #: Methods whose outputs go through exp/log: recomputed by the writer on this machine.
    recomputed: tuple[str, ...] = ()
    #: The case holds a skops step (treeshard[skops] needed to write and to read on the same minor).
    skops: bool = False


def data(*, query: bool = False) -> np.ndarray:
    """Columns 0-3 floats (NaN in 0 and 1), 4 colour strings (NaN, a rare one), 5 sizes, 6 code strings."""
    rng = np.random.RandomState(11 if query else 5)
    n = 60 if query else 160
    floats = np.round(rng.normal(size=(n, 4)) * [1.0, 4.0, 1.0, 2.0], 2)
    floats[rng.rand(n) < 0.08, 0] = np.nan
    floats[rng.rand(n) < 0.05, 1] = np.nan
    colors = np.array(["red", "green", "blue", "teal", "rare"], dtype=object)[rng.choice(5, size=n, p=[0.4, 0.3, 0.2, 0.08, 0.02])]
    sizes = np.array(["S", "M", "L"], dtype=object)[rng.choice(3, size=n)]
    codes = np.array(["c1", "c2", "c3", "c4"], dtype=object)[rng.choice(4, size=n, p=[0.5, 0.3, 0.15, 0.05])]
    if query:
        colors[::7] = "violet"  # never seen in fit
        sizes[::9] = "XL"
        codes[::8] = "c9"
    colors[::13] = "missing"
    X = np.empty((n, 7), dtype=object)
    X[:, :4] = floats
    X[:, 4], X[:, 5], X[:, 6] = colors, sizes, codes
    return X


def target(X: np.ndarray, task: str) -> np.ndarray:
    x0 = np.nan_to_num(X[:, 0].astype(float))
    score = x0 + 0.2 * np.nan_to_num(X[:, 1].astype(float)) + (X[:, 4] == "red")
    if task == "classification":
        return np.digitize(score, [-0.3, 0.6]).astype(np.int64)
    return np.round(np.abs(score) * 3.0 + np.abs(X[:, 2].astype(float)), 3)


def _onehot(**params: Any) -> Any:
    """A dense OneHotEncoder under every version (``sparse`` became ``sparse_output`` in 1.2, and went in 1.4)."""
    from sklearn.preprocessing import OneHotEncoder

    return OneHotEncoder(sparse_output=False, **params)


def _columns_forest() -> Any:
    """ColumnTransformer: imputer with indicator + scaler, one-hot (infrequent, unknown), ordinal (max_categories), remainder scaler."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(add_indicator=True)), ("scale", StandardScaler())]), [0, 1]),
            ("onehot", _onehot(handle_unknown="infrequent_if_exist", min_frequency=10), [4]),
            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, max_categories=3), [5]),
            ("code", _onehot(handle_unknown="ignore", drop="first"), [6]),
        ],
        remainder=MinMaxScaler(),
        sparse_threshold=0.0,
    )
    return Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0))])


def _union_boosting() -> Any:
    """FeatureUnion of KBinsDiscretizer (its inner one-hot encoder), PolynomialFeatures, identity FunctionTransformer; GB."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, MaxAbsScaler, PolynomialFeatures, RobustScaler

    union = FeatureUnion(
        [
            ("bins", KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="uniform")),
            ("poly", PolynomialFeatures(degree=2, include_bias=False)),
            ("identity", FunctionTransformer(feature_names_out="one-to-one")),
        ]
    )
    # Columns 2 and 3 hold no NaN; the union sits directly in the ColumnTransformer (a Pipeline
    # around it nested the record deeper than readers allowed when the golden stores were written).
    pre = ColumnTransformer(
        [
            ("union", union, [2, 3]),
            ("robust", RobustScaler(), [3]),
            ("rest", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=0.0)), ("scale", MaxAbsScaler())]), [0, 1]),
        ]
    )
    return Pipeline([("pre", pre), ("gb", GradientBoostingRegressor(n_estimators=5, max_depth=3, random_state=0))])


def _target_selection() -> Any:
    """TransformedTargetRegressor (StandardScaler on y) around SelectFromModel(prefit-free forest) + a tree."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.feature_selection import SelectFromModel
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="mean", add_indicator=True), [0, 1, 2, 3]),
            ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))]), [4, 5]),
        ]
    )
    inner = Pipeline(
        [
            ("pre", pre),
            ("select", SelectFromModel(ExtraTreesRegressor(n_estimators=3, random_state=0), threshold="median")),
            ("tree", DecisionTreeRegressor(max_depth=4, random_state=0)),
        ]
    )
    return TransformedTargetRegressor(regressor=inner, transformer=StandardScaler())


def _log_target() -> Any:
    """TransformedTargetRegressor with numpy.log1p / numpy.expm1 (an allow-listed function pair): predict is recomputed."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    inner = Pipeline([("impute", ColumnTransformer([("num", SimpleImputer(), [0, 1, 2, 3])])), ("forest", RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0))])
    return TransformedTargetRegressor(regressor=inner, func=np.log1p, inverse_func=np.expm1, check_inverse=False)


def _univariate_trees() -> Any:
    """SelectKBest (f_classif; constant one-hot columns score NaN) and SelectPercentile before extra trees."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.feature_selection import SelectKBest, SelectPercentile, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), [0, 1, 2, 3]),
            ("cat", _onehot(handle_unknown="ignore", categories=[["red", "green", "blue", "teal", "rare", "never"]]), [4]),
        ]
    )
    return Pipeline(
        [
            ("pre", pre),
            ("kbest", SelectKBest(f_classif, k=7)),
            ("percentile", SelectPercentile(percentile=60)),
            ("trees", ExtraTreesClassifier(n_estimators=3, max_depth=4, random_state=0)),
        ]
    )


def _pvalues_tree() -> Any:
    """SelectFwe then SelectFdr (p-values of f_regression) before a tree."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_selection import SelectFdr, SelectFwe, f_regression
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures
    from sklearn.tree import DecisionTreeRegressor

    pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer()), ("poly", PolynomialFeatures(degree=2, include_bias=False))]), [0, 1, 2, 3])])
    return Pipeline(
        [
            ("pre", pre),
            ("fwe", SelectFwe(f_regression, alpha=0.5)),
            ("fdr", SelectFdr(f_regression, alpha=0.01)),
            ("tree", DecisionTreeRegressor(max_depth=4, random_state=0)),
        ]
    )


def _skops_pca() -> Any:
    """A PCA step (no treeshard schema): stored with skops, same sklearn minor version only."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    pre = ColumnTransformer([("pca", Pipeline([("impute", SimpleImputer()), ("pca", PCA(n_components=2))]), [0, 1, 2, 3])])
    return Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0))])


CASES: dict[str, PipelineCase] = {
    "Pipeline-columns-forest": PipelineCase(_columns_forest, "classification"),
    "Pipeline-union-boosting": PipelineCase(_union_boosting, "regression"),
    "Pipeline-target-selection": PipelineCase(_target_selection, "regression"),
    "Pipeline-log-target": PipelineCase(_log_target, "regression", ("predict",)),
    "Pipeline-univariate-trees": PipelineCase(_univariate_trees, "classification"),
    "Pipeline-pvalues-tree": PipelineCase(_pvalues_tree, "regression"),
    "Pipeline-skops-pca": PipelineCase(_skops_pca, "classification", skops=True),
}


def fit(case_id: str) -> tuple[Any, np.ndarray]:
    """The fitted pipeline of a case and its query rows."""
    case = CASES[case_id]
    X = data()
    return case.build().fit(X, target(X, case.task)), data(query=True)


def preprocessing(model: Any) -> Any:
    """The transformer part of a case: ``model[:-1]`` of a Pipeline, ``regressor_[:-1]`` of a TransformedTargetRegressor."""
    inner = getattr(model, "regressor_", model)
    return inner[:-1]


def outputs(model: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """predict, predict_proba (when there is one), transform and the output names of the preprocessing."""
    out = {"predict": np.asarray(model.predict(X))}
    if hasattr(model, "predict_proba"):
        out["predict_proba"] = np.asarray(model.predict_proba(X))
    pre = preprocessing(model)
    out["transform"] = np.asarray(pre.transform(X), dtype=np.float64)
    out["get_feature_names_out"] = np.asarray(pre.get_feature_names_out(), dtype=str)
    return out


def predictor_outputs(predictor: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """What the Predictor serves of a case: predict, predict_proba."""
    out = {"predict": np.asarray(predictor.predict(X))}
    if hasattr(predictor, "predict_proba"):
        try:
            out["predict_proba"] = np.asarray(predictor.predict_proba(X))
        except AttributeError:
            pass
    return out


#: Where the first skops step of ``Pipeline-skops-pca`` sits (the ColumnTransformer's template PCA).
SKOPS_WHERE = "pipeline.params.steps[0][1].params.transformers[0][1].params.steps[1][1]"
#: The Predictor's refusal of ``Pipeline-skops-pca`` under every version (it names the fitted PCA).
PREDICTOR_REFUSAL = (
    "UnsupportedEstimatorError: pipeline.params.steps[0][1].fitted.transformers_[0][1].params.steps[1][1]: "
    "sklearn.decomposition._pca.PCA is stored with skops, which needs scikit-learn: the Predictor refuses "
    "a pipeline with a skops step (load it with treeshard.load)"
)


def loading_warns(store: Any, writer: str, reader: str) -> bool:
    """Whether loading the pipeline store (a directory) written under ``writer`` warns under
    ``reader``: as for a single model, only when one of its ensembles may predict otherwise."""
    import json
    from pathlib import Path

    from treeshard.compat import pair_is_exact

    configs = list(_ensemble_configs(json.loads((Path(store) / "zarr.json").read_text())))
    assert configs, store
    return writer != reader and not all(
        pair_is_exact(c["estimator"], writer, reader, value_encoding=c["trees"]["value_encoding"]) for c in configs
    )


def _ensemble_configs(document: Any) -> Any:
    """Every ensemble's config in a pipeline record (a dict naming an ``estimator`` with ``trees``)."""
    if isinstance(document, dict):
        if "estimator" in document and "trees" in document:
            yield document
        for value in document.values():
            yield from _ensemble_configs(value)
    elif isinstance(document, list):
        for value in document:
            yield from _ensemble_configs(value)


def skops_refusal(writer: str, reader: str) -> str:
    """The error loading the skops step written under sklearn ``writer`` raises under another minor version."""
    minor = ".".join(writer.split(".")[:2])
    return (
        f"UnsupportedEstimatorError: {SKOPS_WHERE}: sklearn.decomposition._pca.PCA was stored with skops "
        f"under scikit-learn {writer}; it loads under scikit-learn {minor}.x only (installed: {reader})"
    )


#: The npz names holding the query rows (an object array cannot be stored without pickle).
PACKED = ("X_numbers", "X_strings")


def pack(X: np.ndarray) -> dict[str, np.ndarray]:
    return {"X_numbers": X[:, :4].astype(np.float64), "X_strings": X[:, 4:].astype(str)}


def unpack(arrays: dict[str, np.ndarray]) -> np.ndarray:
    numbers, strings = arrays["X_numbers"], arrays["X_strings"]
    X = np.empty((len(numbers), numbers.shape[1] + strings.shape[1]), dtype=object)
    X[:, : numbers.shape[1]] = numbers
    X[:, numbers.shape[1] :] = strings.astype(object)
    return X

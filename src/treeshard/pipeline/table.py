"""The allow-list of pipeline nodes: each id fixes a class and the fitted attributes it may carry.

A store names a class by id; the class is imported from the path written
here, never from a name read from a file. Ensembles (section 6 of
``docs/FORMAT.md``) are stored as node columns when fitted; their ids also
appear here, for unfitted templates (a ``ColumnTransformer``'s
``transformers`` param, a ``SelectFromModel``'s ``estimator`` param).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Attributes every estimator may carry (``n_features_in_`` and friends, ``set_output``'s choice).
COMMON_FITTED = ("n_features_in_", "feature_names_in_", "_sklearn_output_config")


@dataclass(frozen=True)
class Kind:
    """One allow-listed class: where it lives and the fitted attributes it may carry (union over sklearn 1.3-1.9)."""

    module: str
    name: str
    fitted: tuple[str, ...] = ()
    composite: bool = False

    @property
    def fitted_names(self) -> frozenset[str]:
        return frozenset(self.fitted + COMMON_FITTED)


_PRE = "sklearn.preprocessing"
KINDS: dict[str, Kind] = {
    "Pipeline": Kind("sklearn.pipeline", "Pipeline", composite=True),
    "FeatureUnion": Kind("sklearn.pipeline", "FeatureUnion", composite=True),
    "ColumnTransformer": Kind(
        "sklearn.compose",
        "ColumnTransformer",
        (
            "transformers_",
            "_columns",
            "_transformer_to_input_indices",
            "_remainder",
            "sparse_output_",
            "output_indices_",
            "_n_features",
            "_name_to_fitted_passthrough",
            "_transformers_feature_names_out",  # set_output(transform="pandas")
        ),
        composite=True,
    ),
    "TransformedTargetRegressor": Kind(
        "sklearn.compose", "TransformedTargetRegressor", ("regressor_", "transformer_", "_training_dim"), composite=True
    ),
    "StandardScaler": Kind(_PRE, "StandardScaler", ("n_samples_seen_", "mean_", "var_", "scale_")),
    "MinMaxScaler": Kind(_PRE, "MinMaxScaler", ("n_samples_seen_", "scale_", "min_", "data_min_", "data_max_", "data_range_")),
    "MaxAbsScaler": Kind(_PRE, "MaxAbsScaler", ("n_samples_seen_", "max_abs_", "scale_")),
    "RobustScaler": Kind(_PRE, "RobustScaler", ("center_", "scale_")),
    "SimpleImputer": Kind("sklearn.impute", "SimpleImputer", ("statistics_", "indicator_", "_fit_dtype", "_fill_dtype")),
    "MissingIndicator": Kind("sklearn.impute", "MissingIndicator", ("features_", "_n_features", "_precomputed")),
    "OneHotEncoder": Kind(
        _PRE,
        "OneHotEncoder",
        (
            "categories_",
            "drop_idx_",
            "_drop_idx_after_grouping",
            "_infrequent_enabled",
            "_infrequent_indices",
            "_default_to_infrequent_mappings",
            "_n_features_outs",
            "_missing_indices",
        ),
    ),
    "OrdinalEncoder": Kind(
        _PRE,
        "OrdinalEncoder",
        ("categories_", "_missing_indices", "_infrequent_enabled", "_infrequent_indices", "_default_to_infrequent_mappings"),
    ),
    "KBinsDiscretizer": Kind(_PRE, "KBinsDiscretizer", ("bin_edges_", "n_bins_", "_encoder")),
    "PolynomialFeatures": Kind(_PRE, "PolynomialFeatures", ("_min_degree", "_max_degree", "n_output_features_", "_n_out_full", "n_input_features_")),
    "FunctionTransformer": Kind(_PRE, "FunctionTransformer"),
    "Binarizer": Kind(_PRE, "Binarizer"),
    "Normalizer": Kind(_PRE, "Normalizer"),
    "QuantileTransformer": Kind(_PRE, "QuantileTransformer", ("n_quantiles_", "quantiles_", "references_")),
    "PowerTransformer": Kind(_PRE, "PowerTransformer", ("lambdas_", "_scaler")),
    "TargetEncoder": Kind(
        _PRE,
        "TargetEncoder",
        ("categories_", "encodings_", "target_type_", "classes_", "target_mean_", "_infrequent_enabled", "_infrequent_indices", "_default_to_infrequent_mappings"),
    ),
    "VarianceThreshold": Kind("sklearn.feature_selection", "VarianceThreshold", ("variances_",)),
    "SelectFromModel": Kind("sklearn.feature_selection", "SelectFromModel", ("estimator_", "max_features_")),
    "SelectKBest": Kind("sklearn.feature_selection", "SelectKBest", ("scores_", "pvalues_")),
    "SelectPercentile": Kind("sklearn.feature_selection", "SelectPercentile", ("scores_", "pvalues_")),
    "SelectFpr": Kind("sklearn.feature_selection", "SelectFpr", ("scores_", "pvalues_")),
    "SelectFdr": Kind("sklearn.feature_selection", "SelectFdr", ("scores_", "pvalues_")),
    "SelectFwe": Kind("sklearn.feature_selection", "SelectFwe", ("scores_", "pvalues_")),
    "GenericUnivariateSelect": Kind("sklearn.feature_selection", "GenericUnivariateSelect", ("scores_", "pvalues_")),
}
#: The univariate selectors: a fitted one is its scores and p-values (``checks.univariate_support``).
UNIVARIATE = ("SelectKBest", "SelectPercentile", "SelectFpr", "SelectFdr", "SelectFwe", "GenericUnivariateSelect")
#: ``GenericUnivariateSelect``'s modes: the selector each stands for, and the param its ``param`` sets.
UNIVARIATE_MODES = {
    "k_best": ("SelectKBest", "k"),
    "percentile": ("SelectPercentile", "percentile"),
    "fpr": ("SelectFpr", "alpha"),
    "fdr": ("SelectFdr", "alpha"),
    "fwe": ("SelectFwe", "alpha"),
}

#: Ensemble families stored as node columns inside a pipeline (every family of ``adapters/families.py``).
PIPELINE_FAMILIES = ("forest", "boosting", "tree", "hist_boosting", "isolation")

#: Functions a ``FunctionTransformer`` or ``TransformedTargetRegressor`` may hold, by id.
TRANSFORM_FUNCTIONS: dict[str, tuple[str, str]] = {
    f"numpy.{name}": ("numpy", name)
    for name in ("log1p", "expm1", "log", "exp", "sqrt", "square", "abs", "log2", "log10", "exp2", "cbrt", "arcsinh", "sinh", "tanh", "arctanh", "reciprocal", "negative")
}
#: The ``score_func`` a ``SelectKBest`` or ``SelectPercentile`` may hold, by id (only a refit calls it).
SCORE_FUNCTIONS: dict[str, tuple[str, str]] = {
    f"sklearn.feature_selection.{name}": ("sklearn.feature_selection", name)
    for name in ("f_classif", "f_regression", "chi2", "mutual_info_classif", "mutual_info_regression", "r_regression")
}
#: Every function a store may name.
FUNCTIONS: dict[str, tuple[str, str]] = {**TRANSFORM_FUNCTIONS, **SCORE_FUNCTIONS}
#: Where each table applies: class id -> (the table, the params that take one of its functions).
FUNCTION_PARAMS: dict[str, tuple[dict[str, tuple[str, str]], tuple[str, ...]]] = {
    "FunctionTransformer": (TRANSFORM_FUNCTIONS, ("func", "inverse_func")),
    "TransformedTargetRegressor": (TRANSFORM_FUNCTIONS, ("func", "inverse_func")),
    **{kind: (SCORE_FUNCTIONS, ("score_func",)) for kind in UNIVARIATE},
}


def kind_class(kind_id: str) -> type:
    """The class of an allow-listed id (ensemble ids come from the adapters' table)."""
    import importlib

    kind = KINDS.get(kind_id)
    if kind is None:
        from ..adapters import ADAPTERS

        return ADAPTERS[kind_id].estimator_class()
    return getattr(importlib.import_module(kind.module), kind.name)


def function_of(function_id: str):  # noqa: ANN201 - a numpy ufunc
    import importlib

    module, name = FUNCTIONS[function_id]
    return getattr(importlib.import_module(module), name)

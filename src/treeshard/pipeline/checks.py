"""Relations between a transformer's fitted attributes, checked before any is set (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

#: Per id: fitted attributes that are, when present and not None, float vectors of n_features_in_ values.
_VECTORS = {
    "StandardScaler": ("mean_", "var_", "scale_"),
    "MinMaxScaler": ("scale_", "min_", "data_min_", "data_max_", "data_range_"),
    "MaxAbsScaler": ("max_abs_", "scale_"),
    "RobustScaler": ("center_", "scale_"),
    "VarianceThreshold": ("variances_",),
}


def check_fitted(where: str, kind_id: str, fitted: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` if the fitted attributes of a ``kind_id`` contradict each other."""
    where = f"{where}.fitted"
    n = fitted.get("n_features_in_")
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"{where}.n_features_in_: expected a positive integer, got {n!r}")
    names = fitted.get("feature_names_in_")
    if names is not None and not (
        isinstance(names, np.ndarray) and names.shape == (n,) and all(isinstance(v, str) for v in names.tolist())
    ):
        raise ConfigError(f"{where}.feature_names_in_: expected an array of {n} strings")
    for name in _VECTORS.get(kind_id, ()):
        _vector(f"{where}.{name}", fitted.get(name), n)
    if kind_id == "SimpleImputer":
        stats = fitted.get("statistics_")
        if not (isinstance(stats, np.ndarray) and stats.shape == (n,)):
            raise ConfigError(f"{where}.statistics_: expected an array of {n} values")
    if kind_id in ("OneHotEncoder", "OrdinalEncoder"):
        categories = fitted.get("categories_")
        if not (isinstance(categories, list) and len(categories) == n and all(isinstance(c, np.ndarray) and c.ndim == 1 for c in categories)):
            raise ConfigError(f"{where}.categories_: expected a list of {n} 1-D arrays")
        for i, c in enumerate(categories):
            if c.dtype.kind not in "fiuUO":
                raise ConfigError(f"{where}.categories_[{i}]: unsupported dtype {c.dtype}")
    if kind_id == "MissingIndicator":
        features, total = fitted.get("features_"), fitted.get("_n_features")
        if not (isinstance(total, int) and isinstance(features, np.ndarray) and features.ndim == 1 and features.dtype.kind in "iu"):
            raise ConfigError(f"{where}.features_: expected an integer array and _n_features")
        if features.size and (features.min() < 0 or features.max() >= total):
            raise ConfigError(f"{where}.features_: a feature index is out of range for {total} features")


def _vector(where: str, value: Any, n: int) -> None:
    if value is None:
        return
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.shape == (n,)):
        shape = getattr(value, "shape", type(value).__name__)
        raise ConfigError(f"{where}: expected {n} floats, got {shape}")

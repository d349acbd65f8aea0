"""Training data and query rows shared by the test modules."""

from __future__ import annotations

from typing import Any

import numpy as np


N_SAMPLES = 160
N_FEATURES = 5


def make_data(task: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` for a task: binary, multiclass, multioutput (classification),
    multioutput_regression, regression, string or bool labels, nan (NaN in X)."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    score = X[:, 0] + 0.5 * X[:, 1] - 0.25 * X[:, 2] + 0.3 * rng.normal(size=N_SAMPLES)
    if task == "binary":
        return X, (score > 0).astype(np.int64)
    if task == "multiclass":
        return X, np.digitize(score, [-0.6, 0.0, 0.6]).astype(np.int64)
    if task == "string":
        return X, np.array(["cat", "dog", "mouse"])[np.digitize(score, [-0.5, 0.5])]
    if task == "bool":
        return X, score > 0.2
    if task == "multilabel":
        return X, np.column_stack([(score > 0).astype(np.int64), (X[:, 3] > 0).astype(np.int64)])
    if task == "multioutput":
        second = np.digitize(X[:, 3] - X[:, 1], [-0.5, 0.5])
        return X, np.column_stack([(score > 0).astype(np.int64), second])
    if task == "regression":
        return X, score * 10.0
    if task == "multioutput_regression":
        return X, np.column_stack([score, X[:, 3] ** 2 - X[:, 4]])
    if task == "nan":
        X[rng.rand(*X.shape) < 0.15] = np.nan
        return X, (score > 0).astype(np.int64)
    raise ValueError(task)


def query_points(X: np.ndarray, estimator: Any = None) -> np.ndarray:
    """Rows to predict on: the training rows plus far-out ones, and rows with NaN
    when ``estimator`` accepts missing values."""
    rng = np.random.RandomState(99)
    extra = rng.normal(scale=3.0, size=(20, X.shape[1]))
    extra[1::4, 0] = 1e30
    extra[2::4, 0] = -1e30
    if estimator is not None and estimator.__sklearn_tags__().input_tags.allow_nan:
        extra[::3, -1] = np.nan
    return np.vstack([X, extra])


def query_targets(y: np.ndarray) -> np.ndarray:
    """Targets for :func:`query_points` (to compute ``score``): ``y`` plus 20 of its rows."""
    y = np.asarray(y)
    return np.concatenate([y, y[np.arange(20) % len(y)]])

"""IsolationForest in the flat predictor: set-up and scores, numpy only (no sklearn).

An IsolationForest's tree ``t`` sees the columns ``estimators_features_[t]``
of X: the split features of each tree are mapped to X's own columns once,
when the trees are laid out, and the traversal then reads X directly.
Each node's value becomes sklearn's per-node path term
``(decision_path_lengths + average_path_length_per_tree) - 1.0``, so that the
compiled sum (tree by tree in tree order, from zeros, per row) is exactly
the ``depths`` array of sklearn's ``_compute_score_samples``. The rest is
sklearn's arithmetic, operation for operation (``docs/FORMAT.md`` 6.3).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adapters.base import decode_fitted, decode_param
from ..adapters.isolation_forest import IFOREST_ARRAYS, IFOREST_FITTED, check_isolation_arrays, check_isolation_fitted
from ..columns import NodeColumns
from ..errors import ConfigError
from ..record import Config

if TYPE_CHECKING:
    from ..reader import StoreReader


@dataclasses.dataclass
class IsolationModel:
    """What scoring needs beyond the trees: the record's scalars, checked."""

    n_features_in: int
    max_features: int
    max_samples: Any  # as stored (int or numpy integer): sklearn passes it to np.log as it is
    offset: Any  # float or np.float64, as stored
    bootstrap: bool
    fitted: dict[str, Any]  # the decoded record, for the array checks

    @classmethod
    def from_config(cls, config: Config) -> IsolationModel:
        raw = {name: value for name, value in config.fitted.items() if name in IFOREST_FITTED}
        fitted = decode_fitted(raw, IFOREST_FITTED)
        check_isolation_fitted(fitted, config.trees)
        bootstrap = decode_param("config.params.bootstrap", config.params.get("bootstrap", False))
        if not isinstance(bootstrap, (bool, np.bool_)):
            raise ConfigError(f"config.params.bootstrap: expected a boolean, got {bootstrap!r}")
        return cls(int(fitted["n_features_in_"]), int(fitted["_max_features"]), fitted["_max_samples"], fitted["offset_"], bool(bootstrap), fitted)

    def prepare(self, reader: StoreReader, runs: list[tuple[int, int]], columns: NodeColumns) -> NodeColumns:
        """``columns`` (validated, of the trees in ``runs``) with X's own column in ``feature``
        and sklearn's per-node path term as the one ``value``."""
        arrays = {name: array for name in IFOREST_ARRAYS if (array := reader.read_extra(name)) is not None}
        checked = check_isolation_arrays(arrays, self.fitted, reader.config.trees, bootstrap=self.bootstrap)
        tree_ptr = reader.tree_ptr
        trees = np.concatenate([np.arange(first, stop) for first, stop in runs])
        nodes = np.concatenate([np.arange(tree_ptr[first], tree_ptr[stop]) for first, stop in runs])
        # sklearn: depths += dpl[leaf] + apl[leaf] - 1.0, i.e. (int64 + float64) - 1.0, per tree
        term = checked.decision_path_lengths[nodes] + checked.average_path_lengths[nodes]
        term -= 1.0
        feature = columns.feature
        if self.max_features != self.n_features_in:
            # sklearn fits and scores tree t on X[:, estimators_features_[t]] (not when every column is drawn)
            tree_of_node = np.repeat(np.arange(len(trees)), np.diff(columns.tree_ptr))
            split = feature >= 0
            feature = feature.copy()
            feature[split] = checked.features[trees[tree_of_node[split]], feature[split]]
        return dataclasses.replace(columns, feature=feature, value=term.reshape(-1, 1))

    def score_samples(self, depths: np.ndarray, n_trees: int) -> np.ndarray:
        """sklearn's ``score_samples`` from the summed path terms ``depths`` (n_rows,)."""
        denominator = n_trees * average_path_length([self.max_samples])
        scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
        return -scores

    def decision_function(self, scores: np.ndarray) -> np.ndarray:
        return scores - self.offset

    @staticmethod
    def predict(decision: np.ndarray) -> np.ndarray:
        is_inlier = np.ones_like(decision, dtype=int)
        is_inlier[decision < 0] = -1
        return is_inlier


def average_path_length(n_samples_leaf: Any) -> np.ndarray:
    """sklearn's ``_average_path_length``, operation for operation (its ``np.log`` runs here)."""
    n_samples_leaf = np.asarray(n_samples_leaf)
    shape = n_samples_leaf.shape
    n_samples_leaf = n_samples_leaf.reshape((1, -1))
    average = np.zeros(n_samples_leaf.shape)
    mask_1 = n_samples_leaf <= 1
    mask_2 = n_samples_leaf == 2
    not_mask = ~np.logical_or(mask_1, mask_2)
    average[mask_1] = 0.0
    average[mask_2] = 1.0
    average[not_mask] = 2.0 * (np.log(n_samples_leaf[not_mask] - 1.0) + np.euler_gamma) - 2.0 * (n_samples_leaf[not_mask] - 1.0) / n_samples_leaf[not_mask]
    return average.reshape(shape)


def setup_isolation(predictor: Any, config: Config) -> IsolationModel:
    """The Predictor's model attributes for an IsolationForest: X has ``n_features_in_`` columns,
    each tree reads ``_max_features`` of them; NaN and infinity are scored as sklearn 1.6+ does."""
    model = IsolationModel.from_config(config)
    predictor.config = config
    predictor._layout = config.trees
    predictor.estimator = config.estimator
    predictor._is_forest = predictor._is_boosting = predictor._is_tree = predictor._is_classifier = False
    predictor._allow_nan = True
    predictor.n_features_in_ = model.n_features_in
    names = model.fitted.get("feature_names_in_")
    if names is not None:
        if not all(isinstance(v, str) for v in names.tolist()):
            raise ConfigError(f"config.fitted.feature_names_in_: expected {model.n_features_in} strings")
        predictor.feature_names_in_ = names.astype(object)
    predictor.n_estimators = config.trees.n_trees
    predictor.n_outputs_ = 1
    predictor.offset_ = model.offset
    return model

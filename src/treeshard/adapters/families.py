"""The one table of supported estimators: id -> family, sklearn module, classifier or not.

sklearn-free (the :class:`~treeshard.Predictor` reads it too). A new estimator
is one row here and one adapter; nothing else names estimator classes.
"""

from __future__ import annotations

from dataclasses import dataclass

FOREST = "forest"  # bagged trees in ``estimators_`` (a list); predictions averaged
BOOSTING = "boosting"  # stages of regression trees in ``estimators_`` (a 2-D array); predictions summed
TREE = "tree"  # one tree in ``tree_``
HIST_BOOSTING = "hist_boosting"  # iterations of TreePredictor objects in ``_predictors``; predictions summed
ISOLATION = "isolation"  # IsolationForest: bagged trees on feature subsets in ``estimators_``; path lengths averaged
#: Families whose trees are independent: loaded lazily and in any subset.
BAGGED = frozenset({FOREST, ISOLATION})


@dataclass(frozen=True)
class EstimatorKind:
    """What treeshard knows about one supported estimator class, without importing it."""

    estimator_id: str
    family: str
    module: str
    is_classifier: bool
    #: ``predict`` accepts NaN (sklearn's missing-value support); with a random splitter, any tree estimator does.
    takes_nan: bool = False

    @property
    def estimator_type(self) -> str:
        """sklearn's ``_estimator_type``: ``"classifier"``, ``"regressor"`` or ``"outlier_detector"``."""
        if self.family == ISOLATION:
            return "outlier_detector"
        return "classifier" if self.is_classifier else "regressor"


ESTIMATORS: dict[str, EstimatorKind] = {
    kind.estimator_id: kind
    for kind in (
        EstimatorKind("RandomForestClassifier", FOREST, "sklearn.ensemble", is_classifier=True, takes_nan=True),
        EstimatorKind("RandomForestRegressor", FOREST, "sklearn.ensemble", is_classifier=False, takes_nan=True),
        EstimatorKind("ExtraTreesClassifier", FOREST, "sklearn.ensemble", is_classifier=True, takes_nan=True),
        EstimatorKind("ExtraTreesRegressor", FOREST, "sklearn.ensemble", is_classifier=False, takes_nan=True),
        EstimatorKind("GradientBoostingClassifier", BOOSTING, "sklearn.ensemble", is_classifier=True),
        EstimatorKind("GradientBoostingRegressor", BOOSTING, "sklearn.ensemble", is_classifier=False),
        EstimatorKind("DecisionTreeClassifier", TREE, "sklearn.tree", is_classifier=True, takes_nan=True),
        EstimatorKind("DecisionTreeRegressor", TREE, "sklearn.tree", is_classifier=False, takes_nan=True),
        EstimatorKind("ExtraTreeClassifier", TREE, "sklearn.tree", is_classifier=True),
        EstimatorKind("ExtraTreeRegressor", TREE, "sklearn.tree", is_classifier=False),
        EstimatorKind("HistGradientBoostingClassifier", HIST_BOOSTING, "sklearn.ensemble", is_classifier=True),
        EstimatorKind("HistGradientBoostingRegressor", HIST_BOOSTING, "sklearn.ensemble", is_classifier=False),
        EstimatorKind("IsolationForest", ISOLATION, "sklearn.ensemble", is_classifier=False, takes_nan=True),
    )
}


def ids_of(family: str) -> list[str]:
    """The estimator ids of one family, in table order."""
    return [kind.estimator_id for kind in ESTIMATORS.values() if kind.family == family]


def family_of(estimator_id: str) -> str | None:
    """The family of an estimator id; None for an id not in the table."""
    kind = ESTIMATORS.get(estimator_id)
    return None if kind is None else kind.family

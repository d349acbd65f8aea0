"""The table of supported estimators agrees with the adapters and with sklearn itself."""

from __future__ import annotations

import importlib

import pytest
from sklearn.base import is_classifier, is_outlier_detector, is_regressor

from treeshard.adapters import ADAPTERS
from treeshard.adapters.families import BAGGED, BOOSTING, ESTIMATORS, FOREST, HIST_BOOSTING, ISOLATION, TREE, family_of, ids_of


def test_every_row_has_one_adapter_and_no_adapter_lacks_a_row() -> None:
    assert sorted(ADAPTERS) == sorted(ESTIMATORS)
    assert sorted(ids_of(FOREST) + ids_of(BOOSTING) + ids_of(TREE) + ids_of(HIST_BOOSTING) + ids_of(ISOLATION)) == sorted(ESTIMATORS)
    assert ids_of(ISOLATION) == ["IsolationForest"] and BAGGED == {FOREST, ISOLATION}


@pytest.mark.parametrize("estimator_id", sorted(ESTIMATORS))
def test_row_matches_the_sklearn_class(estimator_id: str) -> None:
    kind = ESTIMATORS[estimator_id]
    cls = getattr(importlib.import_module(kind.module), estimator_id)
    assert ADAPTERS[estimator_id].estimator_class() is cls
    assert kind.is_classifier == is_classifier(cls())
    assert is_regressor(cls()) == (kind.family != ISOLATION and not kind.is_classifier)
    assert is_outlier_detector(cls()) == (kind.family == ISOLATION)
    assert family_of(estimator_id) == kind.family
    assert hasattr(cls(), "tree_") is False and ("estimators_" in cls.__doc__) == (kind.family in (FOREST, BOOSTING, ISOLATION))


def test_unknown_id_has_no_family() -> None:
    assert family_of("OneClassSVM") is None
    assert family_of("") is None

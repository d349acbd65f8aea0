"""The allow-list of supported estimators: one adapter per class, keyed by a fixed id.

A store names its estimator by id; only the classes in :data:`ADAPTERS` can
ever be built, and nothing is imported by a name read from a file.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedEstimatorError
from . import forest, gradient_boosting, trees
from . import hist_gradient_boosting
from . import isolation_forest
from .base import Adapter, SavedModel

ADAPTERS: dict[str, Adapter] = {
    adapter.estimator_id: adapter
    for adapter in (
        *forest.ADAPTERS,
        *gradient_boosting.ADAPTERS,
        *trees.ADAPTERS,
        *hist_gradient_boosting.ADAPTERS,
        *isolation_forest.ADAPTERS,
    )
}
ESTIMATOR_IDS = frozenset(ADAPTERS)


def adapter_for(estimator: Any) -> Adapter:
    """The adapter of a fitted estimator's exact class (subclasses are not supported)."""
    cls = type(estimator)
    adapter = ADAPTERS.get(cls.__name__)
    if adapter is None or cls.__module__.split(".")[0] != "sklearn" or adapter.estimator_class() is not cls:
        supported = ", ".join(sorted(ADAPTERS))
        raise UnsupportedEstimatorError(f"{cls.__module__}.{cls.__qualname__} is not supported; supported: {supported}")
    return adapter


__all__ = ["ADAPTERS", "ESTIMATOR_IDS", "Adapter", "SavedModel", "adapter_for"]

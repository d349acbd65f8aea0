"""treeshard: scikit-learn tree ensembles as pickle-free, sharded zarr stores.

>>> import treeshard
>>> treeshard.save(model, "model.zip")          # doctest: +SKIP
>>> model = treeshard.load("model.zip")         # doctest: +SKIP
>>> treeshard.open("model.zip").info            # doctest: +SKIP
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ArrayError,
    ConfigError,
    FormatError,
    IntegrityError,
    MemoryBudgetError,
    MissingDependencyError,
    RemoteStoreError,
    SignatureError,
    SklearnVersionWarning,
    StoreExistsError,
    StoreNotFoundError,
    TreeshardError,
    TreeStructureError,
    UnsupportedEstimatorError,
    UnsupportedFormatVersionError,
    UnverifiedStoreWarning,
)
from .predictor import Predictor  # noqa: E402
from .stores import InvalidStoreError  # noqa: E402

# The save/load API imports zarr's machinery (asyncio, threads); it is imported on
# first use so that ``import treeshard`` stays cheap for the sklearn-free Predictor.
_API = frozenset({"save", "load", "open", "ModelHandle", "ModelInfo"})


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'treeshard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)


__all__ = [
    "save",
    "load",
    "open",
    "ModelHandle",
    "ModelInfo",
    "Predictor",
    "TreeshardError",
    "FormatError",
    "ConfigError",
    "ArrayError",
    "TreeStructureError",
    "IntegrityError",
    "MemoryBudgetError",
    "SignatureError",
    "MissingDependencyError",
    "RemoteStoreError",
    "UnsupportedFormatVersionError",
    "UnsupportedEstimatorError",
    "StoreNotFoundError",
    "StoreExistsError",
    "InvalidStoreError",
    "SklearnVersionWarning",
    "UnverifiedStoreWarning",
]

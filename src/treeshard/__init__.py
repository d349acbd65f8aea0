"""treeshard: scikit-learn tree ensembles as pickle-free, sharded zarr stores.

>>> import treeshard
>>> treeshard.save(model, "model.zip")          # doctest: +SKIP
>>> model = treeshard.load("model.zip")         # doctest: +SKIP
>>> treeshard.open("model.zip").info            # doctest: +SKIP
"""

__version__ = "0.1.0"

from .api import ModelHandle, ModelInfo, load, open, save  # noqa: E402
from .errors import (  # noqa: E402
    ArrayError,
    ConfigError,
    FormatError,
    IntegrityError,
    SklearnVersionWarning,
    StoreExistsError,
    StoreNotFoundError,
    TreeshardError,
    TreeStructureError,
    UnsupportedEstimatorError,
    UnsupportedFormatVersionError,
)
from .stores import InvalidStoreError  # noqa: E402

__all__ = [
    "save",
    "load",
    "open",
    "ModelHandle",
    "ModelInfo",
    "TreeshardError",
    "FormatError",
    "ConfigError",
    "ArrayError",
    "TreeStructureError",
    "IntegrityError",
    "UnsupportedFormatVersionError",
    "UnsupportedEstimatorError",
    "StoreNotFoundError",
    "StoreExistsError",
    "InvalidStoreError",
    "SklearnVersionWarning",
]

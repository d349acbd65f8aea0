"""treeshard: scikit-learn tree ensembles as pickle-free, sharded zarr stores.

>>> import treeshard
>>> treeshard.save(model, "model.zip")          # doctest: +SKIP
>>> model = treeshard.load("model.zip")         # doctest: +SKIP
>>> treeshard.open("model.zip").info            # doctest: +SKIP
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    AliasConflictError,
    ArrayError,
    ConfigError,
    ConversionError,
    FormatError,
    IntegrityError,
    InvalidStoreError,
    MemoryBudgetError,
    MissingDependencyError,
    RefNotFoundError,
    RemoteStoreError,
    RepositoryError,
    RequestError,
    SignatureError,
    SklearnVersionWarning,
    StoreExistsError,
    StoreNotFoundError,
    TreeshardError,
    TreeStructureError,
    UnsupportedEstimatorError,
    UnsupportedFormatVersionError,
    UnverifiedStoreWarning,
    VersionInUseError,
)
from .predictor import Predictor  # noqa: E402

# The save/load API imports zarr's machinery (asyncio, threads); it and the other
# tools are imported on first use so that ``import treeshard`` stays cheap for the
# sklearn-free Predictor. name -> (module, attribute)
_LAZY = {
    "save": ("api", "save"),
    "load": ("api", "load"),
    "open": ("api", "open"),
    "ModelHandle": ("api", "ModelHandle"),
    "ModelInfo": ("api", "ModelInfo"),
    "verify": ("integrity", "verify_path"),
    "sign": ("integrity", "sign_store"),
    "generate_key_pair": ("integrity", "generate_key_pair"),
    "convert_pickle": ("convert", "convert_pickle"),
    "clear_opened": ("distributed", "clear_opened"),
    "Repository": ("repository", "Repository"),
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'treeshard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "save",
    "load",
    "open",
    "ModelHandle",
    "ModelInfo",
    "Predictor",
    "verify",
    "sign",
    "generate_key_pair",
    "convert_pickle",
    "clear_opened",
    "Repository",
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
    "ConversionError",
    "RequestError",
    "RepositoryError",
    "RefNotFoundError",
    "AliasConflictError",
    "VersionInUseError",
    "SklearnVersionWarning",
    "UnverifiedStoreWarning",
]

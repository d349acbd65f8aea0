"""The exceptions and warnings treeshard raises.

Every error derives from :class:`TreeshardError` and also from the builtin it
resembles, so ``except ValueError`` keeps working for code that does not know
treeshard.
"""

from __future__ import annotations

__all__ = [
    "TreeshardError",
    "FormatError",
    "ConfigError",
    "ArrayError",
    "TreeStructureError",
    "IntegrityError",
    "SignatureError",
    "MissingDependencyError",
    "UnsupportedFormatVersionError",
    "UnsupportedEstimatorError",
    "MemoryBudgetError",
    "StoreNotFoundError",
    "StoreExistsError",
    "RemoteStoreError",
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


class TreeshardError(Exception):
    """Base class of every error raised by treeshard."""


class FormatError(TreeshardError, ValueError):
    """A store is malformed: the message names the field or array at fault."""


class ConfigError(FormatError):
    """The JSON config record is missing, malformed or inconsistent."""


class UnsupportedFormatVersionError(ConfigError):
    """The store declares a ``format_version`` this treeshard cannot read."""


class ArrayError(FormatError):
    """A stored array is missing or has the wrong dtype, shape or size."""


class TreeStructureError(FormatError):
    """Node arrays do not describe valid trees (cycles, out-of-range ids, ...)."""


class IntegrityError(FormatError):
    """Stored bytes are corrupt: a checksum fails or a chunk does not decode."""


class SignatureError(IntegrityError):
    """A store is unsigned, signed with another key, or differs from what was signed."""


class MissingDependencyError(TreeshardError, ImportError):
    """An optional feature needs a package that is not installed (the message says which)."""


class MemoryBudgetError(TreeshardError, ValueError):
    """The selected trees cannot be loaded within ``max_memory`` (only lazy forests stream)."""


class UnsupportedEstimatorError(TreeshardError, TypeError):
    """The estimator (or one of its parts) is not supported by treeshard."""


class StoreNotFoundError(TreeshardError, FileNotFoundError):
    """No treeshard store exists at the given location."""


class StoreExistsError(TreeshardError, FileExistsError):
    """Saving would replace an existing store and ``overwrite=True`` was not given."""


class RemoteStoreError(TreeshardError, OSError):
    """Reading or writing a remote store (``s3://``, ``http://``, ...) failed: network, permission, server."""


class InvalidStoreError(TreeshardError, TypeError):
    """The ``store`` argument is not a path, a URL or a zarr store."""


class ConversionError(TreeshardError, ValueError):
    """A file given to ``treeshard convert`` (:func:`treeshard.convert_pickle`) could not be unpickled."""


class RequestError(TreeshardError, ValueError):
    """A request given to a pipeline ``Predictor`` as columns or records does not match the model's
    inputs: missing or unknown columns, columns of different lengths, values of the wrong type."""


class RepositoryError(TreeshardError):
    """A model repository (:class:`treeshard.Repository`) cannot do what was asked."""


class RefNotFoundError(RepositoryError, LookupError):
    """No version or alias of that name in the repository (or a malformed reference)."""


class AliasConflictError(RepositoryError):
    """An alias move lost a compare-and-swap: the alias no longer names the expected version."""


class VersionInUseError(RepositoryError, ValueError):
    """A version cannot be deleted while an alias names it."""


class SklearnVersionWarning(UserWarning):
    """The store was written with another scikit-learn version than the one installed.

    The model still loads (treeshard rebuilds trees for the installed layout),
    but the user may want to re-validate it. ``saved`` and ``installed`` carry
    both versions.
    """

    def __init__(self, saved: str, installed: str) -> None:
        self.saved = saved
        self.installed = installed
        super().__init__(
            f"store was written with scikit-learn {saved}; installed is {installed}. "
            "Trees are rebuilt for the installed version; check the model's outputs."
        )


class UnverifiedStoreWarning(UserWarning):
    """The store has no ``treeshard.sha256`` digest record: its chunks cannot be checked.

    Every chunk still passes its crc32c checksum, but a chunk file swapped with
    another of the same array or moved from another store would load silently
    as a different model. Re-save the model (any treeshard save writes the
    record) to have every read checked. ``location`` names the store.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__(
            f"{location}: no treeshard.sha256 digest record, so chunks cannot be checked against what was saved "
            "(a swapped or replaced chunk file would load as a different model); re-save the model to add one"
        )

"""Which classes count as a :class:`~treeshard.Predictor`, and which methods one has.

``treeshard.Predictor(store)`` becomes a :class:`~treeshard.predictor.hist.HistPredictor`
for a histogram gradient boosting store and a
:class:`~treeshard.pipeline.serve.PipelinePredictor` for a pipeline store.
Those modules cannot subclass ``Predictor`` (its module imports them), so
they register here, a module that imports nothing of the package, and
``Predictor``'s metaclass counts them in ``isinstance`` and ``issubclass``.
"""

from __future__ import annotations

from typing import Any, TypeVar

_T = TypeVar("_T", bound=type)

_SERVED: list[type] = []


def served_as_predictor(cls: _T) -> _T:
    """Class decorator: instances of ``cls`` are instances of :class:`~treeshard.Predictor`."""
    _SERVED.append(cls)
    return cls


class PredictorMeta(type):
    """Metaclass of :class:`~treeshard.Predictor`: it also counts the registered classes as its own."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls.__subclasscheck__(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        if type.__subclasscheck__(cls, subclass):
            return True
        # Only the class that declares the metaclass (Predictor), not classes derived from it.
        return cls.__dict__.get("_registry_root", False) and any(issubclass(subclass, served) for served in _SERVED)


class PredictorMethod:
    """A method a Predictor has only for some estimators (like sklearn's ``available_if``):
    ``@PredictorMethod("_is_classifier")`` on ``predict_proba``."""

    def __init__(self, check: str) -> None:
        self.check = check

    def __call__(self, fn: Any) -> PredictorMethod:
        self.fn = fn
        self.__doc__ = fn.__doc__
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.fn
        if not getattr(obj, self.check):
            raise AttributeError(f"this Predictor ({obj.estimator}) has no {self.name}()")
        return self.fn.__get__(obj, owner)

"""Strategies: ways to get a working model from a file of some format.

``joblib.load``, ``treeshard.load(lazy=False)``, ``treeshard.load(lazy=True)``,
``treeshard.Predictor``, an onnxruntime session... A strategy whose package
is not installed is listed with the reason (naming the extra that adds it).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .formats import FORMATS, missing_packages

#: The strategy every ratio is relative to.
BASELINE = "joblib"
#: Number of trees (gradient boosting: stages) read by a partial load.
PARTIAL_TREES = 10
N_ROWS = 1000


@dataclass(frozen=True)
class Strategy:
    """One way to turn a file of some format into a model that predicts.

    ``imports`` and ``load``/``partial`` are Python source: the child process
    runs them verbatim (so only what the strategy needs is imported), and
    :meth:`loader` compiles the same text for in-process benchmarks.
    ``load`` assigns ``model`` from ``path``; ``partial`` does the same for
    the first ``k`` trees, or is None when the format can only load it all.
    When ``sklearn`` is true (the strategy returns a sklearn estimator), the
    estimator's sklearn package is imported with the library, as a handler
    module would at its top. ``requires`` are the modules the strategy
    imports; ``output`` is what ``model.predict`` returns: ``"predict"``
    (sklearn's labels or values) or ``"class_index"`` (the index of the
    class in ``classes_``).
    """

    name: str
    format: str
    imports: str
    load: str
    partial: str | None = None
    available: bool = True
    reason: str = ""
    sklearn: bool = True  # returns a sklearn estimator (so its module is imported up front)
    requires: tuple[str, ...] = ()
    output: str = "predict"

    def import_code(self, sklearn_module: str) -> str:
        code = self.imports
        if self.sklearn and sklearn_module:
            code += f"\nimport {sklearn_module}"
        return code

    def loader(self, sklearn_module: str = "") -> Callable[..., Any]:
        """``loader(path, k=None)``: the strategy's load (or partial load) in this process."""
        namespace: dict[str, Any] = {}
        exec(compile(self.import_code(sklearn_module), f"<{self.name} imports>", "exec"), namespace)  # noqa: S102
        full = compile(self.load, f"<{self.name} load>", "exec")
        partial = compile(self.partial or self.load, f"<{self.name} partial>", "exec")

        def load(path: str | os.PathLike, k: int | None = None) -> Any:
            local = {"path": os.fspath(path), "k": k}
            exec(full if k is None else partial, namespace, local)  # noqa: S102
            return local["model"]

        return load


# The peers return no sklearn estimator: a thin class gives them ``predict``.
_ONNX_IMPORTS = """\
import numpy as np
import onnxruntime
class OnnxModel:
    def __init__(self, path):
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name  # label (classifiers) or variable
    def predict(self, X):
        y = self.session.run([self.output], {self.input: np.asarray(X, dtype=np.float32)})[0]
        return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y"""

_TREELITE_IMPORTS = """\
import numpy as np
import treelite
class TreeliteModel:
    def __init__(self, path):
        self.model = treelite.Model.deserialize(path)
        # task_type 0: binary classifier, 1: regressor, 2: multiclass (treelite 4)
        self.task = int(self.model.get_header_accessor().get_field("task_type")[0])
    def predict(self, X):
        out = treelite.gtil.predict(self.model, np.asarray(X, dtype=np.float64))[:, 0, :]
        if self.task == 1:
            return out[:, 0] if out.shape[1] == 1 else out
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return out.argmax(axis=1)"""


def strategies(*, packages: bool = True) -> list[Strategy]:
    """Every strategy, in table order.

    ``packages``: mark unavailable a strategy whose format or loader needs a
    package that does not import here (the reason names the extra).
    """
    out = [
        Strategy("pickle", "pickle", "import pickle", "with open(path, 'rb') as f:\n    model = pickle.load(f)"),
        Strategy("joblib", "joblib", "import joblib", "model = joblib.load(path)", requires=("joblib",)),
        Strategy("joblib-zlib3", "joblib-zlib3", "import joblib", "model = joblib.load(path)", requires=("joblib",)),
        Strategy("joblib-lz4", "joblib-lz4", "import joblib", "model = joblib.load(path)", requires=("joblib", "lz4.frame")),
        Strategy(
            "skops",
            "skops",
            "import skops.io",
            "model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))",
            requires=("skops.io",),
        ),
    ]
    codecs = [f"treeshard-{codec}" for codec in ("lz4", "zstd")]
    for fmt in codecs:
        load, partial = "model = treeshard.load(path, lazy=False)", "model = treeshard.load(path, estimators=k, lazy=False)"
        out.append(Strategy(fmt, fmt, "import treeshard", load, partial))
    for fmt in codecs:
        load, partial = "model = treeshard.load(path, lazy=True)", "model = treeshard.load(path, estimators=k, lazy=True)"
        out.append(Strategy(f"{fmt}-lazy", fmt, "import treeshard", load, partial))
    for fmt in codecs:  # the Predictor reads every tree: no partial load
        out.append(Strategy(f"{fmt}-predictor", fmt, "import treeshard", "model = treeshard.Predictor(path)", sklearn=False))
    out += [
        Strategy("onnxruntime", "onnx", _ONNX_IMPORTS, "model = OnnxModel(path)", sklearn=False, requires=("onnxruntime",)),
        Strategy(
            "treelite",
            "treelite",
            _TREELITE_IMPORTS,
            "model = TreeliteModel(path)",
            sklearn=False,
            requires=("treelite",),
            output="class_index",
        ),
    ]
    if packages:
        out = [_with_packages(s) for s in out]
    return out


def _with_packages(strategy: Strategy) -> Strategy:
    reason = missing_packages(FORMATS[strategy.format].requires + strategy.requires)
    if not reason or not strategy.available:
        return strategy
    return dataclasses.replace(strategy, available=False, reason=reason)


def get_strategy(name: str) -> Strategy:
    """Return the strategy called ``name``.

    Raises
    ------
    ValueError
        If no strategy has that name.
    """
    known = strategies()
    for strategy in known:
        if strategy.name == name:
            return strategy
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(s.name for s in known)}")


STRATEGY_NAMES = [s.name for s in strategies(packages=False)]

"""Gradient boosting: GradientBoosting{Classifier,Regressor}.

Trees are stored stage-major (stage 0's K trees, then stage 1's, ...), so a
prefix of the stored trees is a prefix of the boosting stages. ``init_`` is
either ``"zero"`` or the fitted ``DummyClassifier``/``DummyRegressor`` that
sklearn makes by default; a custom ``init`` estimator is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compat import dummy_fitted_for_installed, gb_set_loss, gb_trees_per_iteration
from ..errors import ArrayError, ConfigError, UnsupportedEstimatorError
from ..record import TreeLayout, parse_dict, parse_int, require
from .base import (
    TREE_RUN_FITTED,
    Adapter,
    SavedModel,
    TreeParamRuns,
    build_estimator,
    decode_fitted,
    decode_value,
    encode_fitted,
    encode_params,
    encode_tree_params,
    encode_value,
    new_like,
)
from .families import BOOSTING, ESTIMATORS, ids_of
from .checks import DUMMY_FITTED, check_common, check_init_fitted, check_init_record, check_stages, expect, get_fitted
from .trees import TREE_FITTED, check_tree_attributes, decode_tree_param_runs

GB_FITTED = (
    "n_features_in_",
    "feature_names_in_",
    "classes_",
    "n_classes_",
    "n_trees_per_iteration_",
    "max_features_",
    "n_estimators_",
    "oob_score_",
)
GB_ARRAYS = {
    "train_score_": "float64",
    "oob_improvement_": "float64",
    "oob_scores_": "float64",
    "rng_keys": "uint32",  # the MT19937 key of ``_rng``; see _encode_rng
}
MT19937_KEY_LENGTH = 624


#: The params each stage's ``DecisionTreeRegressor`` takes from the model
#: (``_fit_stage``), besides the fixed criterion/splitter and the shared ``_rng``.
TREE_PARAMS = (
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "min_weight_fraction_leaf",
    "min_impurity_decrease",
    "max_features",
    "max_leaf_nodes",
    "ccp_alpha",
)
STAGE_ARRAYS = ("train_score_", "oob_improvement_", "oob_scores_")


def _to_saved(gb: Any) -> SavedModel:
    name = type(gb).__name__
    if gb.init not in (None, "zero"):
        raise UnsupportedEstimatorError(f"{name} with a custom init estimator ({type(gb.init).__name__}) is not supported")
    params, unserializable = encode_params(gb)
    estimators = gb.estimators_
    k = gb_trees_per_iteration(gb)
    if not isinstance(estimators, np.ndarray) or estimators.ndim != 2 or estimators.shape[1] != k:
        raise UnsupportedEstimatorError(
            f"{name}.estimators_: expected an array of stages x {k} trees, got {getattr(estimators, 'shape', None)}"
        )
    sub_estimators = estimators.ravel()
    trees = [e.tree_ for e in sub_estimators]
    layout = TreeLayout(
        n_trees=len(trees),
        n_nodes=sum(t.node_count for t in trees),
        n_features=gb.n_features_in_,
        n_outputs=1,
        n_classes=(1,),
    )
    fitted = encode_fitted(gb, GB_FITTED)
    fitted["n_trees_per_iteration_"] = k  # sklearn < 1.4 has it as the loss's K
    first = estimators[0, 0]
    fitted["estimators_"] = encode_fitted(first, TREE_FITTED, "estimators_[0, 0].")
    runs = encode_tree_params(sub_estimators, tree_params(gb), fitted_names=TREE_RUN_FITTED, first=first)
    if runs is not None:
        fitted["tree_params"] = runs
    if isinstance(gb.init_, str):
        fitted["init_"] = gb.init_
    else:
        dummy_params, _ = encode_params(gb.init_)
        fitted["init_"] = {
            "estimator": type(gb.init_).__name__,
            "params": dummy_params,
            "fitted": encode_fitted(gb.init_, DUMMY_FITTED, "init_."),
        }
    arrays = {name: np.asarray(getattr(gb, name), dtype=np.float64) for name in STAGE_ARRAYS if hasattr(gb, name)}
    rng = _encode_rng(getattr(gb, "_rng", None))
    if rng is not None:
        fitted["_rng"], arrays["rng_keys"] = rng
    loss = _encode_loss(getattr(gb, "_loss", None))
    if loss is not None:
        fitted["_loss"] = loss
    return SavedModel(params, unserializable, fitted, layout, trees, arrays)


def tree_params(gb: Any) -> dict[str, Any]:
    """The params ``gb`` gives the trees it fits now (``_fit_stage``)."""
    return {name: getattr(gb, name) for name in TREE_PARAMS}


def _encode_loss(loss: Any) -> dict[str, Any] | None:
    """What ``fit`` changes in the loss object: the Huber ``delta`` (set at every stage)."""
    closs = getattr(loss, "closs", None)
    if closs is None or type(loss).__name__ != "HuberLoss":
        return None
    return {"delta": encode_value(float(closs.delta))}


def _decode_loss(record: Any, gb: Any) -> float | None:
    where = "config.fitted._loss"
    if record is None:
        return None
    record = parse_dict(where, record)
    unknown = sorted(set(record) - {"delta"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    if gb.loss != "huber":
        raise ConfigError(f"{where}: only loss='huber' keeps a fitted state, not loss={gb.loss!r}")
    delta = decode_value(f"{where}.delta", require(where, record, "delta"))
    expect(f"{where}.delta", delta, float, lambda d: d >= 0 and d < float("inf"), "a finite float >= 0")
    return delta


def _encode_rng(rng: Any) -> tuple[dict[str, Any], np.ndarray] | None:
    """The state of the fitted ``_rng`` (shared by the trees, used by warm starts).

    ``None`` when there is nothing to keep: no ``_rng``, or numpy's global
    RandomState (``random_state=None``), which a loaded model uses again.
    """
    if not isinstance(rng, np.random.RandomState) or rng is check_global_random_state():
        return None
    name, keys, pos, has_gauss, cached_gaussian = rng.get_state(legacy=True)
    if name != "MT19937":
        return None
    record = {"pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": encode_value(float(cached_gaussian))}
    return record, np.ascontiguousarray(keys, dtype=np.uint32)


def check_global_random_state() -> np.random.RandomState:
    """numpy's global RandomState: what ``check_random_state(None)`` returns."""
    from sklearn.utils import check_random_state

    return check_random_state(None)


def _decode_rng(record: Any, keys: np.ndarray | None) -> np.random.RandomState:
    where = "config.fitted._rng"
    if record is None and keys is None:
        return check_global_random_state()
    if record is None or keys is None:
        raise ConfigError(f"{where}: needs both the config record and the fitted/rng_keys array")
    record = parse_dict(where, record)
    if keys.shape != (MT19937_KEY_LENGTH,):
        raise ArrayError(f"fitted/rng_keys: shape {keys.shape}, expected ({MT19937_KEY_LENGTH},)")
    pos = parse_int(f"{where}.pos", require(where, record, "pos"), low=0, high=MT19937_KEY_LENGTH)
    has_gauss = parse_int(f"{where}.has_gauss", require(where, record, "has_gauss"), low=0, high=1)
    cached = decode_value(f"{where}.cached_gaussian", require(where, record, "cached_gaussian"))
    expect(f"{where}.cached_gaussian", cached, float)
    # Seeded, then overwritten: an unseeded RandomState carries a SeedSequence of fresh
    # OS entropy that pickle keeps, so two loads would pickle differently.
    rng = np.random.RandomState(0)
    try:
        rng.set_state(("MT19937", keys, pos, has_gauss, cached))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: invalid generator state ({exc})") from None
    return rng


def _build_init(record: Any, gb: Any, n_features: int) -> Any:
    """The fitted ``init_`` of ``gb``: ``"zero"`` or the dummy estimator sklearn makes.

    Only what ``GradientBoosting*._init_state`` would have built is accepted
    (class and params), and every fitted attribute the dummy's prediction
    reads is checked: a wrong-length ``class_prior_`` would make sklearn's
    Cython loss read out of bounds.
    """
    where = "config.fitted.init_"
    if record == "zero":
        return "zero"
    classifier = ESTIMATORS[type(gb).__name__].is_classifier
    record = check_init_record(where, record, estimator_id=type(gb).__name__, classifier=classifier)
    from sklearn import dummy

    init = build_estimator(getattr(dummy, record["estimator"]), parse_dict(f"{where}.params", require(where, record, "params")))
    expected_params = _default_init_params(gb)
    actual_params = {key: init.get_params(deep=False)[key] for key in expected_params}
    if actual_params != expected_params:
        raise ConfigError(f"{where}.params: {actual_params}, but {type(gb).__name__}(loss={gb.loss!r}) makes {expected_params}")
    fitted = decode_fitted(parse_dict(f"{where}.fitted", require(where, record, "fitted")), DUMMY_FITTED)
    check_init_fitted(where, fitted, classifier=classifier, n_classes=int(gb.n_classes_) if classifier else 1, n_features=n_features)
    init.__dict__.update(dummy_fitted_for_installed(fitted, n_features))
    return init


def _default_init_params(gb: Any) -> dict[str, Any]:
    """The params of the dummy ``init_`` sklearn makes for ``gb`` (``_init_state``)."""
    if ESTIMATORS[type(gb).__name__].is_classifier:
        return {"strategy": "prior"}
    if gb.loss in ("absolute_error", "huber"):
        return {"strategy": "quantile", "quantile": 0.5}
    if gb.loss == "quantile":
        return {"strategy": "quantile", "quantile": gb.alpha}
    return {"strategy": "mean"}


@dataclass
class _Decoded:
    """A checked gradient-boosting record, before any tree is built."""

    gb: Any  # the estimator with its params and the fitted attributes set
    n_stages: int  # stored stages
    k: int
    tree_attributes: dict[str, Any]
    runs: TreeParamRuns | None
    huber_delta: float | None


def _decode(cls: type, saved: SavedModel) -> _Decoded:
    """Every check of a stored gradient-boosting model; builds the estimator but no tree."""
    from sklearn.tree import DecisionTreeRegressor

    gb = build_estimator(cls, saved.params, saved.unserializable_params)
    if gb.init not in (None, "zero"):
        raise ConfigError("config.params.init: must be null or 'zero'")
    classifier = ESTIMATORS[cls.__name__].is_classifier
    layout = saved.layout
    raw = dict(saved.fitted)
    sub_raw = parse_dict("config.fitted.estimators_", raw.pop("estimators_", None))
    init_raw = raw.pop("init_", None)
    rng_raw = raw.pop("_rng", None)
    loss_raw = raw.pop("_loss", None)
    runs_raw = raw.pop("tree_params", None)
    fitted = decode_fitted(raw, GB_FITTED)
    sub_fitted = decode_fitted(sub_raw, TREE_FITTED)
    check_common(fitted, layout)
    tree_layout = TreeLayout(layout.n_trees, layout.n_nodes, layout.n_features, 1, (1,))
    check_tree_attributes("config.fitted.estimators_", sub_fitted, tree_layout, classifier=False)
    k, _ = check_stages(fitted, layout, classifier=classifier)
    n_stages = layout.n_trees // k
    max_features = expect("config.fitted.max_features_", get_fitted(fitted, "max_features_"), int)
    if not 1 <= max_features <= layout.n_features:
        raise ConfigError(f"config.fitted.max_features_: {max_features} out of range")
    for name in STAGE_ARRAYS:
        if name in saved.arrays:
            if saved.arrays[name].shape != (n_stages,):
                raise ArrayError(f"fitted/{name}: shape {saved.arrays[name].shape}, expected ({n_stages},)")
            fitted[name] = saved.arrays[name]
    if "train_score_" not in fitted:
        raise ArrayError("fitted/train_score_: missing")

    gb.__dict__.update(fitted)
    gb.init_ = _build_init(init_raw, gb, layout.n_features)
    gb._rng = _decode_rng(rng_raw, saved.arrays.get("rng_keys"))
    huber_delta = _decode_loss(loss_raw, gb)

    runs = decode_tree_param_runs(
        runs_raw, tree_cls=DecisionTreeRegressor, expected=tree_params(gb), sub_fitted=sub_fitted, layout=tree_layout, classifier=False
    )
    return _Decoded(gb, n_stages, k, sub_fitted, runs, huber_delta)


def _check_saved(cls: type, saved: SavedModel) -> None:
    _decode(cls, saved)


def _from_saved(cls: type, saved: SavedModel) -> Any:
    from sklearn.tree import DecisionTreeRegressor

    decoded = _decode(cls, saved)
    gb, n_stages, k = decoded.gb, decoded.n_stages, decoded.k
    gb_set_loss(gb)
    if decoded.huber_delta is not None and hasattr(gb._loss, "closs"):  # sklearn < 1.4 keeps no delta
        gb._loss.closs.delta = decoded.huber_delta
    template = DecisionTreeRegressor(
        criterion="squared_error",
        splitter="best",
        random_state=gb._rng,  # sklearn's trees share the model's RandomState
        **tree_params(gb),
    )
    base = {**vars(template), **decoded.tree_attributes}
    runs = decoded.runs
    if runs is None:
        trees = saved.estimators(lambda tree, index: new_like(DecisionTreeRegressor, {**base, "tree_": tree}))
    else:
        trees = saved.estimators(
            lambda tree, index: new_like(DecisionTreeRegressor, {**base, **runs.for_tree(index), "tree_": tree})
        )
    if saved.is_partial:
        # A prefix of the boosting stages: a model that stopped earlier.
        n_stages = len(trees) // k
        gb.n_estimators = gb.n_estimators_ = n_stages
        for name in STAGE_ARRAYS:
            if name in gb.__dict__:
                setattr(gb, name, getattr(gb, name)[:n_stages])
        if "oob_scores_" in gb.__dict__:
            gb.oob_score_ = gb.oob_scores_[-1]
    estimators = np.empty((n_stages, k), dtype=object)
    estimators.reshape(-1)[:] = list(trees)
    gb.estimators_ = estimators
    return gb


def _adapter(name: str) -> Adapter:
    return Adapter(name, (ESTIMATORS[name].module, name), _to_saved, _from_saved, GB_ARRAYS, check_saved=_check_saved)


ADAPTERS = [_adapter(name) for name in ids_of(BOOSTING)]

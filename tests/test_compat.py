"""Across sklearn versions (issue 14): what the installed sklearn does with stores of others.

The full writer x reader matrix runs in one virtualenv per sklearn version
(``make compat``, tests/compat/); here, under the installed sklearn:

- every golden store written by each supported version (``tests/golden/<version>/``)
  loads, from its directory and its zip, and reproduces the outputs its writer
  recorded (those the format fixes exactly), warning exactly when the matrix
  says the pair is not exact;
- node records are built by field name, and a node field that this treeshard
  cannot fill (sklearn's coming categorical splits) or that a store needs and
  the installed sklearn lacks raises a clear error;
- stored params are translated against the installed constructor;
- classifier leaf values cross the sklearn 1.4 change (counts to fractions).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers.data import make_data
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import NODE_DTYPE

import sklearn
import treeshard
from treeshard import compat
from treeshard.adapters.base import build_estimator
from treeshard.columns import counts_to_fractions, decode_values, decode_values_into, to_columns
from treeshard.errors import ConfigError, UnsupportedEstimatorError
from treeshard.reader import StoreReader
from treeshard.validate import check_trees

GOLDEN = Path(__file__).resolve().parent / "golden"
VERSION_DIRS = sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name[:1].isdigit())
_MANIFESTS = {d: json.loads((d / "manifest.json").read_text())["cases"] for d in VERSION_DIRS}
GOLDEN_CASES = [(d, case) for d in VERSION_DIRS for case, entry in sorted(_MANIFESTS[d].items()) if not entry.get("pipeline")]
#: Pipeline cases (tests/compat/pipeline_cases.py): schema steps load under every version, skops steps on the writer's minor only.
PIPELINE_CASES = [(d, case) for d in VERSION_DIRS for case, entry in sorted(_MANIFESTS[d].items()) if entry.get("pipeline")]


# --------------------------------------------------------------------------- golden stores of every version
def test_every_supported_version_wrote_golden_stores():
    assert [d.name for d in VERSION_DIRS] == ["1.3.2", "1.4.2", "1.5.2", "1.6.1", "1.7.2", "1.8.0", "1.9.1"]


@pytest.mark.parametrize(("directory", "case"), GOLDEN_CASES, ids=[f"{d.name}-{c}" for d, c in GOLDEN_CASES])
@pytest.mark.parametrize("container", ["dir", "zip"])
def test_golden_store_of_each_version_loads_here(directory, case, container):
    store = directory / case if container == "dir" else directory / f"{case}.zip"
    with np.load(directory / f"{case}.npz", allow_pickle=False) as npz:
        recorded = {name: npz[name] for name in npz.files}
    X = recorded.pop("X")
    config = json.loads((directory / case / "zarr.json").read_text())["attributes"]["treeshard"]
    estimator = config["estimator"]  # a case id may name a second case of one estimator
    should_warn = directory.name != sklearn.__version__ and not compat.pair_is_exact(
        estimator, directory.name, sklearn.__version__, value_encoding=config["trees"]["value_encoding"]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = treeshard.load(store, lazy=False)
    version_warnings = [w.message for w in caught if issubclass(w.category, treeshard.SklearnVersionWarning)]
    assert len(version_warnings) == int(should_warn)
    for warning in version_warnings:
        assert (warning.saved, warning.installed) == (directory.name, sklearn.__version__)
    exact_here = not (estimator == "GradientBoostingClassifier" and should_warn)
    for method, expected in recorded.items():
        if method == "estimators_samples_":
            continue  # drawn by the installed sklearn (weighted drawing from 1.9)
        actual = getattr(model, method)(X)
        if method == "decision_path":
            actual = (actual[0] if isinstance(actual, tuple) else actual).toarray()
            if (compat.version_tuple(directory.name) < (1, 8)) != (compat.sklearn_version() < (1, 8)):
                # sklearn < 1.8 sent NaN right in decision_path whatever missing_go_to_left says
                # (docs/COMPATIBILITY.md, PATH-NAN-1.8): rows with a NaN may take another path.
                keep = ~np.isnan(X).any(axis=1)
                actual, expected = actual[keep], expected[keep]
        if method == "predict" or exact_here:
            assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind == "f"), method


def _pipeline_cases_module():  # noqa: ANN202 - tests/compat/pipeline_cases.py, numpy only at import
    import importlib.util
    import sys

    name = "compat_pipeline_cases"
    if name not in sys.modules:  # registered before it runs: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "compat" / "pipeline_cases.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_every_version_wrote_the_pipeline_cases():
    cases = _pipeline_cases_module().CASES
    for directory in VERSION_DIRS:
        assert sorted(case for d, case in PIPELINE_CASES if d == directory) == sorted(cases), directory.name


@pytest.mark.parametrize(("directory", "case"), PIPELINE_CASES, ids=[f"{d.name}-{c}" for d, c in PIPELINE_CASES])
@pytest.mark.parametrize("container", ["dir", "zip"])
def test_golden_pipeline_store_of_each_version_loads_here(directory, case, container):
    """Schema steps everywhere; a skops step on the writer's minor version only, refused with the exact error elsewhere."""
    cases = _pipeline_cases_module()
    store = directory / case if container == "dir" else directory / f"{case}.zip"
    with np.load(directory / f"{case}.npz", allow_pickle=False) as npz:
        recorded = {name: npz[name] for name in npz.files}
    X = cases.unpack(recorded)
    same_minor = compat.version_tuple(directory.name) == compat.sklearn_version()
    if cases.CASES[case].skops and not same_minor:
        with pytest.raises(UnsupportedEstimatorError) as excinfo:
            treeshard.load(store)
        assert f"UnsupportedEstimatorError: {excinfo.value}" == cases.skops_refusal(directory.name, sklearn.__version__)
        return
    if cases.CASES[case].skops:
        pytest.importorskip("skops")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = treeshard.load(store, lazy=container == "zip")
    version_warnings = [w.message for w in caught if issubclass(w.category, treeshard.SklearnVersionWarning)]
    should_warn = cases.loading_warns(directory / case, directory.name, sklearn.__version__)
    assert len(version_warnings) == int(should_warn)
    got = cases.outputs(model, X)
    methods = [m for m in recorded if m not in cases.PACKED]
    assert methods and set(methods) <= set(got)
    for method in methods:
        expected = recorded[method]
        assert np.array_equal(got[method], expected, equal_nan=expected.dtype.kind == "f"), method


def test_a_store_from_before_the_loss_change_warns_once_with_both_versions():
    store = GOLDEN / "1.3.2" / "GradientBoostingClassifier"
    if compat.sklearn_version() < (1, 4):
        pytest.skip("the installed sklearn is on the 1.3 side of the change")
    with pytest.warns(treeshard.SklearnVersionWarning) as caught:
        treeshard.load(store)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"store was written with scikit-learn 1.3.2; installed is {sklearn.__version__}. "
        "Trees are rebuilt for the installed version; check the model's outputs."
    )


def test_pairs_the_matrix_proves_exact_load_quietly():
    assert compat.pair_is_exact("RandomForestClassifier", "1.3.2", "1.9.1", value_encoding="weighted_counts")
    assert compat.pair_is_exact("GradientBoostingRegressor", "1.3.2", "1.9.1")
    assert compat.pair_is_exact("GradientBoostingClassifier", "1.4.2", "1.9.1")
    # Histogram gradient boosting: exact both ways (a store 1.3 cannot express is refused there).
    assert compat.pair_is_exact("HistGradientBoostingClassifier", "1.3.2", "1.9.1")
    assert compat.pair_is_exact("HistGradientBoostingRegressor", "1.9.1", "1.3.2")
    assert not compat.pair_is_exact("HistGradientBoostingRegressor", "1.9.1", "1.10.0")  # outside the matrix
    assert compat.pair_is_exact("IsolationForest", "1.3.2", "1.9.1")
    assert compat.pair_is_exact("IsolationForest", "1.9.1", "1.3.2")
    assert not compat.pair_is_exact("GradientBoostingClassifier", "1.3.2", "1.4.2")
    # 1.4+ fractions that are not weighted counts: 1.3 divides them by their sum again.
    assert not compat.pair_is_exact("DecisionTreeClassifier", "1.9.1", "1.3.2", value_encoding="float64")
    assert compat.pair_is_exact("DecisionTreeClassifier", "1.9.1", "1.3.2", value_encoding="weighted_counts")
    assert not compat.pair_is_exact("RandomForestRegressor", "1.2.2", "1.9.1")  # outside the matrix
    assert not compat.pair_is_exact("RandomForestRegressor", "1.9.1", "1.10.0")


# --------------------------------------------------------------------------- node records by field name
def _columns_and_layout():
    X, y = make_data("multiclass")
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    saved = treeshard.adapters.adapter_for(tree).to_saved(tree)
    return to_columns(saved.trees, saved.layout), saved.layout, tree


def _fields() -> list[tuple[str, np.dtype]]:
    return [(name, NODE_DTYPE.fields[name][0]) for name in NODE_DTYPE.names]


def test_records_are_laid_out_by_field_name_in_any_order():
    cols, layout, tree = _columns_and_layout()
    names = list(NODE_DTYPE.names)[::-1]  # another version could order (and pad) fields differently
    shuffled = np.dtype({"names": names, "formats": [NODE_DTYPE.fields[n][0] for n in names]})
    records, _ = check_trees(cols, layout, node_dtype=shuffled)
    reference = tree.tree_.__getstate__()["nodes"]
    for name in NODE_DTYPE.names:
        assert np.array_equal(records[name], reference[name]), name


@pytest.mark.parametrize("field", ["left_cat_bitset", "split_kind"])
def test_an_installed_categorical_split_field_is_a_clear_error(field):
    cols, layout, _ = _columns_and_layout()
    extra = np.dtype(_fields() + [(field, "<u8" if field == "left_cat_bitset" else "u1")])
    with pytest.raises(UnsupportedEstimatorError) as info:
        check_trees(cols, layout, node_dtype=extra)
    assert str(info.value) == (
        f"the installed scikit-learn ({sklearn.__version__}) has tree node field {field!r} (categorical splits, "
        "scikit-learn >= 1.10), which this treeshard cannot fill; upgrade treeshard"
    )


def test_an_unknown_installed_node_field_is_a_clear_error():
    cols, layout, _ = _columns_and_layout()
    extra = np.dtype(_fields() + [("shrinkage", "<f8")])
    with pytest.raises(UnsupportedEstimatorError, match=r"^the installed scikit-learn's tree nodes have a field 'shrinkage' \(float64\) that format version 1 cannot fill; upgrade treeshard$"):
        check_trees(cols, layout, node_dtype=extra)


def test_a_store_using_a_node_field_the_installed_sklearn_lacks_is_refused():
    X, y = make_data("multiclass")
    X = X.copy()
    X[::5, 0] = np.nan
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    saved = treeshard.adapters.adapter_for(tree).to_saved(tree)
    cols = to_columns(saved.trees, saved.layout)
    assert cols.missing_go_to_left.any()
    older = np.dtype([(n, NODE_DTYPE.fields[n][0]) for n in NODE_DTYPE.names if n != "missing_go_to_left"])
    with pytest.raises(UnsupportedEstimatorError) as info:
        check_trees(cols, saved.layout, node_dtype=older)
    assert str(info.value) == (
        "the store uses missing-value support in trees (node column 'missing_go_to_left'), which needs "
        f"scikit-learn >= 1.3; installed: {sklearn.__version__}"
    )
    cols.missing_go_to_left[:] = 0  # a store that never sends NaN left builds fine without the field
    records, _ = check_trees(cols, saved.layout, node_dtype=older)
    assert np.array_equal(records["threshold"], tree.tree_.threshold)


# --------------------------------------------------------------------------- params
def test_a_param_the_installed_sklearn_lacks_is_dropped_only_at_its_neutral_value():
    translated = compat.translate_params(RandomForestClassifier, {"monotonic_cst": None, "n_estimators": 3}, installed={"n_estimators"})
    assert translated == {"n_estimators": 3}
    with pytest.raises(ConfigError) as info:
        compat.translate_params(RandomForestClassifier, {"monotonic_cst": [1, 0]}, installed={"n_estimators"})
    assert str(info.value) == (
        f"config.params.monotonic_cst: [1, 0] needs scikit-learn >= 1.4 (installed: {sklearn.__version__}); "
        "RandomForestClassifier here cannot honour it"
    )


def test_gradient_boosting_criterion_deprecated_in_1_9_reads_as_the_old_default_before(monkeypatch):
    monkeypatch.setattr(compat, "sklearn_version", lambda: (1, 9))
    for value in ("friedman_mse", "squared_error", "deprecated"):  # 1.9 accepts each as stored
        assert compat.translate_params(GradientBoostingClassifier, {"criterion": value}, installed={"criterion"}) == {"criterion": value}
    monkeypatch.setattr(compat, "sklearn_version", lambda: (1, 8))
    assert compat.translate_params(GradientBoostingClassifier, {"criterion": "deprecated"}, installed={"criterion"}) == {"criterion": "friedman_mse"}
    assert compat.translate_params(RandomForestClassifier, {"criterion": "gini"}, installed={"criterion"}) == {"criterion": "gini"}


def test_hist_gradient_boosting_max_features_from_1_4_is_dropped_under_1_3_only_at_its_default():
    params = {"max_features": 1.0, "max_iter": 3}
    assert compat.translate_params(HistGradientBoostingRegressor, params, installed={"max_iter"}) == {"max_iter": 3}
    with pytest.raises(ConfigError) as info:
        compat.translate_params(HistGradientBoostingRegressor, {"max_features": 0.5}, installed={"max_iter"})
    assert str(info.value) == (
        f"config.params.max_features: 0.5 needs scikit-learn >= 1.4 (installed: {sklearn.__version__}); "
        "HistGradientBoostingRegressor here cannot honour it"
    )
    # Forests have max_features in every supported version: kept as stored.
    assert compat.translate_params(RandomForestClassifier, {"max_features": "sqrt"}, installed={"max_features"}) == {"max_features": "sqrt"}


@pytest.mark.parametrize(
    ("installed", "stored", "expected"),
    [
        ((1, 3), "warn", None),  # 1.3 has neither string; "warn" acted as None
        ((1, 3), "from_dtype", None),
        ((1, 4), "warn", "warn"),
        ((1, 5), "from_dtype", "from_dtype"),
        ((1, 6), "warn", None),  # "warn" is gone from 1.6
        ((1, 9), "from_dtype", "from_dtype"),
        ((1, 9), "other", "other"),  # refused by sklearn's own check, not here
    ],
)
def test_hist_gradient_boosting_categorical_features_strings_read_as_the_installed_sklearn_takes_them(monkeypatch, installed, stored, expected):
    monkeypatch.setattr(compat, "sklearn_version", lambda: installed)
    translated = compat.translate_params(HistGradientBoostingClassifier, {"categorical_features": stored}, installed={"categorical_features"})
    assert translated == {"categorical_features": expected}
    # Only histogram gradient boosting has this param: another class keeps what it was given.
    assert compat.translate_params(RandomForestClassifier, {"categorical_features": stored}, installed=set()) == {"categorical_features": stored}


def _as_sklearn_1_3(monkeypatch):
    monkeypatch.setattr(compat, "sklearn_version", lambda: (1, 3))
    monkeypatch.setattr(sklearn, "__version__", "1.3.2")


def test_string_categories_are_refused_under_sklearn_1_3_with_a_clear_error(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    X = pd.DataFrame({"colour": pd.Categorical(rng.choice(["red", "green", "blue"], 60)), "size": rng.normal(size=60)})
    y = (X["colour"] == "red").to_numpy().astype(int)
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features="from_dtype", random_state=0).fit(X, y)
    treeshard.save(model, tmp_path / "m")
    assert np.array_equal(treeshard.load(tmp_path / "m").predict_proba(X), model.predict_proba(X))
    _as_sklearn_1_3(monkeypatch)
    for lazy in (False, True):
        with pytest.raises(UnsupportedEstimatorError) as info:
            treeshard.load(tmp_path / "m", lazy=lazy)
        assert str(info.value) == (
            "the store encodes string categories with a preprocessor, which needs scikit-learn >= 1.4 "
            "(installed: 1.3.2, which reads numeric category codes only)"
        )


def test_numeric_categories_encoded_by_1_4_are_refused_under_1_3_and_read_from_1_4(monkeypatch):
    record = {"categories": [{"values": np.array([0.0, 1.0, 2.0]), "nan": True}]}
    compat.check_hist_preprocessor(record)  # the installed sklearn (1.4+) rebuilds it
    _as_sklearn_1_3(monkeypatch)
    with pytest.raises(UnsupportedEstimatorError) as info:
        compat.check_hist_preprocessor(record)
    assert str(info.value) == (
        "the store encodes categorical features with a preprocessor, which needs scikit-learn >= 1.4 "
        "(installed: 1.3.2, which reads numeric category codes only)"
    )


class _ForestWithoutMonotonicCst(BaseEstimator):
    """An estimator as an sklearn before 1.4 has it: no ``monotonic_cst``."""

    def __init__(self, n_estimators=100):
        self.n_estimators = n_estimators

    def _validate_params(self):
        pass


def test_building_under_a_version_without_a_stored_param():
    built = build_estimator(_ForestWithoutMonotonicCst, {"n_estimators": 3, "monotonic_cst": None})
    assert built.get_params() == {"n_estimators": 3}
    with pytest.raises(ConfigError, match=r"^config\.params\.monotonic_cst: \[1, 0\] needs scikit-learn >= 1\.4"):
        build_estimator(_ForestWithoutMonotonicCst, {"n_estimators": 3, "monotonic_cst": [1, 0]})
    with pytest.raises(ConfigError, match=r"^config\.params: unknown parameter\(s\) \['max_bins'\] for _ForestWithoutMonotonicCst$"):
        build_estimator(_ForestWithoutMonotonicCst, {"max_bins": 3})


# --------------------------------------------------------------------------- leaf values
def test_class_counts_are_divided_as_sklearn_1_3_predicts_them():
    counts = np.array([[3.0, 1.0, 0.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 5.0, 0.0], [0.1, 0.2, 0.0, 0.3, 0.3, 0.0]])
    fractions = counts_to_fractions(counts, (3, 2))  # two outputs: 3 and 2 classes, width 3 each
    expected = np.array(
        [[3 / 4, 1 / 4, 0, 2 / 4, 2 / 4, 0], [0, 0, 0, 0, 1, 0], [0.1 / (0.1 + 0.2), 0.2 / (0.1 + 0.2), 0, 0.5, 0.5, 0]]
    )
    assert np.array_equal(fractions, expected)
    assert np.array_equal(decode_values(counts, np.ones(3), "class_counts", n_classes=(3, 2)), expected)
    assert decode_values(counts, np.ones(3), "class_counts", n_classes=(3, 2), as_counts=True) is counts


def test_weighted_counts_decode_to_counts_for_sklearn_1_3():
    counts = np.array([[3, 1], [0, 4]], dtype=np.int32)
    weights = np.array([4.0, 4.0])
    assert np.array_equal(decode_values(counts, weights, "weighted_counts"), [[0.75, 0.25], [0.0, 1.0]])
    as_counts = decode_values(counts, weights, "weighted_counts", as_counts=True)
    assert as_counts.dtype == np.float64 and np.array_equal(as_counts, [[3.0, 1.0], [0.0, 4.0]])


@pytest.mark.parametrize("as_counts", [False, True])
@pytest.mark.parametrize("encoding", ["weighted_counts", "class_counts", "float64"])
def test_values_decoded_into_a_tree_have_the_bits_decode_values_gives(encoding, as_counts):
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 9.0, 50)
    if encoding == "weighted_counts":
        stored = rng.integers(0, 40, (50, 6)).astype(np.int32)
    else:
        stored = rng.uniform(0.0, 7.0, (50, 6))
        stored[3, :3] = 0.0  # an output whose counts sum to zero (class_counts: taken as 1)
    expected = decode_values(stored, weights, encoding, n_classes=(3, 2), as_counts=as_counts)
    out = np.full((50, 6), np.nan)
    decode_values_into(stored, weights, encoding, out, n_classes=(3, 2), as_counts=as_counts)
    assert np.array_equal(out.view(np.uint64), np.asarray(expected, dtype=np.float64).view(np.uint64))


@pytest.mark.parametrize(("weights", "encoding"), [("ones", "weighted_counts"), ("fractional", "class_counts")])
def test_a_1_3_style_tree_of_counts_is_stored_so_both_sides_read_it_exactly(weights, encoding, tmp_path, monkeypatch):
    """Under sklearn < 1.4 a classifier's leaf values are weighted class counts: they are
    stored as int32 counts when each output's counts sum to the node weight, else as
    "class_counts"; readers get the counts back (1.3) or 1.3's probabilities (1.4+)."""
    X, y = make_data("multiclass")
    sample_weight = np.ones(len(y)) if weights == "ones" else np.linspace(0.3, 1.7, len(y))
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y, sample_weight=sample_weight)
    values = tree.tree_.value  # a view of the tree's own values: make them 1.3's counts
    weighted = tree.tree_.weighted_n_node_samples
    counts = values * weighted[:, None, None]
    if weights == "ones":
        counts = np.rint(counts)
    values[...] = counts
    proba_1_3 = counts[:, 0, :] / counts[:, 0, :].sum(axis=1, keepdims=True)
    monkeypatch.setattr(compat, "leaf_values_are_counts", lambda: True)
    treeshard.save(tree, tmp_path / "m")
    reader = StoreReader(tmp_path / "m")
    assert reader.config.trees.value_encoding == encoding
    assert np.array_equal(reader.read_nodes(0, 1, as_counts=True).value, counts.reshape(len(counts), -1))
    assert np.array_equal(reader.read_nodes(0, 1).value, proba_1_3)
    reader.close()
    # The Predictor (numpy only) predicts them as sklearn 1.3 did.
    assert np.array_equal(treeshard.Predictor(tmp_path / "m").predict_proba(X), proba_1_3[tree.apply(X)])

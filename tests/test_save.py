"""Saving: existing stores, overwrite, metadata, codecs, params and bad arguments."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
import zarr
from helpers.compare import assert_round_trip_exact
from helpers.data import make_data
from helpers.stores import edit_config, reseal, stored_files
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

import treeshard
from treeshard import SklearnVersionWarning, StoreExistsError, UnsupportedEstimatorError
from treeshard.adapters import ADAPTERS
from treeshard.adapters.base import build_estimator, shallow_params
from treeshard.errors import ConfigError
from treeshard.saving import _check_record

# predict_log_proba of a tree that gives a class probability 0
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    X, y = make_data("multiclass")
    return RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def other_forest() -> RandomForestClassifier:
    X, y = make_data("binary")
    return RandomForestClassifier(n_estimators=2, max_depth=2, random_state=1).fit(X, y)


# --------------------------------------------------------------------------- existing stores
@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_existing_store_is_left_untouched_without_overwrite(name, forest, other_forest, tmp_path):
    path = tmp_path / name
    treeshard.save(forest, path)
    before = stored_files(path)
    with pytest.raises(StoreExistsError, match=r"exists; pass overwrite=True to replace it") as caught:
        treeshard.save(other_forest, path)
    assert isinstance(caught.value, FileExistsError)
    assert stored_files(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no temporary files left behind"
    X, _ = make_data("multiclass")
    assert np.array_equal(treeshard.load(path).predict(X), forest.predict(X))


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_overwrite_replaces_the_store(name, forest, other_forest, tmp_path):
    path = tmp_path / name
    treeshard.save(forest, path)
    treeshard.save(other_forest, path, overwrite=True)
    X, y = make_data("binary")
    assert_round_trip_exact(other_forest, treeshard.load(path, lazy=False), X, y)
    with treeshard.open(path) as handle:
        assert handle.info.n_estimators == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no temporary files left behind"


def test_overwrite_refuses_a_directory_that_is_not_a_store(forest, tmp_path):
    path = tmp_path / "precious"
    path.mkdir()
    (path / "thesis.txt").write_text("do not delete")
    with pytest.raises(StoreExistsError, match=r"is not a treeshard store; refusing to replace it"):
        treeshard.save(forest, path, overwrite=True)
    assert (path / "thesis.txt").read_text() == "do not delete"
    assert sorted(p.name for p in path.iterdir()) == ["thesis.txt"]


def test_overwrite_refuses_a_file_that_is_not_a_zip_store(forest, tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(StoreExistsError, match=r"is not a zip file; refusing to replace it"):
        treeshard.save(forest, path, overwrite=True)
    assert path.read_bytes() == b"not a zip"


def test_overwrite_may_fill_an_empty_directory(forest, tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    with pytest.raises(StoreExistsError):
        treeshard.save(forest, path)
    treeshard.save(forest, path, overwrite=True)
    assert treeshard.open(path).info.n_estimators == 3


def test_memory_store_not_empty(forest, other_forest):
    store = zarr.storage.MemoryStore()
    treeshard.save(forest, store)
    with pytest.raises(StoreExistsError, match=r"is not empty; pass overwrite=True to replace it"):
        treeshard.save(other_forest, store)
    assert treeshard.open(store).info.n_estimators == 3
    treeshard.save(other_forest, store, overwrite=True)
    assert treeshard.open(store).info.n_estimators == 2


def test_save_creates_missing_parent_directories(forest, tmp_path):
    path = tmp_path / "a" / "b" / "model.zip"
    treeshard.save(forest, path)
    assert treeshard.open(path).info.n_estimators == 3


def test_save_accepts_str_paths(forest, tmp_path):
    treeshard.save(forest, str(tmp_path / "model"))
    assert treeshard.open(str(tmp_path / "model")).info.estimator == "RandomForestClassifier"


# --------------------------------------------------------------------------- metadata
def test_metadata_round_trips_through_info(forest, tmp_path):
    metadata = {"accuracy": 0.93, "dataset": "iris-v2", "tags": ["prod", "v1"], "nested": {"n": 3, "ok": True, "none": None}}
    treeshard.save(forest, tmp_path / "m.zip", metadata=metadata)
    with treeshard.open(tmp_path / "m.zip") as handle:
        assert handle.info.metadata == metadata
    # metadata never changes how a model loads
    X, y = make_data("multiclass")
    assert_round_trip_exact(forest, treeshard.load(tmp_path / "m.zip", lazy=False), X, y)


def test_no_metadata_is_an_empty_mapping(forest):
    store = zarr.storage.MemoryStore()
    treeshard.save(forest, store)
    assert treeshard.open(store).info.metadata == {}


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"when": object()}, r"metadata must be JSON-safe \(str keys, finite numbers\): Object of type object is not JSON serializable"),
        ({"score": float("nan")}, r"metadata must be JSON-safe \(str keys, finite numbers\): Out of range float values"),
        ({"array": np.arange(3)}, r"metadata must be JSON-safe \(str keys, finite numbers\): Object of type ndarray"),
        ({1: "int key"}, r"metadata must be JSON-safe: keys must be strings and sequences lists"),
        ({"pair": (1, 2)}, r"metadata must be JSON-safe: keys must be strings and sequences lists"),
        (["not", "a", "mapping"], r"metadata must be a mapping, got list"),
    ],
    ids=["object", "nan", "ndarray", "int-key", "tuple", "list"],
)
def test_non_json_metadata_is_a_type_error_and_writes_nothing(metadata, match, forest, tmp_path):
    with pytest.raises(TypeError, match=match):
        treeshard.save(forest, tmp_path / "m", metadata=metadata)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- codecs
def test_unknown_codec_is_a_value_error_and_writes_nothing(forest, tmp_path):
    with pytest.raises(ValueError, match=r"codec must be one of \['lz4', 'none', 'zstd'\], got 'gzip'"):
        treeshard.save(forest, tmp_path / "m", codec="gzip")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
def test_each_codec_round_trips_and_is_recorded(codec, forest, tmp_path):
    treeshard.save(forest, tmp_path / "m", codec=codec)
    with treeshard.open(tmp_path / "m") as handle:
        assert handle.info.codec == codec
    X, y = make_data("multiclass")
    assert_round_trip_exact(forest, treeshard.load(tmp_path / "m", lazy=False), X, y)
    compressors = json.loads((tmp_path / "m" / "nodes" / "threshold" / "zarr.json").read_text())["codecs"][0]["configuration"]["codecs"]
    names = [c["name"] for c in compressors]
    assert names[-1] == "crc32c"
    assert ("blosc" in names) == (codec != "none")


# --------------------------------------------------------------------------- params
def test_unserializable_param_is_stored_as_null_and_listed(tmp_path):
    X, y = make_data("multiclass")
    model = RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(0)).fit(X, y)
    treeshard.save(model, tmp_path / "m")
    with treeshard.open(tmp_path / "m") as handle:
        info = handle.info
    assert info.unserializable_params == ("random_state",)
    assert info.params["random_state"] is None
    assert info.params["n_estimators"] == 2
    loaded = treeshard.load(tmp_path / "m", lazy=False)
    assert loaded.random_state is None
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert [e.random_state for e in loaded.estimators_] == [e.random_state for e in model.estimators_]


def test_numpy_scalar_params_are_stored_as_tagged_values(tmp_path):
    X, y = make_data("regression")
    model = GradientBoostingRegressor(n_estimators=np.int64(3), learning_rate=np.float32(0.5), random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    info = treeshard.open(store).info
    assert info.params["n_estimators"] == {"numpy": "int64", "value": 3} and info.unserializable_params == ()
    assert info.params["learning_rate"] == {"numpy": "float32", "value": 0.5}
    loaded = treeshard.load(store)
    assert type(loaded.n_estimators) is np.int64 and type(loaded.learning_rate) is np.float32
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_numpy_params_without_a_tag_read_back_as_python_values(memory_round_trip):
    """numpy strings and dtypes outside the tagged ones are plain JSON, as docs/FORMAT.md says."""
    X, y = make_data("binary")
    model = DecisionTreeClassifier(max_depth=3, max_features=np.str_("sqrt"), min_weight_fraction_leaf=np.float16(0.0))
    loaded = memory_round_trip(model.fit(X, y))
    assert type(loaded.max_features) is str and loaded.max_features == "sqrt"
    assert type(loaded.min_weight_fraction_leaf) is float and loaded.min_weight_fraction_leaf == 0.0
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_dict_param_with_the_keys_of_a_numpy_tag_round_trips(memory_round_trip):
    """``class_weight={"numpy": 1.0, "value": 2.0}`` must not read back as a numpy scalar."""
    X, _ = make_data("binary")
    y = np.where(X[:, 0] > 0, "numpy", "value")
    class_weight = {"numpy": 1.0, "value": 2.0}
    model = DecisionTreeClassifier(max_depth=3, class_weight=class_weight, random_state=0).fit(X, y)
    loaded = memory_round_trip(model)
    assert loaded.class_weight == class_weight
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("value", [{"numpy": 1.0, "value": 2.0}, {"ndarray": 1, "shape": 2, "data": 3}])
def test_stores_without_numpy_tags_read_tag_like_dicts_as_dicts(value):
    """Writers before numpy params were tagged left such dicts plain: a tag names its dtype as a string."""
    from treeshard.adapters.base import decode_param

    assert decode_param("config.params.class_weight", value) == value


@pytest.mark.parametrize("estimator_id", sorted(ADAPTERS))
def test_params_are_read_as_get_params_reads_them(estimator_id):
    """``shallow_params`` takes the names once per class: the same dict as ``get_params(deep=False)``."""
    cls = ADAPTERS[estimator_id].estimator_class()
    estimator = cls()
    assert list(shallow_params(estimator).items()) == list(estimator.get_params(deep=False).items())
    estimator.set_params(random_state=np.int64(3))
    assert shallow_params(estimator)["random_state"] is estimator.random_state


def test_params_of_an_estimator_with_its_own_get_params_come_from_it():
    class Custom(DecisionTreeClassifier):
        def get_params(self, deep=True):
            return {"max_depth": 7}

    assert shallow_params(Custom()) == {"max_depth": 7}


def test_sklearn_validates_the_same_stored_params_once(monkeypatch):
    calls = []
    original = DecisionTreeClassifier._validate_params

    def counting(self):
        calls.append(self.max_depth)
        return original(self)

    monkeypatch.setattr(DecisionTreeClassifier, "_validate_params", counting)
    params = {"max_depth": 987_654, "criterion": "entropy"}
    first = build_estimator(DecisionTreeClassifier, params)
    second = build_estimator(DecisionTreeClassifier, dict(params))
    assert first is not second and first.max_depth == second.max_depth == 987_654
    assert calls == [987_654]
    build_estimator(DecisionTreeClassifier, {**params, "max_depth": 987_655})
    assert calls == [987_654, 987_655]


def test_invalid_stored_params_are_refused_every_time():
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"^config.params: The 'max_depth' parameter of DecisionTreeClassifier must be"):
            build_estimator(DecisionTreeClassifier, {"max_depth": -1})


def test_a_config_record_a_reader_would_refuse_is_refused_when_saving():
    deep: object = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ValueError, match=r"^cannot save: the config record would be unreadable \(config: nested deeper than 64 levels\)$"):
        _check_record({"params": {"x": deep}})
    wide = {"params": {f"p{i}": [{"a": [i]}] for i in range(100)}}  # many brackets, shallow
    assert _check_record(wide) == json.dumps(wide).encode()


# --------------------------------------------------------------------------- inline values
def test_inline_attribute_over_the_reader_limit_is_refused_at_save(tmp_path):
    from treeshard.adapters.base import MAX_INLINE_ELEMENTS

    X, y = make_data("binary")
    model = DecisionTreeClassifier(max_depth=2).fit(X, y)
    model.feature_names_in_ = np.array([f"f{i}" for i in range(MAX_INLINE_ELEMENTS + 1)], dtype=object)
    with pytest.raises(UnsupportedEstimatorError, match=r"fitted attribute feature_names_in_: .*at most 1,000,000 elements"):
        treeshard.save(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_inline_sub_estimator_attribute_is_named_in_the_error(forest):
    import copy

    from treeshard.adapters import adapter_for

    model = copy.copy(forest)
    model.estimators_ = [copy.copy(e) for e in forest.estimators_]
    model.estimators_[0].classes_ = np.zeros((1001, 1000))
    with pytest.raises(UnsupportedEstimatorError, match=r"fitted attribute estimators_\[0\]\.classes_: .*shape \(1001, 1000\)"):
        adapter_for(model).to_saved(model)


@pytest.mark.parametrize("shape", [(1_000_001,), (1001, 1000), (0, 1_000_001)])
def test_save_refuses_the_inline_arrays_load_refuses(shape):
    from treeshard import ConfigError
    from treeshard.adapters.base import decode_value, encode_value

    with pytest.raises(UnsupportedEstimatorError, match=r"x: cannot store an inline array of shape .*at most 1,000,000 elements"):
        encode_value(np.zeros(shape, dtype=bool), "x")
    with pytest.raises(ConfigError, match=r"x(\.shape)?: .*(at most 1,000,000 elements|out of range \[0, 1000000\])"):
        decode_value("x", {"ndarray": "bool", "shape": list(shape), "data": []})


@pytest.mark.parametrize("dtype", [object, "<U100001"])
def test_save_refuses_the_inline_strings_load_refuses(dtype):
    from treeshard import ConfigError
    from treeshard.adapters.base import decode_value, encode_value

    value = np.array(["a" * 100_001], dtype=dtype)
    with pytest.raises(UnsupportedEstimatorError, match=r"x: cannot store .*100,?000"):
        encode_value(value, "x")
    encoded = {"ndarray": "object" if dtype is object else dtype, "shape": [1], "data": ["a" * 100_001]}
    with pytest.raises(ConfigError, match=r"x.*(too long|unsupported dtype)"):
        decode_value("x", encoded)


def test_inline_array_at_the_limit_round_trips():
    from treeshard.adapters.base import decode_value, encode_value

    value = np.arange(1_000_000, dtype=np.int64).reshape(1000, 1000) % 7 == 0
    decoded = decode_value("x", json.loads(json.dumps(encode_value(value))))
    assert decoded.dtype == value.dtype and np.array_equal(decoded, value)


# --------------------------------------------------------------------------- info
def test_info_fields(forest, tmp_path):
    import platform

    treeshard.save(forest, tmp_path / "m.zip", metadata={"k": 1})
    with treeshard.open(tmp_path / "m.zip") as handle:
        info = handle.info
    assert info.estimator == "RandomForestClassifier"
    assert info.estimator_type == "classifier"
    assert info.n_estimators == info.n_trees == 3
    assert info.n_nodes == sum(e.tree_.node_count for e in forest.estimators_)
    assert info.n_features == 5
    assert info.n_outputs == 1
    assert info.format_version == 1
    assert info.codec == "lz4"
    assert info.versions["sklearn"] == sklearn.__version__
    assert info.versions["numpy"] == np.__version__
    assert info.versions["zarr"] == zarr.__version__
    assert info.versions["python"] == platform.python_version()
    assert info.versions["treeshard"] == treeshard.__version__
    assert info.params == {k: v for k, v in forest.get_params(deep=False).items()}
    n = info.n_nodes
    assert info.arrays["nodes/tree_ptr"]["nbytes"] == 8 * (3 + 1)
    assert info.arrays["nodes/feature"]["nbytes"] == 4 * n
    assert info.arrays["nodes/threshold"]["nbytes"] == 8 * n
    assert info.arrays["nodes/missing_go_to_left"]["nbytes"] == n
    for name, stats in info.arrays.items():
        assert stats["stored_bytes"] > 0, name
    assert info.stored_bytes == sum(a["stored_bytes"] for a in info.arrays.values())
    assert info.nbytes == sum(a["nbytes"] for a in info.arrays.values())
    created = info.created
    import datetime

    assert datetime.datetime.fromisoformat(created).tzinfo is not None
    as_dict = info.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_info_of_gradient_boosting():
    X, y = make_data("multiclass")
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    info = treeshard.open(store).info
    assert info.estimator_type == "classifier"
    assert info.n_estimators == model.n_estimators_ == 3  # boosting stages, as sklearn counts them
    assert info.n_trees == model.estimators_.size == 12
    assert info.n_nodes == sum(e.tree_.node_count for e in model.estimators_.ravel())


def test_open_reads_no_node_array(forest, tmp_path):
    """open() and .info touch only the config: deleting every array does not matter."""
    import shutil

    treeshard.save(forest, tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / "nodes")
    with treeshard.open(tmp_path / "m") as handle:
        assert handle.info.n_estimators == 3


# --------------------------------------------------------------------------- versions
def test_other_sklearn_version_warns_with_both_versions(forest, tmp_path):
    path = tmp_path / "m"
    treeshard.save(forest, path)
    edit_config(path, lambda cfg: cfg["versions"].update(sklearn="1.2.2"))  # outside the compatibility matrix
    reseal(path)  # as a re-save under 1.2.2 would write it
    with pytest.warns(SklearnVersionWarning, match=r"scikit-learn 1.2.2; installed is " + sklearn.__version__) as record:
        loaded = treeshard.load(path, lazy=False)
    assert len(record) == 1
    warning = record[0].message
    assert warning.saved == "1.2.2"
    assert warning.installed == sklearn.__version__
    X, _ = make_data("multiclass")
    assert np.array_equal(loaded.predict(X), forest.predict(X))


def test_a_version_pair_the_matrix_proves_exact_does_not_warn(forest, tmp_path):
    path = tmp_path / "m"
    treeshard.save(forest, path)
    edit_config(path, lambda cfg: cfg["versions"].update(sklearn="1.3.2"))  # forests: exact 1.3-1.9 (docs/COMPATIBILITY.md)
    reseal(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        treeshard.load(path)


def test_same_sklearn_version_does_not_warn(forest):
    store = zarr.storage.MemoryStore()
    treeshard.save(forest, store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        treeshard.load(store)


# --------------------------------------------------------------------------- unsupported estimators
class MyForest(RandomForestClassifier):
    pass


def _unsupported():  # type: ignore[no-untyped-def]
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LogisticRegression

    X, y = make_data("binary")
    return {
        "LogisticRegression": (LogisticRegression().fit(X, y), r"sklearn.linear_model._logistic.LogisticRegression is not supported; supported: "),
        "subclass": (MyForest(n_estimators=2).fit(X, y), r"test_save.MyForest is not supported"),
        "gbm-custom-init": (
            GradientBoostingRegressor(n_estimators=2, init=DummyRegressor(strategy="median")).fit(X, y),
            r"GradientBoostingRegressor with a custom init estimator \(DummyRegressor\) is not supported",
        ),
        # a pipeline is supported (tests/test_pipeline.py); a step neither treeshard nor skops can store is not
        "pipeline": (
            __import__("sklearn.pipeline").pipeline.make_pipeline(
                __import__("sklearn.preprocessing").preprocessing.FunctionTransformer(lambda x: x), DecisionTreeClassifier()
            ).fit(X, y),
            r"^pipeline\.params\.steps\[0\]\[1\]\.params\.func: the function '_unsupported\.<locals>\.<lambda>' cannot be stored",
        ),
        "not an estimator": ({"a": 1}, r"builtins.dict is not supported"),
    }


@pytest.mark.parametrize("case", ["LogisticRegression", "subclass", "gbm-custom-init", "pipeline", "not an estimator"])
@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_unsupported_estimator_writes_nothing(case, name, tmp_path):
    estimator, match = _unsupported()[case]
    with pytest.raises(UnsupportedEstimatorError, match=match) as caught:
        treeshard.save(estimator, tmp_path / name)
    assert isinstance(caught.value, TypeError)
    assert list(tmp_path.iterdir()) == []


def test_unfitted_estimator_is_refused(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        treeshard.save(RandomForestClassifier(), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("store", [42, None, b"path"])
def test_bad_store_argument(store, forest):
    with pytest.raises(treeshard.InvalidStoreError, match=r"store must be a path or a zarr Store, got"):
        treeshard.save(forest, store)


def test_save_arguments_after_store_are_keyword_only(forest, tmp_path):
    with pytest.raises(TypeError):
        treeshard.save(forest, tmp_path / "m", "zstd")  # type: ignore[misc]
    assert not (tmp_path / "m").exists()


def test_object_labels_must_be_strings(tmp_path):
    X, _ = make_data("binary")
    y = np.array([1, "a"] * (len(X) // 2), dtype=object)
    model = DecisionTreeClassifier(max_depth=2).fit(X, y.astype(str))
    model.classes_ = np.array([1, "a"], dtype=object)
    with pytest.raises(UnsupportedEstimatorError, match=r"object arrays may only hold strings"):
        treeshard.save(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_saved_store_is_plain_zarr(forest, tmp_path):
    """Any zarr v3 reader sees the arrays the format describes."""
    treeshard.save(forest, tmp_path / "m")
    group = zarr.open_group(zarr.storage.LocalStore(tmp_path / "m", read_only=True), mode="r")
    ptr = group["nodes/tree_ptr"][...]
    assert ptr.dtype == np.int64
    assert ptr.tolist() == np.concatenate([[0], np.cumsum([e.tree_.node_count for e in forest.estimators_])]).tolist()
    feature = group["nodes/feature"][...]
    assert np.array_equal(feature[: ptr[1]], forest.estimators_[0].tree_.feature)
    left = group["nodes/left_child_offset"][...][: ptr[1]]
    children = forest.estimators_[0].tree_.children_left
    assert np.array_equal(np.where(left == 0, -1, np.arange(ptr[1]) + left), children)
    config = json.loads((Path(tmp_path / "m") / "zarr.json").read_text())["attributes"]["treeshard"]
    assert config["format_version"] == 1 and config["estimator"] == "RandomForestClassifier"


def test_dict_param_that_looks_like_a_tagged_value_round_trips(memory_round_trip):
    """``class_weight={"float": 2.0}`` must not read back as the float 2.0."""
    X, _ = make_data("binary")
    for tag in ("float", "dict_items"):
        class_weight = {tag: 2.0}
        y = np.where(X[:, 0] > 0, tag, "other")
        model = DecisionTreeClassifier(max_depth=3, class_weight=class_weight, random_state=0).fit(X, y)
        loaded = memory_round_trip(model)
        assert loaded.class_weight == class_weight
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_non_finite_float_inside_a_param_is_listed_not_silently_dropped():
    from treeshard.adapters.base import encode_params

    model = DecisionTreeClassifier(class_weight={0: float("inf"), 1: 1.0}, min_impurity_decrease=0.0)
    params, unserializable = encode_params(model)
    assert unserializable == ["class_weight"]
    assert params["class_weight"] is None
    params, unserializable = encode_params(DecisionTreeClassifier(ccp_alpha=float("inf")))
    assert params["ccp_alpha"] == {"float": "Infinity"} and unserializable == []


def test_unserializable_param_that_cannot_be_null_loads_with_its_default(memory_round_trip):
    """``oob_score=<callable>`` is stored as null, and null is not a valid oob_score:
    the loaded model takes the constructor default instead of failing to load."""
    from sklearn.metrics import balanced_accuracy_score

    X, y = make_data("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # some rows have no OOB score
        model = RandomForestClassifier(n_estimators=6, oob_score=balanced_accuracy_score, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    assert treeshard.open(store).info.unserializable_params == ("oob_score",)
    loaded = treeshard.load(store)
    assert loaded.oob_score is False
    assert loaded.oob_score_ == model.oob_score_
    assert np.array_equal(loaded.oob_decision_function_, model.oob_decision_function_, equal_nan=True)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_metadata_a_reader_would_refuse_is_refused_when_saving(forest, tmp_path):
    """Never write a store that cannot be read: too deep or too large metadata."""
    deep: object = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ValueError, match=r"metadata is nested deeper than 63 levels"):
        treeshard.save(forest, tmp_path / "m", metadata={"deep": deep})
    with pytest.raises(ValueError, match=r"metadata is [\d,]+ bytes as JSON; at most 33,554,432 are allowed"):
        treeshard.save(forest, tmp_path / "m", metadata={"big": "x" * (33 * 2**20)})
    assert list(tmp_path.iterdir()) == []
    # the deepest metadata that is accepted loads back
    ok: object = 1
    for _ in range(30):
        ok = [ok]
    treeshard.save(forest, tmp_path / "m", metadata={"deep": ok})
    assert treeshard.open(tmp_path / "m").info.metadata == {"deep": ok}

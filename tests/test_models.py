"""Saved models: same predictions after a round trip, no pickle, clear refusals of bad files and settings."""

import json
import zipfile

import numpy as np
import pytest

from bench.errors import PatchbenchError
from bench.model_compat import check_compatible
from bench.model_weights import file_weights_id, random_seed, random_weights_id, weights_advice
from bench.models import (
    ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    HEADER,
    load_model,
    save_model,
)
from methods.base import AnomalyMethod, Prediction
from methods.padim import Padim
from methods.patchcore import PatchCore
from methods.spade import Spade
from feature_fixtures import random_features

LAYERS = ("layer1", "layer2", "layer3", "avgpool")
METHODS = {cls.name: cls for cls in (PatchCore, Padim, Spade)}
SETTINGS = dict(backbone="resnet18", weights_id="random-seed0", weights_used="random",
                resize=72, crop=64, layers=LAYERS)
HEADER_KEYS = {"format", "format_version", "method", "class", "params", "fitted", "arrays",
               "model_size_bytes", "backbone", "weights_id", "weights_used", "layers", "resize",
               "crop", "image_size", "category", "versions", "created"}


def fitted(name):
    method = {
        "patchcore": lambda: PatchCore(coreset_ratio=0.5, num_neighbors=3, seed=7),
        "padim": lambda: Padim(n_features=10, seed=3),  # 18 channels: no paper default
        "spade": lambda: Spade(top_k=3),
    }[name]()
    return method.fit(random_features(6, 0))


@pytest.fixture
def saved(tmp_path):
    """A saved PatchCore: ``(method, folder)``."""
    method = fitted("patchcore")
    return method, save_model(method, tmp_path / "model", category="weave", **SETTINGS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loaded_model_predicts_exactly_as_the_fitted_one(tmp_path, name):
    method = fitted(name)
    folder = save_model(method, tmp_path / name, **SETTINGS)
    loaded, header = load_model(folder, METHODS)

    assert type(loaded) is type(method)
    assert vars(loaded).keys() == vars(method).keys()
    for key, value in vars(method).items():
        if isinstance(value, np.ndarray):
            assert loaded.__dict__[key].dtype == value.dtype
            np.testing.assert_array_equal(loaded.__dict__[key], value)
        else:  # hyper-parameters and PaDiM's int and tuple keep their types
            assert loaded.__dict__[key] == value and type(loaded.__dict__[key]) is type(value), key
    test = random_features(3, 1)
    expected, got = method.predict(test), loaded.predict(test)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.maps, expected.maps)
    assert header["path"] == str(folder)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_files_hold_no_pickle_and_the_documented_header(tmp_path, name):
    method = fitted(name)
    folder = save_model(method, tmp_path / name, category="weave", **SETTINGS)
    assert sorted(p.name for p in folder.iterdir()) == sorted([HEADER, ARRAYS])

    with np.load(folder / ARRAYS, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert arrays.keys() == method.fitted_state().keys()
    assert all(not a.dtype.hasobject for a in arrays.values())

    header = json.loads((folder / HEADER).read_text(encoding="utf-8"))
    assert set(header) == HEADER_KEYS
    assert header["format"] == FORMAT and header["format_version"] == FORMAT_VERSION
    assert header["method"] == name
    assert header["class"] == f"{type(method).__module__}:{type(method).__qualname__}"
    assert header["params"].keys() == {k for k in vars(method) if not k.endswith("_")}
    assert header["arrays"] == {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()}
    assert header["model_size_bytes"] == method.model_size_bytes()
    assert (header["backbone"], header["weights_id"], header["weights_used"]) == ("resnet18", "random-seed0", "random")
    assert header["layers"] == list(LAYERS)
    assert (header["resize"], header["crop"], header["image_size"]) == (72, 64, [64, 64])
    assert header["category"] == "weave"
    assert set(header["versions"]) == {"patchbench", "numpy", "paddle", "python"}


def test_padim_non_array_state_is_in_the_header(tmp_path):
    folder = save_model(fitted("padim"), tmp_path / "padim", **SETTINGS)
    header = json.loads((folder / HEADER).read_text())
    assert header["fitted"] == {"input_channels_": 18, "grid_shape_": {"__tuple__": [8, 8]}}


def test_saving_again_replaces_the_model_and_leaves_no_temporary_files(tmp_path):
    first = save_model(fitted("patchcore"), tmp_path / "model", **SETTINGS)
    second = save_model(fitted("spade"), tmp_path / "model", **SETTINGS)
    assert first == second
    assert load_model(second, METHODS)[1]["method"] == "spade"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_save_leaves_nothing_and_keeps_the_previous_model(tmp_path, monkeypatch):
    save_model(fitted("patchcore"), tmp_path / "model", **SETTINGS)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(fitted("spade"), tmp_path / "model", **SETTINGS)
    with pytest.raises(OSError, match="disk full"):
        save_model(fitted("spade"), tmp_path / "new", **SETTINGS)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert load_model(tmp_path / "model", METHODS)[1]["method"] == "patchcore"


def test_a_folder_that_is_not_a_model_is_never_overwritten(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    with pytest.raises(PatchbenchError, match=r"results.*is not a patchbench model"):
        save_model(fitted("patchcore"), tmp_path / "results", **SETTINGS)
    assert (tmp_path / "results" / "notes.txt").read_text() == "keep me"


def test_an_unfitted_method_or_missing_layers_are_refused(tmp_path):
    with pytest.raises(PatchbenchError, match="no fitted state; fit it first"):
        save_model(PatchCore(), tmp_path / "m", **SETTINGS)
    with pytest.raises(PatchbenchError, match="reads layers layer1, avgpool"):
        save_model(fitted("spade"), tmp_path / "m", **{**SETTINGS, "layers": ("layer2", "layer3")})
    assert not (tmp_path / "m").exists()


class Custom(AnomalyMethod):
    """A plugin-like method with hyper-parameters of several JSON types."""

    name = "custom"
    layers = ("layer2",)

    def __init__(self, scale=1.0, window=(3, 3), options=None, label="x"):
        self.scale = scale
        self.window = window
        self.options = options
        self.label = label

    def fit(self, features):
        self.mean_ = features["layer2"].mean(axis=0)
        self.count_ = np.int64(len(features))  # a NumPy scalar comes back a Python int
        self.names_ = ["a", ("b", 2)]
        return self

    def predict(self, features):
        maps = np.abs(features["layer2"] - self.mean_).mean(axis=1) * self.scale
        return Prediction(maps.max(axis=(1, 2)).astype(np.float64), maps)


def test_plugin_hyper_parameters_and_values_keep_their_types(tmp_path):
    method = Custom(scale=2.5, window=(5, 7), options={"mode": [1, (2, 3)], "on": True}, label=None)
    method.fit(random_features(4, 0))
    loaded, _ = load_model(save_model(method, tmp_path / "m", **SETTINGS), {"custom": Custom})
    assert loaded.window == (5, 7) and loaded.options == {"mode": [1, (2, 3)], "on": True}
    assert loaded.label is None and loaded.scale == 2.5
    assert loaded.count_ == 4 and loaded.names_ == ["a", ("b", 2)]
    np.testing.assert_array_equal(loaded.predict(random_features(2, 1)).maps,
                                  method.predict(random_features(2, 1)).maps)


def test_values_json_cannot_hold_are_refused_naming_the_attribute(tmp_path):
    method = Custom(options={1, 2}).fit(random_features(2, 0))
    with pytest.raises(PatchbenchError, match="hyper-parameter 'options' has type set"):
        save_model(method, tmp_path / "a", **SETTINGS)
    method = Custom().fit(random_features(2, 0))
    method.tree_ = object()
    with pytest.raises(PatchbenchError, match="fitted attribute 'tree_' has type object.*without pickle"):
        save_model(method, tmp_path / "b", **SETTINGS)
    method = Custom().fit(random_features(2, 0))
    method.labels_ = np.array([{"a": 1}], dtype=object)
    with pytest.raises(PatchbenchError, match="labels_ holds Python objects"):
        save_model(method, tmp_path / "c", **SETTINGS)
    assert list(tmp_path.iterdir()) == []


# -- loading errors ------------------------------------------------------------------


def test_missing_model_is_named(tmp_path):
    with pytest.raises(PatchbenchError, match=rf"model {tmp_path / 'nope'} does not exist"):
        load_model(tmp_path / "nope", METHODS)


def test_a_folder_without_header_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PatchbenchError, match=rf"{tmp_path / 'empty'} is not a patchbench model.*header.json is missing"):
        load_model(tmp_path / "empty", METHODS)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "cannot read .* as JSON"),
    (b"\xff\xfe\x00garbage", "cannot read .* as JSON"),
    ('["a list"]', 'does not say "format": "patchbench-model"'),
    ('{"format": "something-else"}', 'does not say "format"'),
])
def test_a_garbled_header_is_not_a_model(saved, text, reason):
    _, folder = saved
    file = folder / HEADER
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PatchbenchError, match=rf"{folder} is not a patchbench model.*{reason}"):
        load_model(folder, METHODS)


def edit_header(folder, **changes):
    header = json.loads((folder / HEADER).read_text())
    header.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del header[key]
    (folder / HEADER).write_text(json.dumps(header))


def test_an_unknown_format_version_is_refused(saved):
    _, folder = saved
    edit_header(folder, format_version=1)
    with pytest.raises(PatchbenchError, match=rf"model {folder} has format version 1, but this patchbench reads version 2"):
        load_model(folder, METHODS)


def test_a_header_missing_keys_is_damaged(saved):
    _, folder = saved
    edit_header(folder, weights_id=None, crop="64")
    with pytest.raises(PatchbenchError, match=rf"model {folder} is damaged.*weights_id \(str\), crop \(int\)"):
        load_model(folder, METHODS)


def test_an_unregistered_method_names_the_plugin_to_load(saved):
    _, folder = saved
    edit_header(folder, method="mymethod", **{"class": "my_plugins.fancy:Fancy"})
    with pytest.raises(PatchbenchError, match=r"holds method 'mymethod'.*registered: padim, patchcore, spade.*--plugin my_plugins\.fancy"):
        load_model(folder, METHODS)
    edit_header(folder, **{"class": "patchbench_plugin_fancy:Fancy"})  # loaded from a .py file
    with pytest.raises(PatchbenchError, match=r"--plugin path/to/fancy\.py"):
        load_model(folder, METHODS)


def test_missing_or_mismatched_arrays_are_named(saved):
    _, folder = saved
    with zipfile.ZipFile(folder / ARRAYS, "w") as archive:  # an archive without memory_bank_
        archive.writestr("other.npy", b"")
    with pytest.raises(PatchbenchError, match=rf"model {folder} is incomplete: .*lacks the arrays memory_bank_"):
        load_model(folder, METHODS)

    np.savez(folder / ARRAYS, memory_bank_=np.zeros((2, 2), np.float64))
    with pytest.raises(PatchbenchError, match=r"array memory_bank_ .* is <f8 \[2, 2\] but the header says <f4"):
        load_model(folder, METHODS)

    (folder / ARRAYS).write_bytes(b"not a zip")
    with pytest.raises(PatchbenchError, match=rf"model {folder} is damaged: cannot read"):
        load_model(folder, METHODS)

    (folder / ARRAYS).unlink()
    with pytest.raises(PatchbenchError, match=rf"model {folder} is incomplete: .*arrays.npz is missing"):
        load_model(folder, METHODS)


def test_hyper_parameters_the_class_no_longer_takes_are_refused(saved):
    _, folder = saved
    header = json.loads((folder / HEADER).read_text())
    edit_header(folder, params={**header["params"], "removed_option": 1})
    with pytest.raises(PatchbenchError, match=r"removed_option.*does not accept.*refit"):
        load_model(folder, METHODS)


def test_the_header_file_itself_may_be_given(saved):
    method, folder = saved
    loaded, _ = load_model(folder / HEADER, METHODS)
    np.testing.assert_array_equal(loaded.memory_bank_, method.memory_bank_)


# -- compatibility -----------------------------------------------------------------------


def test_the_settings_of_the_model_are_accepted(saved):
    _, folder = saved
    _, header = load_model(folder, METHODS)
    check_compatible(header, backbone="resnet18", weights_id="random-seed0", resize=72, crop=64)


@pytest.mark.parametrize("given, named", [
    (dict(backbone="wide_resnet50_2"), "backbone resnet18, but is given backbone wide_resnet50_2"),
    (dict(weights_id="imagenet"), "weights random-seed0, but is given weights imagenet"),
    (dict(weights_id="random-seed1"), "weights random-seed0, but is given weights random-seed1"),
    (dict(crop=224, resize=256), "resize 72, crop 64, but is given resize 256, crop 224"),
])
def test_other_settings_are_refused_naming_the_model_and_the_fix(saved, given, named):
    _, folder = saved
    _, header = load_model(folder, METHODS)
    settings = {"backbone": "resnet18", "weights_id": "random-seed0", "resize": 72, "crop": 64, **given}
    with pytest.raises(PatchbenchError) as error:
        check_compatible(header, **settings)
    message = str(error.value)
    assert f"model {folder} was fitted on features from" in message
    assert named in message
    assert "--backbone resnet18 --weights random --seed 0 --resize 72 --crop 64" in message


def test_the_fix_for_a_file_names_the_file_and_its_hash(saved):
    _, folder = saved
    edit_header(folder, weights_id="file-0123456789abcdef", weights_used="file:mine.pdparams")
    _, header = load_model(folder, METHODS)
    with pytest.raises(PatchbenchError, match=r"--weights PATH/TO/mine\.pdparams \(the file whose sha256 starts with 0123456789abcdef\)"):
        check_compatible(header, backbone="resnet18", weights_id="imagenet", resize=72, crop=64)


def test_weights_identity_reads_back_what_it_writes():
    assert random_weights_id(3) == "random-seed3" and random_seed(random_weights_id(3)) == 3
    assert random_seed("random-seed-2") == -2
    assert random_seed("imagenet") is None and random_seed("random-seed") is None
    assert file_weights_id("0123456789abcdef" * 4) == "file-0123456789abcdef"
    assert random_seed(file_weights_id("0" * 64)) is None


@pytest.mark.parametrize("weights_id, weights_used, advice", [
    ("file-0123456789abcdef", "file:mine.pdparams",
     "pass --weights PATH/TO/mine.pdparams (the file whose sha256 starts with 0123456789abcdef)"),
    ("imagenet", "imagenet", "leave --weights out or pass --weights imagenet; offline, pass --weights the path "
                             "of Paddle's ImageNet resnet18.pdparams (its md5 is checked)"),
    ("random-seed4", "random", "leave --weights out (or pass --weights random): the model's random weights come "
                               "from its seed"),
])
def test_weights_advice_for_predict(weights_id, weights_used, advice):
    assert weights_advice({"backbone": "resnet18", "weights_id": weights_id, "weights_used": weights_used}) == advice

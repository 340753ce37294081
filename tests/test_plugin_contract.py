"""The plugin contract: hook specs typed and documented, built-ins using it as outsiders do,
method flags named after their method, and the save-models rules as stated."""

import argparse
import ast
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

import bench
from bench import hookspecs
from bench.cli import base_parser, parse
from bench.errors import PatchbenchError
from bench.models import load_model, save_model
from bench.plugins import BUILTIN_PLUGINS
from datasets.base import Dataset
from methods.base import AnomalyMethod, FeatureSet, Prediction

REPO = Path(__file__).resolve().parents[1]
SPECS = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("patchbench_")}
EXPECTED_HINTS = {
    "patchbench_add_options": {"parser": argparse.ArgumentParser, "return": type(None)},
    "patchbench_check_options": {"options": argparse.Namespace, "return": type(None)},
    "patchbench_methods": {"return": list[type[AnomalyMethod]]},
    "patchbench_datasets": {"return": list[type[Dataset]]},
}


def hints(fn):
    """Type hints of a spec, resolving the names ``bench.hookspecs`` imports for type checking only."""
    return typing.get_type_hints(fn, {**vars(hookspecs), "argparse": argparse, "AnomalyMethod": AnomalyMethod,
                                           "Dataset": Dataset})


def test_every_hook_is_known_here():
    assert set(SPECS) == set(EXPECTED_HINTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_HINTS))
def test_each_hook_has_typed_parameters_and_return(name):
    assert hints(SPECS[name]) == EXPECTED_HINTS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_HINTS))
def test_each_hook_documents_its_parameters_return_and_call_time(name):
    doc = inspect.getdoc(SPECS[name])
    for parameter in inspect.signature(SPECS[name]).parameters:
        assert re.search(rf":param {parameter}:\s*\S", doc), f"{name} does not document {parameter}"
    assert re.search(r":return:\s*\S", doc), f"{name} does not say what it returns"
    assert "Called" in doc, f"{name} does not say when it is called"
    assert "Rules" in doc, f"{name} states no rules"


def test_importing_the_plugin_api_loads_no_method_module():
    code = ("import sys\nfrom bench import hookimpl\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'methods'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_plugin_api_is_the_hookspecs_marker():
    assert bench.hookimpl is hookspecs.hookimpl
    assert bench.__all__ == ["hookimpl"]


@pytest.mark.parametrize("module", BUILTIN_PLUGINS)
def test_builtins_import_hookimpl_from_bench_as_the_readme_says(module):
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    imports = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names]
    assert ("bench", "hookimpl") in imports
    assert not [m for m, _ in imports if m and m.startswith("bench.")], "built-ins import only the plugin API"
    assert not [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names if a.name.split(".")[0] == "bench"]


@pytest.mark.parametrize("module", BUILTIN_PLUGINS)
def test_builtin_hook_implementations_are_typed_like_their_specs(module):
    plugin = __import__(module, fromlist=["_"])
    for name, spec in SPECS.items():
        impl = getattr(plugin, name, None)
        if impl is not None:
            namespace = {**vars(plugin), "argparse": argparse}
            assert typing.get_type_hints(impl, namespace) == EXPECTED_HINTS[name], f"{module}.{name}"


# -- flags named after their method ---------------------------------------------------------------


def flags_added_by(module: str) -> tuple[list[str], list[str]]:
    """(visible, hidden) long option strings ``module``'s ``patchbench_add_options`` adds."""
    plugin = __import__(module, fromlist=["_"])
    parser = argparse.ArgumentParser(add_help=False)
    if hasattr(plugin, "patchbench_add_options"):
        plugin.patchbench_add_options(parser=parser)
    visible = [s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings]
    hidden = [s for a in parser._actions if a.help == argparse.SUPPRESS for s in a.option_strings]
    return visible, hidden


@pytest.mark.parametrize("module", [m for m in BUILTIN_PLUGINS if m.startswith("methods.")])
def test_each_builtin_flag_is_prefixed_with_its_method_name(module):
    plugin = __import__(module, fromlist=["_"])
    names = [cls.name for cls in plugin.patchbench_methods()]
    visible, hidden = flags_added_by(module)
    assert visible
    for flag in visible:
        assert any(flag.startswith(f"--{name}-") for name in names), f"{flag} does not start with --<method>-"
    if module != "methods.patchcore":
        assert hidden == []


def test_patchcore_keeps_its_first_spellings_hidden():
    visible, hidden = flags_added_by("methods.patchcore")
    assert visible == ["--patchcore-coreset-ratio", "--patchcore-num-neighbors"]
    assert hidden == ["--coreset-ratio", "--num-neighbors"]


@pytest.mark.parametrize("old, new", [
    (["--coreset-ratio", "0.3"], ["--patchcore-coreset-ratio", "0.3"]),
    (["--num-neighbors", "4"], ["--patchcore-num-neighbors", "4"]),
    (["--coreset-ratio", "1", "--num-neighbors", "1"],
     ["--patchcore-coreset-ratio", "1", "--patchcore-num-neighbors", "1"]),
    ([], []),
])
def test_old_and_new_patchcore_spellings_parse_to_the_same_options(old, new):
    old_options, _ = parse(old)
    new_options, _ = parse(new)
    assert vars(old_options) == vars(new_options)


def test_help_shows_the_new_patchcore_names_only():
    parser = base_parser()
    from methods.patchcore import patchbench_add_options

    patchbench_add_options(parser=parser)
    text = parser.format_help()
    assert "--patchcore-coreset-ratio RATIO" in text and "--patchcore-num-neighbors B" in text
    listed = re.findall(r"^  (--[\w-]+)", text, flags=re.MULTILINE)  # option lines, not wrapped help
    assert {"--patchcore-coreset-ratio", "--patchcore-num-neighbors"} <= set(listed)
    assert "--coreset-ratio" not in listed and "--num-neighbors" not in listed
    assert "--coreset-ratio" not in parser.format_usage().replace("--patchcore-coreset-ratio", "")


# -- the save-models rules, as the contract states them -------------------------------------------

SETTINGS = dict(backbone="resnet18", weights_id="random-seed0", weights_used="random",
                resize=64, crop=64, layers=("layer2",))


def features(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return FeatureSet({"layer2": rng.normal(size=(n, 4, 8, 8)).astype(np.float32)}, (64, 64))


class ByTheRules(AnomalyMethod):
    """Hyper-parameters under their own names; fitted state in public ``_`` attributes."""

    name = "bytherules"
    layers = ("layer2",)

    def __init__(self, scale: float = 1.0, shape: tuple = (1, 2), labels: dict | None = None):
        self.scale = scale
        self.shape = shape
        self.labels = labels

    def fit(self, features):
        self.mean_ = features["layer2"].mean(axis=0)  # array
        self.names_ = np.array(["a", "bc"])  # a string array: no pickle needed
        self.grid_ = (8, 8)  # a JSON value (tuple)
        self.count_ = np.int64(len(features))  # a NumPy scalar, saved as the number
        self._cache = "not saved"  # private: predict must not need it
        return self

    def predict(self, features):
        grid = np.abs(features["layer2"] - self.mean_).sum(axis=1) * self.scale
        return Prediction(scores=grid.reshape(len(grid), -1).max(axis=1), maps=grid)


def test_a_method_by_the_rules_comes_back_with_exactly_its_public_state(tmp_path):
    method = ByTheRules(scale=2.0, shape=(3, 4), labels={"k": [1, 2]}).fit(features())
    loaded, header = load_model(save_model(method, tmp_path / "m", **SETTINGS), {"bytherules": ByTheRules})
    assert loaded.get_params() == {"scale": 2.0, "shape": (3, 4), "labels": {"k": [1, 2]}}
    assert loaded.grid_ == (8, 8) and loaded.count_ == 3 and type(loaded.count_) is int
    assert loaded.names_.tolist() == ["a", "bc"]
    assert not hasattr(loaded, "_cache")
    assert set(header["arrays"]) == {"mean_", "names_"} and set(header["fitted"]) == {"grid_", "count_"}
    test = features(2, 1)
    np.testing.assert_array_equal(loaded.predict(test).scores, method.predict(test).scores)


@pytest.mark.parametrize("attribute, value", [
    ("mean_", np.array([object(), 1], dtype=object)),  # an object array needs pickle
    ("grid_", {1: 2}),  # a dict with a non-string key
    ("grid_", float("nan")),  # JSON has no NaN
    ("grid_", object()),
])
def test_fitted_state_outside_the_rules_is_refused_by_name(tmp_path, attribute, value):
    method = ByTheRules().fit(features())
    setattr(method, attribute, value)
    with pytest.raises(PatchbenchError, match=attribute):
        save_model(method, tmp_path / "m", **SETTINGS)


def test_a_hyper_parameter_not_kept_under_its_name_is_refused(tmp_path):
    class Renamed(ByTheRules):
        def __init__(self, scale: float = 1.0):
            self._scale = scale

    with pytest.raises(PatchbenchError, match="'scale'"):
        save_model(Renamed().fit(features()), tmp_path / "m", **SETTINGS)


def test_a_method_with_no_public_fitted_state_is_refused(tmp_path):
    class Hidden(ByTheRules):
        def fit(self, features):
            self._mean = features["layer2"].mean(axis=0)
            return self

    with pytest.raises(PatchbenchError, match="no fitted state"):
        save_model(Hidden().fit(features()), tmp_path / "m", **SETTINGS)

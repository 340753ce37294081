"""The saved-model folder format: write a fitted method as a model folder, and read it back.

Which features a loaded model accepts is ``bench.model_compat``; what its
``weights_id`` means, ``bench.model_weights``.

Format (``FORMAT_VERSION`` 2): a model is a folder holding two files::

    <model>/header.json   UTF-8 JSON object, the settings and versions (below)
    <model>/arrays.npz    np.savez archive (uncompressed) of the fitted arrays,
                          one entry per array attribute, named like it
                          (e.g. ``memory_bank_``); plain dtypes only, read
                          with ``np.load(..., allow_pickle=False)``

Nothing is pickled. ``header.json`` keys:

- ``format``: ``"patchbench-model"``; ``format_version``: ``2`` (version 1
  pooled ``avgpool`` from the deepest stage extracted, not always layer4)
- ``method``: the registered method name (``"patchcore"``); ``class``: its
  class as ``"module:qualname"`` (tells which plugin to load)
- ``params``: the hyper-parameters, one per ``__init__`` argument, by name
- ``fitted``: fitted attributes (public, ending in ``_``) that are not arrays,
  by name (e.g. PaDiM's ``input_channels_``, ``grid_shape_``)
- ``arrays``: ``{name: {"dtype": str, "shape": [int, ...]}}`` for each entry
  of ``arrays.npz``; ``model_size_bytes``: their total size
- ``backbone`` (``"resnet18"``), ``weights_id`` (``Backbone.weights_id``:
  ``"imagenet"``, ``"random-seed<N>"``, ``"file-<sha256[:16]>"``),
  ``weights_used`` (``Backbone.weights_used``)
- ``layers``: the layers the method reads, the ones ``predict`` extracts
- ``resize``, ``crop``: the image geometry; ``image_size``: ``[crop, crop]``,
  the size anomaly maps come out at
- ``category``: the category the model was fitted on, or null
- ``versions``: ``patchbench``, ``numpy``, ``paddle``, ``python``
- ``created``: UTC time of saving, ISO 8601

Values in ``params`` and ``fitted`` are JSON (null, bool, int, float, str,
lists, objects with string keys); a tuple is written as
``{"__tuple__": [...]}`` so it comes back a tuple; NumPy scalars are written
as the Python number they hold.

A folder is written under a temporary name beside its target, then renamed:
a model folder under its final name is always complete. Saving over an
existing model replaces it (moved aside, the new one renamed in, the old one
removed); a folder that is not a model is never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import PatchbenchError
from bench.versions import versions
from methods.base import AnomalyMethod

FORMAT = "patchbench-model"
FORMAT_VERSION = 2
HEADER = "header.json"
ARRAYS = "arrays.npz"
TUPLE_TAG = "__tuple__"
# What loading relies on, with its JSON type.
HEADER_TYPES = {
    "method": str, "class": str, "params": dict, "fitted": dict, "arrays": dict, "backbone": str,
    "weights_id": str, "weights_used": str, "layers": list, "resize": int, "crop": int, "image_size": list,
}
# ``--plugin path/to/x.py`` registers its module under this prefix (bench.plugins).
FILE_PLUGIN_PREFIX = "patchbench_plugin_"


class _NotJson(Exception):
    """A value that this format cannot write as JSON."""


# -- saving -------------------------------------------------------------------


def save_model(
    method: AnomalyMethod,
    path,
    *,
    backbone: str,
    weights_id: str,
    weights_used: str,
    resize: int,
    crop: int,
    layers: tuple[str, ...],
    category: str | None = None,
) -> Path:
    """Write the fitted ``method`` as a model folder at ``path``; returns ``path``.

    ``backbone``, ``weights_id``, ``weights_used``: the ``Backbone``'s name and
    attributes; ``layers``: the layers its features were extracted with (at
    least the method's own).
    """
    path = Path(path)
    layers = tuple(layers)
    missing = [layer for layer in type(method).layers if layer not in layers]
    if missing:
        raise PatchbenchError(
            f"cannot save {method.name} to {path}: it reads layers {', '.join(missing)} but the "
            f"features were extracted with {', '.join(layers) or 'no layers'}; pass the extraction's layers"
        )
    arrays = method.fitted_state()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method.name,
        "class": class_path(type(method)),
        "params": hyper_parameters(method, path),
        "fitted": fitted_values(method, path),
        "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()},
        "model_size_bytes": method.model_size_bytes(),
        "backbone": backbone,
        "weights_id": weights_id,
        "weights_used": weights_used,
        "layers": list(layers),
        "resize": int(resize),
        "crop": int(crop),
        "image_size": [int(crop), int(crop)],
        "category": category,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if not arrays and not header["fitted"]:
        raise PatchbenchError(f"cannot save {method.name} to {path}: it has no fitted state; fit it first")
    unsaveable = [name for name, a in arrays.items() if a.dtype.hasobject]
    if unsaveable:
        raise PatchbenchError(
            f"cannot save {method.name} to {path}: fitted array {unsaveable[0]} holds Python objects, "
            "which only pickle could keep; store it as a numeric or string array"
        )
    text = header_text(header)

    def fill(folder: Path) -> None:
        with open(folder / ARRAYS, "wb") as f:  # a file object: NumPy appends nothing to the name
            np.savez(f, **arrays)
        (folder / HEADER).write_text(text, encoding="utf-8")

    return write_folder_atomic(path, fill)


def header_text(header: dict) -> str:
    """Indented JSON with each list of numbers (shapes, sizes) on one line, for people reading it."""
    text = json.dumps(header, indent=2, allow_nan=False)
    compact = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    # The pattern could match inside a string value ("a[ 1 ]"); then keep the plain text.
    return (compact if json.loads(compact) == header else text) + "\n"


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def hyper_parameters(method: AnomalyMethod, path: Path) -> dict[str, Any]:
    """``__init__`` arguments by name (``AnomalyMethod.get_params``), as JSON values."""
    try:
        params = method.get_params()
    except AttributeError as error:
        raise PatchbenchError(f"cannot save {method.name} to {path}: {error}") from None
    return {name: _json_or_refuse(value, f"hyper-parameter {name!r}", method, path)
            for name, value in params.items()}


def fitted_values(method: AnomalyMethod, path: Path) -> dict[str, Any]:
    """Fitted attributes that are not arrays (counts, grid shapes), as JSON values."""
    arrays = method.fitted_state()
    return {
        name: _json_or_refuse(value, f"fitted attribute {name!r}", method, path)
        for name, value in vars(method).items()
        if name.endswith("_") and not name.startswith("_") and name not in arrays
    }


def _json_or_refuse(value, what: str, method: AnomalyMethod, path: Path):
    try:
        return to_json(value)
    except _NotJson:
        raise PatchbenchError(
            f"cannot save {method.name} to {path}: its {what} has type {type(value).__name__}, which "
            "a model cannot keep without pickle; make it a NumPy array, a number, a string, or a "
            "list/tuple/dict of these"
        ) from None


def to_json(value):
    """``value`` as a JSON value; tuples tagged so ``from_json`` gives tuples back."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise _NotJson  # JSON has no NaN or infinity
        return float(value)
    if isinstance(value, tuple):
        return {TUPLE_TAG: [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and set(value) != {TUPLE_TAG}:
        return {k: to_json(v) for k, v in value.items()}
    raise _NotJson


def from_json(value):
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {TUPLE_TAG}:
            return tuple(from_json(v) for v in value[TUPLE_TAG])
        return {k: from_json(v) for k, v in value.items()}
    return value


def write_folder_atomic(path: Path, fill) -> Path:
    """Call ``fill(staging_folder)``, then rename the staging folder to ``path``.

    An existing model at ``path`` is replaced; any other existing file or
    non-empty folder is refused, so a wrong path never deletes someone's data.
    """
    path = Path(path)
    if path.exists() and not (is_model_folder(path) or (path.is_dir() and not any(path.iterdir()))):
        raise PatchbenchError(
            f"cannot save a model to {path}: it exists and is not a patchbench model; "
            "choose another path or remove it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        fill(staging)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "model")
        os.replace(staging, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / "model", path)  # put the previous model back
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def is_model_folder(path: Path) -> bool:
    try:
        return json.loads((Path(path) / HEADER).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# -- loading ------------------------------------------------------------------


def load_model(path, methods: dict[str, type]) -> tuple[AnomalyMethod, dict]:
    """Rebuild a saved method: its class from ``methods`` (name -> class, as
    ``bench.plugins.available_methods`` gives), constructed with the saved
    hyper-parameters, then given the fitted attributes.

    Returns the method and the header, to which ``"path"`` (the model folder,
    a str; not stored in the file) is added for messages.
    """
    folder = model_folder(path)
    header = read_header(folder)
    cls = method_class(header, methods, folder)
    params = from_json(header["params"])
    try:
        method = cls(**params)
    except TypeError as error:
        raise PatchbenchError(
            f"model {folder} was saved with hyper-parameters {', '.join(params) or 'none'} that "
            f"{class_path(cls)} does not accept ({error}); the method changed since: refit and save it again"
        ) from None
    for name, value in from_json(header["fitted"]).items():
        setattr(method, name, value)
    for name, array in read_arrays(folder, header).items():
        setattr(method, name, array)
    return method, {**header, "path": str(folder)}


def model_folder(path) -> Path:
    """The model folder for ``path``: the folder itself, or the folder of its header or arrays file."""
    path = Path(path)
    if not path.exists():
        raise PatchbenchError(
            f"model {path} does not exist; pass --model a folder written by saving a model "
            "(a run with --save-models keeps them in <run>/models/<category>/<method>)"
        )
    if path.is_file() and path.name in (HEADER, ARRAYS):
        return path.parent
    return path


def read_header(folder: Path) -> dict:
    """The parsed ``header.json`` of a model folder, checked for the keys loading needs."""
    not_a_model = (
        f"{folder} is not a patchbench model: a model is a folder holding {HEADER} and {ARRAYS}"
    )
    file = folder / HEADER
    if not folder.is_dir() or not file.is_file():
        raise PatchbenchError(f"{not_a_model}; {file} is missing")
    try:
        header = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PatchbenchError(f"{not_a_model}; cannot read {file} as JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PatchbenchError(f"{not_a_model}; {file} does not say \"format\": \"{FORMAT}\"")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        saved_by = header.get("versions")
        saved_by = saved_by.get("patchbench", "unknown") if isinstance(saved_by, dict) else "unknown"
        raise PatchbenchError(
            f"model {folder} has format version {version!r}, but this patchbench reads version "
            f"{FORMAT_VERSION}; use the patchbench that saved it ({saved_by}) or refit and save the model again"
        )
    wrong = [f"{key} ({kind.__name__})" for key, kind in HEADER_TYPES.items()
             if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool)]
    if wrong:
        raise PatchbenchError(
            f"model {folder} is damaged: in {file}, {', '.join(wrong)} missing or of another type; save it again"
        )
    return header


def method_class(header: dict, methods: dict[str, type], folder: Path) -> type:
    name = header["method"]
    if name in methods:
        return methods[name]
    module = str(header["class"]).split(":")[0]
    if module.startswith(FILE_PLUGIN_PREFIX):
        hint = f"--plugin path/to/{module[len(FILE_PLUGIN_PREFIX):]}.py"
    else:
        hint = f"--plugin {module}"
    raise PatchbenchError(
        f"model {folder} holds method {name!r} ({header['class']}), which no loaded plugin registers "
        f"(registered: {', '.join(sorted(methods)) or 'none'}); load its plugin with {hint}"
    )


def read_arrays(folder: Path, header: dict) -> dict[str, np.ndarray]:
    """The arrays the header lists, each checked against its recorded dtype and shape."""
    file = folder / ARRAYS
    expected = header["arrays"]
    if not file.is_file():
        if not expected:
            return {}
        raise PatchbenchError(f"model {folder} is incomplete: {file} is missing; save the model again")
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [name for name in expected if name not in archive.files]
            if missing:
                raise PatchbenchError(
                    f"model {folder} is incomplete: {file} lacks the arrays {', '.join(missing)} "
                    "that its header lists; save the model again"
                )
            arrays = {name: archive[name] for name in expected}
    except PatchbenchError:
        raise
    except Exception as error:  # zip and format errors surface as several types
        raise PatchbenchError(f"model {folder} is damaged: cannot read {file} ({error}); save it again") from None
    for name, array in arrays.items():
        spec = expected[name]
        if array.dtype.str != spec.get("dtype") or list(array.shape) != spec.get("shape"):
            raise PatchbenchError(
                f"model {folder} is damaged: array {name} in {file} is {array.dtype.str} {list(array.shape)} "
                f"but the header says {spec.get('dtype')} {spec.get('shape')}; save the model again"
            )
    return arrays

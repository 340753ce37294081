"""The plugin manager: built-in methods and data sets, installed plugins, and ``--plugin`` modules."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from bench import hookspecs
from bench.errors import PatchbenchError

if TYPE_CHECKING:
    from datasets.base import Dataset
    from methods.base import AnomalyMethod

BUILTIN_PLUGINS = ("methods.patchcore", "methods.padim", "methods.spade", "bench.builtin_datasets")
ENTRY_POINT_GROUP = "patchbench"


def import_plugin(spec: str) -> ModuleType:
    """Import ``spec``: a dotted module name, or the path of a ``.py`` file."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PatchbenchError(f"plugin file {path} does not exist; check the --plugin path")
        name = f"patchbench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise PatchbenchError(
            f"cannot import plugin module {spec!r} ({exc}); install it, put its folder on "
            "PYTHONPATH, or pass the path of its .py file to --plugin"
        ) from None


def plugin_manager(extra: tuple[str, ...] | list[str] = ()) -> pluggy.PluginManager:
    """A manager with the hook specs, the built-ins, entry-point plugins and ``extra`` modules."""
    manager = pluggy.PluginManager("patchbench")
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for spec in extra:
        module = import_plugin(spec)
        if manager.is_registered(module):
            continue
        manager.register(module, name=spec)
    return manager


_SHARED: dict[tuple[str, ...], pluggy.PluginManager] = {}


def shared_manager(extra: tuple[str, ...] | list[str] = ()) -> pluggy.PluginManager:
    """One ``plugin_manager(extra)`` per process, for a Dask worker's methods and dataset alike, so a
    ``--plugin`` file runs once there."""
    key = tuple(extra)
    if key not in _SHARED:
        _SHARED[key] = plugin_manager(key)
    return _SHARED[key]


def available_methods(manager: pluggy.PluginManager) -> dict[str, type[AnomalyMethod]]:
    """Method classes by name from every registered plugin; two methods of one name are an error."""
    return _by_name(manager.hook.patchbench_methods(), "method")


def available_datasets(manager: pluggy.PluginManager) -> dict[str, type[Dataset]]:
    """Dataset classes by name from every registered plugin; two data sets of one name are an error."""
    return _by_name(manager.hook.patchbench_datasets(), "dataset")


def _by_name(lists: list[list[type]], kind: str) -> dict[str, type]:
    found: dict[str, type] = {}
    for plugin_classes in lists:
        for cls in plugin_classes:
            name = getattr(cls, "name", "")
            if not name:
                raise PatchbenchError(f"{kind} class {cls.__qualname__} has no 'name'; set one")
            if name in found and found[name] is not cls:
                raise PatchbenchError(
                    f"two plugins register a {kind} named {name!r} "
                    f"({found[name].__module__} and {cls.__module__}); rename one"
                )
            found[name] = cls
    return dict(sorted(found.items()))

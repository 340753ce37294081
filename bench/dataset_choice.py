"""Which dataset a run reads: ``--dataset NAME``, else the one layout the folder matches, else MVTec AD.

Without ``--data-path`` the run reads the synthetic set, which is written in
the MVTec AD layout. With a folder and no ``--dataset``, every registered
dataset class is asked whether the folder looks like its layout
(``Dataset.detect``): one match is used (a layout that ``refines`` another, as
MPDD does MVTec AD, wins over it), several are an error that lists them, none
falls back to MVTec AD, whose errors then say what that layout expects.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import PatchbenchError
from bench.log import logger
from datasets.base import Dataset

DEFAULT = "mvtec_ad"


def choose_dataset(registered: dict[str, type[Dataset]], name: str | None, root: Path | None) -> type[Dataset]:
    """The class of ``--dataset name`` (``None``: detected from ``root``; ``root`` None: the synthetic set)."""
    if name is not None:
        if name not in registered:
            raise PatchbenchError(f"unknown dataset {name!r}; registered: {', '.join(registered)} "
                                  "(a plugin's datasets appear once it is installed or passed with --plugin; "
                                  "see --list-datasets)")
        if root is None and name != DEFAULT:
            raise PatchbenchError(f"--dataset {name} needs --data-path, the folder of that data set "
                                  f"(without it the run reads the synthetic set, which is laid out as {DEFAULT})")
        return registered[name]
    if root is None:
        return registered[DEFAULT]
    found = detected(registered, root)
    if len(found) > 1:
        raise PatchbenchError(f"{root} looks like several dataset layouts ({', '.join(found)}); "
                              "choose one with --dataset")
    if found:
        logger.info("dataset: %s, detected from the layout of %s (--dataset chooses another)", found[0], root)
        return registered[found[0]]
    parent = detected(registered, root.parent) if root.is_dir() else []
    if len(parent) == 1:
        raise PatchbenchError(f"{root} looks like one category of a {parent[0]} data set; pass its parent, "
                              f"--data-path {root.parent} --category {root.name}")
    logger.info("dataset: %s, the default: no registered layout matches %s (see --list-datasets; --dataset "
                "chooses another)", DEFAULT, root)
    return registered[DEFAULT]


def detected(registered: dict[str, type[Dataset]], root: Path) -> list[str]:
    """Names of the datasets whose layout ``root`` matches, less those another match refines."""
    if not root.is_dir():
        return []
    found = [name for name, cls in registered.items() if _detects(cls, root)]
    refined = {registered[name].refines for name in found}
    return [name for name in found if name not in refined]


def _detects(cls: type[Dataset], root: Path) -> bool:
    try:
        return bool(cls.detect(root))
    except OSError:  # an unreadable folder is simply not this layout; reading it later says why
        return False
    except Exception as exc:  # noqa: BLE001 - one plugin's broken detect must not stop every run
        logger.warning("warning: dataset %r (%s) could not tell whether %s is its layout: %s: %s",
                       cls.name, cls.__module__, root, type(exc).__name__, exc)
        return False


def list_datasets(registered: dict[str, type[Dataset]], root: Path | None = None) -> str:
    """One line per dataset: name, module, summary, then its layout and groups; with ``root``, the
    layout a run would read there is marked."""
    chosen = detected(registered, root) if root is not None else []
    lines = []
    for name, cls in registered.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0:1]
        mark = ("" if name not in chosen else f"  [detected in {root}]" if len(chosen) == 1
                else f"  [one of {len(chosen)} layouts {root} matches: pass --dataset]")
        lines.append(f"{name:<12} {cls.__module__:<24} {summary[0] if summary else ''}{mark}")
        if cls.layout:
            lines.append(f"{'':<12} layout: {cls.layout}")
        if cls.groups:
            lines.append(f"{'':<12} groups: {', '.join(cls.groups)}")
    return "\n".join(lines)


_OPEN: dict[tuple, Dataset] = {}


def open_dataset(options, data_root: Path) -> Dataset:
    """The run's dataset (``options.dataset``, default MVTec AD) on ``data_root``, built once per process
    from the run's plugins: what a Dask worker reads, and a caller that brings no dataset."""
    name = getattr(options, "dataset", None) or DEFAULT
    plugins = tuple(getattr(options, "plugin", ()))
    key = (plugins, name, str(data_root), options.seed)
    if key not in _OPEN:
        from bench.plugins import available_datasets, shared_manager

        cls = choose_dataset(available_datasets(shared_manager(plugins)), name, Path(data_root))
        _OPEN[key] = cls.from_config(Path(data_root), options)
    return _OPEN[key]

"""``python bench.py cache [list|clear]``: show or clear the persistent caches.

Two of them: extracted features (``--cache-dir``, ``bench.features``) and the
saved inference models of the backbones (``--models-dir``, ``bench.backbone``),
which spare a later run tracing the network again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench.saved_model import remove_model, saved_model_problem
from bench.features import MANIFEST, default_cache_dir
from datasets.cache_root import cache_root

# What a saved model folder holds (older ones lack sizes.json); a folder with none of them is not ours.
MODEL_FILES = ("sizes.json", "model.pdiparams", "model.json", "model.pdmodel")


def entries(cache_dir: Path) -> list[tuple[Path, dict]]:
    """``(folder, manifest)`` of every entry: a folder holding the cache's manifest file.

    An unreadable manifest gives ``{}``; folders without one are not the cache's.
    """
    found = []
    for folder in sorted(p for p in Path(cache_dir).glob("*") if (p / MANIFEST).is_file()):
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}
        found.append((folder, manifest))
    return found


def strangers(cache_dir: Path) -> list[Path]:
    """What lies in ``cache_dir`` that is not a cache entry: never listed as one, never deleted."""
    return sorted(p for p in Path(cache_dir).glob("*") if not (p / MANIFEST).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def listing(cache_dir: Path) -> str:
    rows, total = [], 0
    for folder, manifest in entries(cache_dir):
        d = manifest.get("description", {})
        size = folder_bytes(folder)
        total += size
        layers = ",".join(manifest.get("layers", {})) or "(incomplete)"
        rows.append(f"{folder.name[:12]}  {d.get('category', '?'):<14} {d.get('split', '?'):<5} "
                    f"{d.get('backbone', '?'):<16} {d.get('weights', '?'):<22} "
                    f"{len(d.get('files', [])):>5} images  {layers:<34} {size / 2**20:>9.1f} MB")
    rows.append(f"{len(rows)} entries, {total / 2**20:.1f} MB in {cache_dir}")
    return "\n".join(rows)


def default_models_dir() -> Path:
    """``<cache root>/models``, where ``Backbone`` saves traced models by default."""
    return cache_root() / "models"


def model_entries(models_dir: Path) -> list[Path]:
    """Saved model folders, complete or not: any folder holding one of ``MODEL_FILES``.

    That includes a trace left half-done by a killed run (a ``.<name>.*`` staging folder).
    """
    return sorted(p for p in Path(models_dir).glob("*")
                  if p.is_dir() and any((p / name).is_file() for name in MODEL_FILES))


def model_listing(models_dir: Path) -> str:
    rows, total = [], 0
    for folder in model_entries(models_dir):
        size = folder_bytes(folder)
        total += size
        problem = saved_model_problem(str(folder))
        state = "ok" if problem is None else f"damaged or incomplete ({problem}): traced again when used"
        rows.append(f"{folder.name}  {size / 2**20:>9.1f} MB  {state}")
    rows.append(f"{len(rows)} saved models, {total / 2**20:.1f} MB in {models_dir}")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py cache", description=__doc__)
    parser.add_argument("action", nargs="?", default="list", choices=["list", "clear"],
                        help="list the entries (default) or delete them all; only folders holding "
                             f"the cache's {MANIFEST} are touched")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the feature cache (default: $PATCHBENCH_CACHE/features, else ~/.cache/patchbench/features)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="the saved inference models (default: $PATCHBENCH_CACHE/models, "
                             "else ~/.cache/patchbench/models)")
    options = parser.parse_args(argv)
    cache_dir = options.cache_dir or default_cache_dir()
    models_dir = options.models_dir or default_models_dir()
    if options.action == "clear":
        removed = entries(cache_dir)
        for folder, _ in removed:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"removed {len(removed)} entries from {cache_dir}")
        models = model_entries(models_dir)
        for folder in models:
            remove_model(str(folder))  # renamed first: a run loading it never sees it half-deleted
        print(f"removed {len(models)} saved models from {models_dir}")
    else:
        print(listing(cache_dir))
        print(model_listing(models_dir))
    others = strangers(cache_dir)
    if others:
        print(f"left alone {len(others)} item(s) that are not feature cache entries (no {MANIFEST}): "
              + ", ".join(p.name for p in others[:10]) + (", ..." if len(others) > 10 else ""))
    return 0

"""A saved inference model's folder: Paddle's files plus ``sizes.json``, and how to tell a damaged one.

``Backbone`` traces its trunk into a staging folder, records every file's size
there last (``write_sizes``), then renames the folder into place; a folder
whose files are missing or of other sizes is damaged (``saved_model_problem``)
and is taken away (``remove_model``) to be traced again. Checked before Paddle
reads anything: a missing file can abort its C++ instead of raising.
"""

from __future__ import annotations

import json
import os
import shutil

SIZES = "sizes.json"


def write_sizes(folder: str) -> None:
    """Record every file's size in ``folder/sizes.json``: a later truncation is then caught before Paddle."""
    sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}
    with open(os.path.join(folder, SIZES), "w", encoding="utf-8") as f:
        json.dump(sizes, f)


def saved_model_problem(folder: str) -> str | None:
    """Why the saved model in ``folder`` cannot be complete, or None if its files are all there."""
    try:
        with open(os.path.join(folder, SIZES), encoding="utf-8") as f:
            sizes = json.load(f)
        if not isinstance(sizes, dict) or not sizes:
            return f"{SIZES} is empty or not a mapping"
    except (OSError, ValueError) as error:
        return f"{SIZES} missing or unreadable ({error})"
    if "model.pdiparams" not in sizes or not ({"model.json", "model.pdmodel"} & set(sizes)):
        return f"{SIZES} names no model and parameters file"
    for name, size in sizes.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if os.path.getsize(path) != size:
            return f"{name} has {os.path.getsize(path)} bytes, not {size}"
    return None


def remove_model(folder: str) -> None:
    """Take a damaged saved model away: renamed first (atomic), so no other process loads it half-deleted."""
    doomed = f"{folder}.damaged-{os.getpid()}"
    try:
        os.rename(folder, doomed)
    except OSError:
        return  # another process got there first
    shutil.rmtree(doomed, ignore_errors=True)

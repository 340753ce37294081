"""Reading a finished (or old, or partly failed) run folder back: its settings and result rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from reports.errors import ReportError

RUN_FILE = "run.json"
RESULTS_CSV = "results.csv"


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist; pass the folder of a patchbench run "
                              "(the one holding results.csv)")
    return run_dir


def read_results(run_dir: Path) -> pd.DataFrame:
    """``results.csv`` as a frame, one row per (category, method); an ``error`` column always present."""
    csv = check_run_dir(run_dir) / RESULTS_CSV
    if not csv.is_file():
        raise ReportError(f"{csv} is missing; {run_dir} is not a finished patchbench run folder")
    try:
        results = pd.read_csv(csv)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {csv}: {exc}") from None
    missing = [c for c in ("category", "method") if c not in results]
    if missing:
        raise ReportError(f"{csv} has no {', '.join(missing)} column; it was not written by patchbench")
    if "error" not in results:
        # A run without failures writes no error column; callers should not have to care.
        results["error"] = pd.Series([None] * len(results), dtype=object)
    results["category"] = results["category"].astype(str)
    results["method"] = results["method"].astype(str)
    return results


def read_settings(run_dir: Path) -> dict:
    """``run.json`` (``{"argv": [...], "header": {...}}``), or empty settings for a folder without one."""
    path = check_run_dir(run_dir) / RUN_FILE
    if not path.exists():
        return {"argv": [], "header": {}}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}; it is not a patchbench run file") from None
    settings.setdefault("argv", [])
    settings.setdefault("header", {})
    return settings


def fpr_limit(settings: dict, default: float = 0.3) -> float:
    return float(settings["header"].get("PRO FPR limit", default))


def image_geometry(settings: dict) -> tuple[int, int] | None:
    """``(resize, crop)`` of the run, from the header's ``"resize R, crop C"``; None when not recorded."""
    match = re.search(r"resize\s+(\d+)\D+crop\s+(\d+)", str(settings["header"].get("image", "")))
    return (int(match.group(1)), int(match.group(2))) if match else None


def requested_device(settings: dict) -> str:
    """The device the run used if recorded, else the ``--device`` it was started with."""
    if "device" in settings["header"]:
        return str(settings["header"]["device"])
    argv = list(settings.get("argv", []))
    device = "auto"
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            device = argv[i + 1]
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
    if device != "auto":
        return device  # an explicit device is the one used: the run stops when it is unavailable
    return "auto (the GPU when Paddle has one; which one was used is not recorded in run.json)"

"""The run folder on disk: the one module that writes and reads ``run.json``, ``results.csv`` and ``results.md``.

A run folder holds::

    run.json      the settings (``RunSettings``), format version 2 (3 for a run of several backbones)
    results.csv   one row per (category, backbone, method, seed); an ``error`` column for rows that failed
    results.md    the settings as a list, then one table per column
    run.log, report.html, predictions/, models/   written by others into the same folder

``run.json``, format version 2 or 3, is a JSON object with snake_case keys::

    {"format": "patchbench-run", "format_version": 2,
     "argv": ["--methods", "patchcore", ...],      the command line, for --resume
     "data": "/path/to/root", "categories": ["bottle", ...],
     "backbone": "resnet18", "weights": "imagenet" | "random" | "file:<name>" | "imagenet, random" ...,
     "backbones": ["resnet18", "wide_resnet50_2"],   a run of several; [] for one ("backbone")
     "resize": 256, "crop": 224, "seed": 0, "pro_fpr_limit": 0.3,
     "seeds": [0, 1, 2],        the methods' seeds (a row each); "seed" is the data's and weights'
     "bootstrap": 1000,         resamples of the test images per interval, 0 for none
     "device": "cpu" | "gpu",
     "methods": {"patchcore": {"coreset_ratio": 0.1, ...}, ...},   hyper-parameters
     "versions": {"patchbench": "...", "numpy": "...", ...}}

Version 3 is version 2 with several ``backbones``. A run of one backbone still
writes version 2, which an older patchbench reads right; that one would read
the rows of several backbones as one method's and show the first backbone's
numbers, so a run of several writes 3, which it refuses with a clear message.
Folders written before version 2 (``{"argv", "header": {prose}, "versions"}``)
are read through ``_from_version_1``, the only place that parses that prose.
Every write is atomic: an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from reports.atomic import write_atomic, write_text_atomic
from reports.errors import ReportError
from reports.tables import configurations, markdown_tables, table_columns

FORMAT = "patchbench-run"
FORMAT_VERSION = 2
SEVERAL_BACKBONES_VERSION = 3  # see the module docstring
RUN_FILE = "run.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"


@dataclass(frozen=True)
class RunSettings:
    """What a run was asked to do and what it ran on; ``None`` where an old folder did not say."""

    argv: list[str] = field(default_factory=list)
    data: str | None = None
    dataset: str | None = None  # the dataset class's name (``--dataset``); older run.json: ``OLD_RUNS_DATASET``
    categories: list[str] = field(default_factory=list)
    backbone: str | None = None  # the first of ``backbones`` in a run of several
    backbones: list[str] = field(default_factory=list)
    # what the backbones were built with: "imagenet", or one value per backbone ("imagenet, random")
    weights: str | None = None
    resize: int | None = None
    crop: int | None = None
    seed: int | None = None
    pro_fpr_limit: float = 0.3
    seeds: list[int] = field(default_factory=list)
    bootstrap: int = 0
    device: str | None = None
    methods: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def header(self) -> dict[str, str]:
        """The settings as the lines of results.md, compare and the report: ``{label: text}``."""
        lines = {
            "data": self.data,
            "dataset": self.dataset,
            "categories": ", ".join(self.categories) if self.categories else None,
            "backbone": ", ".join(self.run_backbones) or None,
            "weights": self.weights,
            "image": f"resize {self.resize}, crop {self.crop}" if self.resize is not None else None,
            "seed": self.seed if self._one_seed else f"{self.seed} (data, weights, bootstrap)",
            "method seeds": None if self._one_seed else ", ".join(map(str, self.method_seeds)),
            "PRO FPR limit": self.pro_fpr_limit,
            "bootstrap": f"{self.bootstrap} resamples of the test images, 95 % percentile intervals"
            if self.bootstrap else None,
            "device": self.device,
        }
        for name, params in self.methods.items():
            lines[f"{name} settings"] = ", ".join(f"{k}={v}" for k, v in params.items()) or "(none)"
        return {label: str(text) for label, text in lines.items() if text is not None}

    @property
    def method_seeds(self) -> list[int]:
        """The seeds the methods ran with, one row each; a folder of before seeds were an axis had one."""
        if self.seeds:
            return list(self.seeds)
        return [] if self.seed is None else [self.seed]

    @property
    def run_backbones(self) -> list[str]:
        """The backbones of the run in order; a folder of before backbones were an axis had one."""
        if self.backbones:
            return list(self.backbones)
        return [] if self.backbone is None else [self.backbone]

    @property
    def several_backbones(self) -> bool:
        """Whether the rows are per (category, backbone, method, seed) with more than one backbone."""
        return len(self.run_backbones) > 1

    @property
    def _one_seed(self) -> bool:
        """Whether ``seed`` was every seed of the run, as before seeds were an axis."""
        return self.method_seeds in ([], [self.seed])

    def to_json(self) -> str:
        version = SEVERAL_BACKBONES_VERSION if self.several_backbones else FORMAT_VERSION
        return json.dumps({"format": FORMAT, "format_version": version, **asdict(self)}, indent=2)


# Runs written before datasets were plugins read the MVTec AD layout (or the synthetic set, laid out as it).
OLD_RUNS_DATASET = "mvtec_ad"


def settings_from_json(data: dict, path: Path) -> RunSettings:
    """``RunSettings`` from the parsed ``run.json`` at ``path``, of either format version."""
    if not isinstance(data, dict):
        raise ReportError(f"{path} holds no JSON object; it is not a patchbench run file")
    if "format" not in data:
        return _from_version_1(data)
    if data.get("format") != FORMAT or data.get("format_version") not in (FORMAT_VERSION, SEVERAL_BACKBONES_VERSION):
        raise ReportError(
            f"{path} is {data.get('format')!r} version {data.get('format_version')!r}; this patchbench reads "
            f"{FORMAT!r} versions {FORMAT_VERSION} and {SEVERAL_BACKBONES_VERSION}: use the patchbench that "
            "wrote it, or run again")
    known = {key: data[key] for key in RunSettings.__dataclass_fields__ if key in data}
    known["dataset"] = known.get("dataset") or OLD_RUNS_DATASET
    return RunSettings(**known)


def _from_version_1(data: dict) -> RunSettings:
    """A run.json of before version 2, whose settings were prose under ``header``."""
    header = data.get("header", {})
    image = re.search(r"resize\s+(\d+)\D+crop\s+(\d+)", str(header.get("image", "")))
    return RunSettings(
        argv=list(data.get("argv", [])),
        data=header.get("data"),
        dataset=OLD_RUNS_DATASET,
        categories=[c for c in str(header.get("categories", "")).split(", ") if c],
        backbone=header.get("backbone"),
        weights=header.get("weights"),
        resize=int(image.group(1)) if image else None,
        crop=int(image.group(2)) if image else None,
        seed=header.get("seed"),
        pro_fpr_limit=float(header.get("PRO FPR limit", 0.3)),
        device=header.get("device"),
        versions=data.get("versions") or {},
    )


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist; pass the folder of a patchbench run "
                          "(the one holding results.csv)")
    return run_dir


def read_settings(run_dir: Path) -> RunSettings:
    """The settings of the run in ``run_dir``; empty settings for a folder without ``run.json``."""
    path = check_run_dir(run_dir) / RUN_FILE
    if not path.exists():
        return RunSettings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}; it is not a patchbench run file") from None
    return settings_from_json(data, path)


def read_results(run_dir: Path) -> pd.DataFrame:
    """``results.csv`` as a frame, one row per (category, [backbone,] method, seed) as written (no
    ``configurations``); an ``error`` column always present."""
    csv = check_run_dir(run_dir) / RESULTS_CSV
    if not csv.is_file():
        raise ReportError(f"{csv} is missing; {run_dir} is not a finished patchbench run folder")
    try:
        # names as text: BTAD's category "01" is not the number 1
        results = pd.read_csv(csv, dtype={"category": str, "method": str, "backbone": str})
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


def requested_device(settings: RunSettings) -> str:
    """The device the run used if recorded, else the ``--device`` it was started with."""
    if settings.device:
        return settings.device
    device = "auto"
    for i, arg in enumerate(settings.argv):
        if arg == "--device" and i + 1 < len(settings.argv):
            device = settings.argv[i + 1]
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
    if device != "auto":
        return device  # an explicit device is the one used: the run stops when it is unavailable
    return "auto (the GPU when Paddle has one; which one was used is not recorded in run.json)"


class RunFolder:
    """One run's folder: created with its settings, or opened again to resume it."""

    def __init__(self, path: Path, settings: RunSettings):
        self.path = Path(path)
        self.settings = settings

    @classmethod
    def create(cls, parent: Path, settings: RunSettings) -> "RunFolder":
        """A new folder under ``parent`` named after the current time, with ``run.json`` written."""
        folder = cls(_new_run_dir(Path(parent)), settings)
        write_text_atomic(folder.path / RUN_FILE, settings.to_json())
        return folder

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        """An existing run folder, to be resumed."""
        run_file = Path(path) / RUN_FILE
        if not run_file.is_file():
            raise ReportError(f"cannot resume from {path}: {run_file} is missing; "
                              "pass the folder of a run that patchbench started")
        return cls(Path(path), read_settings(path))

    def finished_rows(self) -> list[dict]:
        """Rows of an earlier attempt that completed without error."""
        if not (self.path / RESULTS_CSV).exists():
            return []
        table = read_results(self.path)
        return table[table["error"].isna()].drop(columns="error").to_dict("records")

    def write(self, rows: list[dict]) -> str:
        """Write ``results.csv`` and ``results.md`` from ``rows``; return the Markdown."""
        results = pd.DataFrame(rows)
        write_atomic(self.path / RESULTS_CSV, lambda tmp: results.to_csv(tmp, index=False))
        header = "\n".join(f"- {label}: {text}" for label, text in self.settings.header().items())
        # A run of several backbones labels its configurations even when only one backbone has rows yet.
        shown = configurations(results, always=self.settings.several_backbones)
        tables = markdown_tables(shown, table_columns(self.settings.pro_fpr_limit, shown))
        markdown = f"# patchbench results\n\n{header}\n\n{tables}"
        write_text_atomic(self.path / RESULTS_MD, markdown)
        return markdown


def _new_run_dir(parent: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(1, 1000)]:
        path = parent / f"{stamp}{suffix}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise ReportError(f"cannot create a run folder under {parent}; clean it up")

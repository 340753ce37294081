"""One benchmark run, the driver: the grid of units, where they run, and the one writer of the run folder.

The grid is every (category, backbone), each a unit (``bench.units``) that
extracts its features once and then fits, predicts and scores every (method,
seed). Units run here, one after the other (no Dask import), or on Dask workers
(``bench.grid``, with ``--workers N`` or ``--scheduler ADDRESS``). Either way the
driver alone writes the run folder: each row as it arrives, with the files it
carries, then ``results.csv`` and ``results.md`` again (atomically), so an
interrupted run keeps what it finished and ``--resume`` carries on from there,
per (category, backbone, method, seed) row.

At the end the run logs one ``time:`` line (``bench.run_timing``): the
whole-process wall time, the phases it measured, and the rest, which is
start-up and overhead (imports, plugins, Paddle when it extracts).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from bench.log import attach_run_log, detach_run_log, logger, progress
from bench.run_timing import format_timing, process_seconds
from bench.units import Naming, Unit, backbone_for, method_seeds, run_unit, seeded
from bench.versions import versions
from bench.dataset_choice import open_dataset
from datasets.base import Dataset
from methods.base import AnomalyMethod
from reports.atomic import write_atomic
from reports.runfolder import RunFolder, RunSettings


@dataclass
class RunResult:
    run_dir: Path
    results: pd.DataFrame

    @property
    def failed(self) -> bool:
        return "error" in self.results and self.results["error"].notna().any()


def backbone_names(options) -> list[str]:
    """The run's backbones: ``--backbone a,b`` as a list."""
    value = options.backbone
    return list(value) if isinstance(value, (list, tuple)) else [value]


def method_settings(methods: dict[str, type[AnomalyMethod]], options) -> dict[str, dict]:
    """Each method's hyper-parameters as the run sets them, ``{name: {param: value}}``, for run.json
    (so results.md and ``compare`` show them); values JSON cannot hold are written as text. With
    several seeds a ``seed`` parameter reads "per row", the rows' ``seed`` column says which."""
    seeds = method_seeds(options)
    settings = {}
    for name, cls in methods.items():
        try:
            params = cls.from_config(seeded(options, seeds[0])).get_params()
            if len(seeds) > 1 and "seed" in params:
                params["seed"] = "per row (method seeds)"
        except Exception as exc:  # noqa: BLE001 - a plugin's bad constructor fails its rows, not the run
            params = {"not recorded": f"{type(exc).__name__}: {exc}"}
        settings[name] = {key: value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
                          for key, value in params.items()}
    return settings


def run(options, methods: dict[str, type[AnomalyMethod]], data_root: Path, folder: RunFolder | None = None,
        out: TextIO | None = None, backbones: dict | None = None, dataset: Dataset | None = None) -> RunResult:
    """Benchmark ``methods`` on every category ``options.category`` names under ``data_root``, on every
    backbone of ``--backbone``, once per seed.

    ``dataset``: the dataset on ``data_root`` (default: ``options.dataset``, else MVTec AD).
    ``folder``: an existing run to resume; its finished rows are kept.
    ``backbones``: ready ``Backbone`` objects by name for the in-process loop (tests count their calls);
    the others are built once per process (``bench.units.backbone_for``).
    """
    out = out or sys.stdout
    dataset = dataset or open_dataset(options, data_root)
    categories = dataset.resolve(options.category)
    names = backbone_names(options)
    distributed = bool(getattr(options, "workers", None) or getattr(options, "scheduler", None))
    provided = dict(backbones or {})
    if not distributed:
        # Built now, so a bad weights file fails before any data is read, and run.json says what was used.
        provided.update({name: backbone_for(options, name) for name in names if name not in provided})
    if folder is None:
        folder = RunFolder.create(Path(options.output), run_settings(options, methods, data_root, categories,
                                                                     [provided.get(n) for n in names], dataset))
    log_handler = attach_run_log(folder.path)
    logger.info("run folder: %s", folder.path)
    try:
        return _run(options, methods, data_root, categories, folder, out, provided, distributed, dataset)
    finally:
        detach_run_log(log_handler)


def run_settings(options, methods, data_root: Path, categories: list[str], built: list,
                 dataset: Dataset) -> RunSettings:
    """What run.json records; the weights and device actually used when the backbones were built here, else
    what was asked for (each row says what its unit used)."""
    names = backbone_names(options)
    if all(b is not None for b in built):
        weights = ", ".join(dict.fromkeys(b.weights_used for b in built))
        device = ", ".join(dict.fromkeys(b.device for b in built))
    else:
        weights, device = str(options.weights), None
    return RunSettings(
        argv=list(options.argv), data=str(data_root), dataset=dataset.name, categories=categories,
        backbone=names[0], backbones=names if len(names) > 1 else [], weights=weights, resize=options.resize,
        crop=options.crop, seed=options.seed, pro_fpr_limit=options.pro_fpr_limit, seeds=method_seeds(options),
        bootstrap=options.bootstrap, device=device, methods=method_settings(methods, options), versions=versions())


ROW_KEY = ("category", "backbone", "method", "seed")


def _run(options, methods, data_root, categories, folder, out, provided, distributed, dataset) -> RunResult:
    seeds, names = method_seeds(options), backbone_names(options)
    naming = Naming(several_backbones=len(names) > 1, several_seeds=len(seeds) > 1)
    done = {row_key(row, options, names): row for row in folder.finished_rows()}
    if done:
        logger.info("resuming: %d finished rows kept", len(done))
    rows: list[dict] = list(done.values())
    units = [Unit(category, backbone, tuple((m, s) for m in methods for s in seeds
                                            if (category, backbone, m, s) not in done))
             for category in categories for backbone in names]
    units = [unit for unit in units if unit.todo]
    order = (categories, names, list(methods), seeds)
    steps = progress(total=len(categories) * len(names) * len(methods) * len(seeds), initial=len(done),
                     desc="benchmark", unit="fit")

    made: list[dict] = []  # this process's rows, which its time: line accounts for

    def emit(row: dict, files: dict[str, bytes]) -> None:
        for relative, data in files.items():
            write_atomic(folder.path / relative, lambda tmp, data=data: tmp.write_bytes(data))
        rows.append(row)
        made.append(row)
        folder.write(ordered(rows, order))
        steps.update(1)

    units_started, imported_before = time.perf_counter(), _paddle_import_seconds()
    try:
        if distributed:
            from bench.grid import run_units  # Dask only when asked for

            run_units(units, options, data_root, naming, emit)
        else:
            for unit in units:
                run_unit(unit, methods, options, data_root, naming, emit,
                         backbones=lambda name: provided.get(name) or backbone_for(options, name), dataset=dataset)
    except KeyboardInterrupt:
        folder.write(ordered(rows, order))
        logger.warning("interrupted; the finished rows are in %s (continue with --resume %s)",
                       folder.path, folder.path)
        raise
    units_s = time.perf_counter() - units_started
    paddle_import_s = 0.0 if imported_before else _paddle_import_seconds()  # imported once per process
    steps.close()
    statistics_s = sum(row.get("statistics_s", 0.0) or 0.0 for row in rows)
    if options.bootstrap:
        logger.info("bootstrap intervals took %.1f s in all (%d resamples per interval)", statistics_s,
                    options.bootstrap)
    report_started = time.perf_counter()
    rows = ordered(rows, order)
    print(folder.write(rows), file=out)
    imported = time.perf_counter()
    # Imported only now (matplotlib and the report's own modules), and timed apart: an import is start-up,
    # wherever it happens, so it is not counted as writing the report.
    from reports.html import write_report

    report_import_s = time.perf_counter() - imported
    write_report(folder.path)
    report_s = time.perf_counter() - report_started - report_import_s
    logger.info("results written to %s", folder.path)
    logger.info("%s", format_timing(process_seconds(), run_phases(made, units_s, report_s, paddle_import_s,
                                                                          distributed)))
    return RunResult(folder.path, pd.DataFrame(rows))


def run_phases(made: list[dict], units_s: float, report_s: float, paddle_import_s: float,
               distributed: bool) -> dict[str, float]:
    """Seconds of each measured phase of this process's rows: features (each unit's extraction or cache
    read once, without the Paddle import it may have done), fit, predict, statistics, scoring (the rest of
    the units' time here: test masks, metrics, rows written) and report (tables and report.html).

    With Dask the units ran elsewhere, in parallel: their phases are summed and no scoring is derived.
    """
    ok = [row for row in made if not row.get("error")]
    per_unit = {(row["category"], row["backbone"]): row.get("extract_s", 0.0) or 0.0 for row in ok}
    phases = {
        "features": max(0.0, sum(per_unit.values()) - paddle_import_s),
        "fit": sum(row.get("fit_s", 0.0) or 0.0 for row in ok),
        "predict": sum((row.get("predict_ms_per_image", 0.0) or 0.0) * (row.get("n_test", 0) or 0) / 1000.0
                       for row in ok),
        "statistics": sum(row.get("statistics_s", 0.0) or 0.0 for row in ok),
    }
    if not distributed:
        phases["scoring"] = max(0.0, units_s - paddle_import_s - sum(phases.values()))
    phases["report"] = report_s
    return phases


def _paddle_import_seconds() -> float:
    """How long the harness's import of Paddle took in this process (0.0 if not yet): start-up,
    even when it happens inside the first extraction."""
    lazy = sys.modules.get("bench.paddle_import")  # not imported: Paddle was not either, by the harness
    return lazy.import_seconds() if lazy is not None else 0.0


def row_key(row: dict, options, names: list[str]) -> tuple:
    """A finished row's (category, backbone, method, seed); rows of before these columns take the run's."""
    backbone = row.get("backbone")
    seed = row.get("seed")
    return (row["category"], backbone if isinstance(backbone, str) else names[0], row["method"],
            options.seed if seed is None or pd.isna(seed) else int(seed))


def ordered(rows: list[dict], order: tuple[list, ...]) -> list[dict]:
    """Rows in category, backbone, method, then seed order, whatever order they finished in."""
    ranks = [{value: i for i, value in enumerate(values)} for values in order]

    def key(row):
        return tuple(rank.get(row.get(field), len(rank)) for rank, field in zip(ranks, ROW_KEY))

    return sorted(rows, key=key)

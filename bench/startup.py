"""Whole-process wall time of a run against the sum of its measured phases, cold and warm.

``measure_start`` runs ``bench.py`` in fresh processes, three cache states per
backbone, and reads each run's own account of its phases (the ``time:`` line
the runner logs, ``bench.run_timing``):

- ``cold``: an empty cache root (no saved inference model, no features);
- ``warm model``: the saved inference model is on disk, the features are not
  (the backbone is loaded, not traced, and extracts);
- ``warm``: features cached too (no backbone runs at all).

The data set is built once outside the cache roots and passed with
``--data-path``, so ``cold`` times the backbone and features, not the
synthetic generator. Subprocesses, not calls: start-up (imports, plugins,
Paddle) is what is measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run_timing import parse_timing

STATES = ("cold", "warm model", "warm")
BENCH_PY = Path(__file__).resolve().parents[1] / "bench.py"


@dataclass(frozen=True)
class StartMeasurement:
    """One process: its cache ``state``, wall time from outside, and the phases it measured itself."""

    state: str
    backbone: str
    wall_s: float
    phases_s: float
    phases: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.wall_s / self.phases_s if self.phases_s > 0 else float("inf")


def measure_start(backbones=("resnet18",), category: str = "chip", methods: str = "patchcore,padim,spade",
                  rounds: int = 1, extra_args=("--weights", "random", "--bootstrap", "1000"),
                  data_path: Path | None = None, bench_py: Path = BENCH_PY) -> list[StartMeasurement]:
    """Per round and backbone: a cold run, then a warm one, then one with the features deleted (warm model).

    Backbones take turns within a round, so drift of a shared machine falls on
    every state alike. Each run gets its own output folder; all of it is
    deleted afterwards. Raises ``RuntimeError`` with the run's stderr if one fails.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="patchbench-startup-") as tmp:
        tmp = Path(tmp)
        if data_path is None:
            from datasets import build_synthetic

            data_path = build_synthetic(tmp / "data", seed=0, categories=[category])
        for round_ in range(rounds):
            for backbone in backbones:
                root = tmp / f"cache-{round_}-{backbone}"
                root.mkdir()
                args = ["--data-path", str(data_path), "--category", category, "--methods", methods,
                        "--backbone", backbone, "--quiet", *extra_args]
                for state in ("cold", "warm"):
                    results.append(_one_run(state, backbone, args, root, tmp, bench_py))
                shutil.rmtree(root / "features")
                results.append(_one_run("warm model", backbone, args, root, tmp, bench_py))
    return results


def _one_run(state: str, backbone: str, args: list[str], root: Path, tmp: Path, bench_py: Path) -> StartMeasurement:
    output = Path(tempfile.mkdtemp(prefix="runs-", dir=tmp))
    env = {**os.environ, "PATCHBENCH_CACHE": str(root)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(bench_py), *args, "--output", str(output)], env=env,
                          capture_output=True, text=True, cwd=bench_py.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"bench.py {' '.join(args)} ({state}) failed ({done.returncode}):\n{done.stderr}")
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    phases = phases_of(folder)
    return StartMeasurement(state, backbone, wall, sum(phases.values()), phases)


def phases_of(run_dir: Path) -> dict[str, float]:
    """The phases a run measured, from the ``time:`` line of its ``run.log``."""
    timing = parse_timing((run_dir / "run.log").read_text())
    if timing is None:
        raise RuntimeError(f"no 'time:' line in {run_dir / 'run.log'}")
    return timing.phases


def table(measurements: list[StartMeasurement]) -> str:
    """Markdown: per (backbone, state) the best and median wall time, phases and their ratio."""
    groups: dict[tuple[str, str], list[StartMeasurement]] = {}
    for m in measurements:
        groups.setdefault((m.backbone, m.state), []).append(m)
    lines = ["| backbone | state | runs | wall s (best / median) | phases s (median) | wall / phases (median) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (backbone, state), group in sorted(groups.items(), key=lambda kv: (kv[0][0], STATES.index(kv[0][1]))):
        walls = sorted(m.wall_s for m in group)
        lines.append(f"| {backbone} | {state} | {len(group)} | {walls[0]:.2f} / {_median(walls):.2f} | "
                     f"{_median([m.phases_s for m in group]):.2f} | {_median([m.ratio for m in group]):.2f} |")
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

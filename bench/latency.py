"""``python bench.py latency BASE [HEAD]``: interleaved A/B runs of the pytest-benchmark suite, judged with intervals.

Two timings minutes apart on a shared machine differ by more than most real
regressions (other jobs, memory bandwidth, clock frequency drift), so a fixed
threshold on one pair of numbers fires on noise. Here BASE and HEAD (git
revisions; HEAD defaults to the working tree as it is) are checked out into
temporary worktrees and their benchmark suites run in alternating fresh
processes, round after round; ``reports.latency`` turns the per-round medians
into a HEAD/BASE ratio with a 95 % interval and a verdict per benchmark.

pytest-benchmark stays the engine: each process is a plain
``pytest tests/benchmarks --benchmark-enable --benchmark-json=...`` run in its
tree, with the tree first on ``sys.path`` so it imports its own code. Both
sides use this interpreter and its installed packages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.errors import PatchbenchError
from methods.options import float_range, int_range
from reports.atomic import write_text_atomic
from reports.latency import compare_rounds, latency_markdown

DEFAULT_ROUNDS = 6
SUITE = "tests/benchmarks"
# One process of the suite; far above its ~30 s here, so only a hung process hits it.
PROCESS_TIMEOUT_S = 1800


def percentage(text: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.1: how much slower a benchmark may get before it fails."""
    value = text.strip()
    if value.endswith("%"):
        return float_range(0.0, 1000.0)(value[:-1].strip()) / 100.0
    return float_range(0.0, 10.0)(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py latency",
        description="Time the pytest-benchmark suite of two git revisions in interleaved fresh processes "
                    "and report, per benchmark, the HEAD/BASE time ratio with a 95 %% interval and whether "
                    "HEAD is slower, faster or not detectably different. Exit status 1 when a benchmark's "
                    "whole interval lies above --fail-above.")
    p.add_argument("base", metavar="BASE", help="git revision to compare against (e.g. main, HEAD~1, a tag)")
    p.add_argument("head", metavar="HEAD", nargs="?", default=None,
                   help="git revision to judge (default: the working tree as it is, uncommitted changes included)")
    p.add_argument("--rounds", type=int_range(3), default=DEFAULT_ROUNDS,
                   help=f"rounds of one BASE and one HEAD process each (default {DEFAULT_ROUNDS}; at least 3; "
                        "more give a narrower interval)")
    p.add_argument("--fail-above", type=percentage, default=0.10, metavar="PCT",
                   help="fail when a benchmark is slower by more than this for sure, its whole interval above it: "
                        "a percentage (10%%) or a fraction (0.1) (default 10%%)")
    p.add_argument("--output", type=Path, default=None, metavar="FILE",
                   help="also write the Markdown summary here (for a CI job to post)")
    p.add_argument("--json-dir", type=Path, default=None, metavar="DIR",
                   help="keep every process's pytest-benchmark JSON (all timings) here (default: discarded)")
    p.add_argument("--suite", default=SUITE, metavar="PATH",
                   help=f"the benchmark folder or file, relative to the repository (default {SUITE})")
    p.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                   help="only benchmarks matching this pytest -k expression")
    return p


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PatchbenchError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def repository(start: Path) -> Path:
    """The top folder of the git checkout holding ``start``."""
    result = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PatchbenchError(f"{start} is not inside a git checkout; run bench.py latency from a clone of "
                              "the project (it checks revisions out with git worktree)")
    return Path(result.stdout.strip())


def commit_of(repo: Path, revision: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PatchbenchError(f"unknown git revision {revision!r} in {repo}; give a branch, tag, commit or "
                              "HEAD~N that `git log` shows")
    return result.stdout.strip()


@contextlib.contextmanager
def worktree(repo: Path, commit: str, parent: Path):
    """A detached checkout of ``commit`` under ``parent``, removed afterwards."""
    path = parent / commit[:12]
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)


def run_suite(tree: Path, suite: str, keyword: str | None, json_path: Path, label: str) -> dict[str, float]:
    """One fresh process of the suite in ``tree``: benchmark fullname -> median of its timings (s)."""
    if not (tree / suite).exists():
        raise PatchbenchError(f"{label} has no {suite}; choose revisions that have the benchmark suite "
                              "(or pass --suite)")
    command = [sys.executable, "-m", "pytest", suite, "--benchmark-enable", "--benchmark-only",
               f"--benchmark-json={json_path}", "-q", "-p", "no:cacheprovider"]
    if keyword:
        command += ["-k", keyword]
    # the tree first on sys.path: each side imports its own code, not the installed checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    if result.returncode != 0 or not json_path.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PatchbenchError(f"the benchmark suite of {label} failed (exit status {result.returncode}); "
                              f"fix it or leave it out with -k. Its last lines:\n{tail}")
    report = json.loads(json_path.read_text(encoding="utf-8"))
    return {b["fullname"]: float(b["stats"]["median"]) for b in report.get("benchmarks", [])}


def interleave(trees: dict[str, Path], labels: dict[str, str], options, json_dir: Path,
               log=print) -> dict[str, dict[str, list[float]]]:
    """Run the rounds; ``{"BASE": {benchmark: [R] medians}, "HEAD": {...}}``, only complete benchmarks kept."""
    medians: dict[str, dict[str, list[float]]] = {"BASE": {}, "HEAD": {}}
    for r in range(options.rounds):
        order = ("BASE", "HEAD") if r % 2 == 0 else ("HEAD", "BASE")
        for side in order:
            started = time.perf_counter()
            timed = run_suite(trees[side], options.suite, options.keyword, json_dir / f"{side.lower()}-{r:03d}.json",
                              labels[side])
            for name, median in timed.items():
                medians[side].setdefault(name, []).append(median)
            log(f"round {r + 1}/{options.rounds}: {side} ({labels[side]}) {len(timed)} benchmarks in "
                f"{time.perf_counter() - started:.0f} s")
    return {side: {name: values for name, values in timed.items() if len(values) == options.rounds}
            for side, timed in medians.items()}


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    repo = repository(Path.cwd())
    base = commit_of(repo, options.base)
    head = commit_of(repo, options.head) if options.head else None
    labels = {"BASE": f"{options.base} ({base[:10]})",
              "HEAD": f"{options.head} ({head[:10]})" if head else "the working tree"}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="patchbench-latency-") as scratch, contextlib.ExitStack() as stack:
        scratch = Path(scratch)
        json_dir = options.json_dir or scratch / "json"
        json_dir.mkdir(parents=True, exist_ok=True)
        trees = {"BASE": stack.enter_context(worktree(repo, base, scratch / "base")),
                 "HEAD": stack.enter_context(worktree(repo, head, scratch / "head")) if head else repo}
        medians = interleave(trees, labels, options, json_dir, log=lambda line: print(line, file=sys.stderr))
    table = compare_rounds(medians["BASE"], medians["HEAD"], fail_above=options.fail_above)
    only = {"BASE": sorted(set(medians["BASE"]) - set(medians["HEAD"])),
            "HEAD": sorted(set(medians["HEAD"]) - set(medians["BASE"]))}
    markdown = latency_markdown(table, labels["BASE"], labels["HEAD"], options.fail_above, only,
                                (time.perf_counter() - started) / 60)
    print(markdown, end="")
    if options.output:
        write_text_atomic(options.output, markdown)
    return 1 if table["fails"].any() else 0

"""``bench.py latency``: interleaved A/B rounds in git worktrees, a ratio with an interval, exit 1 on a regression.

The command runs on a small git repository written here, whose benchmark sleeps
a fixed time times a factor that a commit changes: a slowdown of a known size.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import reports.latency
from bench.cli import main
from bench.errors import PatchbenchError
from bench.latency import percentage
from reports.latency import compare_rounds, ratio_interval

BENCHMARKS = textwrap.dedent('''
    import time

    import pytest

    from work import work


    def test_steady(benchmark):
        benchmark.pedantic(time.sleep, args=(0.004,), rounds=15)


    def test_work(benchmark):
        benchmark.pedantic(work, rounds=15)
''')


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def set_factor(repo: Path, factor: float) -> None:
    (repo / "work.py").write_text(f"import time\n\n\ndef work():\n    time.sleep(0.004 * {factor})\n")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """Commits ``base`` (work sleeps 4 ms) and ``slow`` (5.2 ms: 30 % slower); cwd inside the repo."""
    repo = tmp_path / "repo"
    (repo / "tests" / "benchmarks").mkdir(parents=True)
    (repo / "tests" / "benchmarks" / "test_fake.py").write_text(BENCHMARKS)
    set_factor(repo, 1.0)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    git(repo, "tag", "base")
    set_factor(repo, 1.3)
    git(repo, "commit", "-qam", "slow")
    git(repo, "tag", "slow")
    monkeypatch.chdir(repo)
    return repo


def rows(markdown: str) -> dict[str, str]:
    return {line.split("|")[1].strip().split("::")[-1]: line for line in markdown.splitlines()
            if line.startswith("| test_fake.py::")}


def test_injected_slowdown_is_reported_slower_and_fails(repo, tmp_path, capsys):
    summary = tmp_path / "latency.md"
    code = main(["latency", "base", "slow", "--rounds", "3", "--output", str(summary),
                 "--json-dir", str(tmp_path / "json")])
    markdown = capsys.readouterr().out
    assert code == 1
    assert summary.read_text() == markdown
    work, steady = rows(markdown)["test_work"], rows(markdown)["test_steady"]
    assert "slower **(fails)**" in work and "(fails)" not in steady
    ratio = float(work.split("|")[4].split()[0])
    low, high = (float(x) for x in work.split("|")[5].strip(" []").split(","))
    assert 1.15 < low <= ratio <= high < 1.45  # 30 % slower, less what the sleeps overshoot by
    assert len(list((tmp_path / "json").glob("*.json"))) == 6  # 3 rounds x 2 sides, every timing kept
    # the worktrees are gone
    assert "base" not in subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout[70:]


def test_same_revision_passes(repo, capsys):
    assert main(["latency", "slow", "slow", "--rounds", "3"]) == 0
    for line in rows(capsys.readouterr().out).values():
        ratio = float(line.split("|")[4].split()[0])
        assert 0.9 < ratio < 1.1 and "(fails)" not in line


def test_head_defaults_to_the_working_tree_uncommitted_changes_included(repo, capsys):
    set_factor(repo, 1.0)  # undo the slowdown without committing
    assert main(["latency", "base", "--rounds", "3"]) == 0
    markdown = capsys.readouterr().out
    assert "against base" in markdown and "the working tree" in markdown
    assert 0.9 < float(rows(markdown)["test_work"].split("|")[4].split()[0]) < 1.1


def test_bad_revision_and_no_repository_are_clear_errors(repo, tmp_path, monkeypatch, capsys):
    assert main(["latency", "no-such-branch"]) == 2
    assert "unknown git revision 'no-such-branch'" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(PatchbenchError, match="not inside a git checkout"):
        from bench.latency import repository
        repository(tmp_path.parent)


@pytest.mark.parametrize("text, value", [("10%", 0.10), ("2.5%", 0.025), ("0.1", 0.1)])
def test_fail_above_takes_a_percentage_or_a_fraction(text, value):
    assert percentage(text) == pytest.approx(value)


def test_ratio_interval_covers_the_true_ratio(monkeypatch):
    """6 rounds of noisy, drifting timings with a true ratio of 1.05: the 95 % interval covers it in
    90-99 % of trials, and the verdict on an unchanged commit is "no change" as often."""
    monkeypatch.setattr(reports.latency, "RESAMPLES", 2000)
    rng = np.random.default_rng(0)
    covered = quiet = 0
    trials = 200
    for trial in range(trials):
        drift = np.exp(np.cumsum(rng.normal(0, 0.05, 12)))  # the machine's speed wanders
        base = 0.1 * drift[0::2] * np.exp(rng.normal(0, 0.03, 6))
        head = 0.1 * 1.05 * drift[1::2] * np.exp(rng.normal(0, 0.03, 6))
        _, low, high = ratio_interval(base, head, seed=trial)
        covered += low <= 1.05 <= high
        same = compare_rounds({"b": list(base)}, {"b": list(0.1 / 0.105 * head)}, seed=trial)
        quiet += same["verdict"].iloc[0] == "no detectable change"
    assert 0.90 <= covered / trials <= 0.99
    assert 0.90 <= quiet / trials <= 0.99

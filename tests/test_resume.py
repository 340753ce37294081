"""A run killed part-way and resumed ends with the same results as one that was never interrupted."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
DETERMINISTIC = ["category", "method", "backbone", "weights", "image_auroc", "pixel_auroc", "pro",
                 "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap", "model_mb", "n_train", "n_test", "seed"]


def args(root, output):
    return ["--data-path", str(root), "--category", "weave,chip,granite,washer", "--methods", "patchcore,padim",
            "--resize", "72", "--crop", "64", "--weights", "random", "--no-cache", "--output", str(output)]


def start_and_stop_after_first_row(argv, sig) -> tuple[subprocess.Popen, Path]:
    """Start ``bench.py`` and send ``sig`` as soon as it has written its first result row."""
    output = Path(argv[argv.index("--output") + 1])
    proc = subprocess.Popen([sys.executable, str(REPO / "bench.py"), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        csvs = list(output.glob("*/results.csv"))
        if csvs and len(pd.read_csv(csvs[0])) >= 1:
            proc.send_signal(sig)
            proc.wait(timeout=120)
            return proc, csvs[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the run wrote no row in time")


def test_killed_run_resumes_to_the_uninterrupted_results(synthetic_root, tmp_path):
    assert main(args(synthetic_root, tmp_path / "whole")) == 0
    (whole_dir,) = (tmp_path / "whole").iterdir()
    whole = pd.read_csv(whole_dir / "results.csv")

    proc, run_dir = start_and_stop_after_first_row(args(synthetic_root, tmp_path / "cut"), signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    partial = pd.read_csv(run_dir / "results.csv")  # whole rows only: written atomically
    assert 1 <= len(partial) < len(whole)
    assert not list(run_dir.rglob("*.tmp"))

    assert main(["--resume", str(run_dir)]) == 0
    resumed = pd.read_csv(run_dir / "results.csv")
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], whole[DETERMINISTIC])
    assert (run_dir / "results.md").exists() and (run_dir / "run.log").exists()


def test_ctrl_c_writes_the_tables_of_what_finished(synthetic_root, tmp_path):
    proc, run_dir = start_and_stop_after_first_row(args(synthetic_root, tmp_path / "cut"), signal.SIGINT)
    out, err = proc.communicate()
    assert proc.returncode == 130
    assert f"--resume {run_dir}" in err and "Traceback" not in err
    rows = pd.read_csv(run_dir / "results.csv")
    markdown = (run_dir / "results.md").read_text()
    for category in rows["category"].unique():
        assert f"| {category}" in markdown

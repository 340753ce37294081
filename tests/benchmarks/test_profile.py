"""``python bench.py profile``: runs at --quick sizes and prints (and writes) every row of its table."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.profile import main
from bench.profile_inputs import patch_like_features
from methods.coreset import greedy_coreset, random_projection
from methods.coreset_reference import plain_greedy

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    "feature extraction (resnet18)",
    "coreset (greedy k-center), patch-like features",
    "coreset, unstructured (Gaussian) features",
    "coreset, plain reference loop, 1 BLAS thread",
    "nearest neighbours, k=1",
    "nearest neighbours, k=9",
    "PatchCore predict",
    "PaDiM predict",
    "SPADE predict",
]


def test_quick_profile_prints_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "profile.md"
    assert main(["--quick", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| what | size | seconds | per-unit | notes |" in printed
    for row in ROWS:
        line = next(line for line in printed.splitlines() if line.startswith(f"| {row} |"))
        seconds = float(line.split("|")[3])
        assert seconds >= 0
    assert "total extrapolated" in printed and "same selection" in printed
    assert out.read_text() == printed


def test_skip_and_points(capsys):
    assert main(["--quick", "--skip", "extract,search,methods", "--points", "3000", "--full-reference"]) == 0
    printed = capsys.readouterr().out
    assert "300 of 3,000 x 384 -> 128" in printed and "all steps" in printed
    assert "feature extraction" not in printed and "PaDiM" not in printed


def test_plain_reference_is_the_projects_selection():
    features = patch_like_features(2000, 384, seed=1)
    chosen = greedy_coreset(features, 200, seed=2)
    points = random_projection(features, 128, 2)
    np.testing.assert_array_equal(plain_greedy(points, int(chosen[0]), 200, dtype=np.float32), chosen)


def test_the_command_dispatches_to_profile():
    result = subprocess.run([sys.executable, "bench.py", "profile", "--help"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--full-reference" in result.stdout and "--quick" in result.stdout


def test_quick_scale_profile_has_every_comparison_and_the_category(tmp_path, capsys):
    # The cold/warm section runs six bench.py processes; tests/test_warm_start.py covers measure_start.
    out = tmp_path / "scale.md"
    assert main(["--profile", "scale", "--quick", "--skip", "start", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if line.startswith("| ")}
    searches = [f"PatchCore nearest bank entry ({backbone}, {data})" for backbone in ("resnet18", "wide_resnet50_2")
                for data in ("structured features", "chip, random weights", "weave, random weights")]
    for what in (*searches, "PaDiM fit", "SPADE predict (resnet18)", "coreset, texture-like features",
                 "coreset, object-like features", "patchcore", "padim", "spade"):
        assert what in rows, what
    assert all("recall 1.0000" in rows[what] for what in searches)
    assert "largest map difference 0.0e+00" in rows["SPADE predict (resnet18)"]
    assert all("same selection" in rows[f"coreset, {kind} features"] for kind in ("texture-like", "object-like"))
    assert "x 1536 |" in rows["PatchCore nearest bank entry (wide_resnet50_2, chip, random weights)"]
    assert "6 train + 5 test images, resnet18" in printed and "Cold and warm" not in printed


def test_scale_profile_refuses_an_unknown_section(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--profile", "scale", "--quick", "--skip", "extract"])
    assert exited.value.code == 2 and "unknown section(s) for --skip with --profile scale: extract" in capsys.readouterr().err

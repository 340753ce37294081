"""``--seeds``: one row per (category, method, seed), features extracted once per category, spread in tables."""

import numpy as np
import pandas as pd
import pytest

import bench.units
import metrics
from bench.backbone import Backbone
from bench.cli import main
from reports.predictions import load_predictions

SMALL = ["--resize", "72", "--crop", "64", "--weights", "random", "--no-cache", "--bootstrap", "200"]
ACCURACY = ["image_auroc", "pixel_auroc", "pro", "image_auroc_low", "image_auroc_high", "pro_low", "pro_high"]


def run_dir(output):
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


@pytest.fixture
def counted(monkeypatch):
    """Counts of backbone passes and of method fits in the runs a test makes."""
    counts = {"extract": 0, "fit": 0}
    extract, run_method = Backbone.extract, bench.units.run_method

    def counting_extract(self, *args, **kwargs):
        counts["extract"] += 1
        return extract(self, *args, **kwargs)

    def counting_run_method(*args, **kwargs):
        counts["fit"] += 1
        return run_method(*args, **kwargs)

    monkeypatch.setattr(Backbone, "extract", counting_extract)
    monkeypatch.setattr(bench.units, "run_method", counting_run_method)
    return counts


@pytest.fixture(scope="module")
def three_seeds(synthetic_root, tmp_path_factory):
    output = tmp_path_factory.mktemp("three-seeds")
    argv = ["--data-path", str(synthetic_root), "--category", "weave,chip", "--methods", "patchcore,padim",
            "--seeds", "0,1,2", "--output", str(output), *SMALL]
    assert main(argv) == 0
    folder = run_dir(output)
    return folder, pd.read_csv(folder / "results.csv")


def test_three_seeds_give_three_rows_each_and_extract_once_per_category(synthetic_root, tmp_path, counted):
    argv = ["--data-path", str(synthetic_root), "--category", "weave,chip", "--methods", "patchcore,padim",
            "--seeds", "0,1,2", "--output", str(tmp_path), *SMALL]
    assert main(argv) == 0
    assert counted["extract"] == 2 * 2  # (weave, chip) x (train, test), whatever the methods and seeds
    assert counted["fit"] == 2 * 2 * 3
    results = pd.read_csv(run_dir(tmp_path) / "results.csv")
    assert results[["category", "method", "seed"]].values.tolist() == [
        [c, m, s] for c in ("weave", "chip") for m in ("patchcore", "padim") for s in (0, 1, 2)]


def test_each_seed_has_its_predictions_and_changes_only_the_method(three_seeds):
    folder, results = three_seeds
    scores = {}
    for seed in (0, 1, 2):
        for method in ("patchcore", "padim"):
            saved = load_predictions(folder / "predictions" / "weave" / f"{method}.seed{seed}.npz")
            scores[method, seed] = saved["scores"]
    # PaDiM draws its channel subset from the seed: other channels, other scores.
    assert not np.allclose(scores["padim", 0], scores["padim", 1])
    # Same features for every seed: the extraction time is that of the one pass.
    assert results.groupby("category")["extract_s"].nunique().eq(1).all()
    # The bootstrap resamples are the run's (--seed 0), not the method seed's, so rows share them.
    saved = load_predictions(folder / "predictions" / "weave" / "padim.seed2.npz")
    row = results[(results["category"] == "weave") & (results["method"] == "padim") & (results["seed"] == 2)]
    expected = metrics.bootstrap_ci(metrics.image_auroc, saved["labels"], saved["scores"], n_resamples=200, seed=0)
    np.testing.assert_allclose(row[["image_auroc_low", "image_auroc_high"]].to_numpy()[0], expected)


def test_a_seed_row_does_not_depend_on_the_other_seeds(synthetic_root, three_seeds, tmp_path):
    _, results = three_seeds
    argv = ["--data-path", str(synthetic_root), "--category", "weave,chip", "--methods", "patchcore,padim",
            "--seeds", "1", "--output", str(tmp_path), *SMALL]
    assert main(argv) == 0
    alone = pd.read_csv(run_dir(tmp_path) / "results.csv")
    assert (alone["seed"] == 1).all()
    within = results[results["seed"] == 1].reset_index(drop=True)
    np.testing.assert_allclose(alone[ACCURACY].to_numpy(), within[ACCURACY].to_numpy(), rtol=1e-6)
    assert "- method seeds: 1" in (run_dir(tmp_path) / "results.md").read_text()


def test_tables_show_mean_and_std_over_seeds(three_seeds):
    folder, results = three_seeds
    markdown = (folder / "results.md").read_text()
    assert "- method seeds: 0, 1, 2" in markdown and "- seed: 0 (data, weights, bootstrap)" in markdown
    table = markdown.split("### Image AUROC (higher is better; mean ± std over 3 seeds;")[1].split("###")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    for category in ("weave", "chip"):
        values = results[(results["category"] == category) & (results["method"] == "padim")]["image_auroc"]
        low = results[(results["category"] == category) & (results["method"] == "padim")]["image_auroc_low"]
        cell = rows[category].split("|")[3].strip()
        assert cell.startswith(f"{values.mean():.3f} ± {values.std(ddof=1):.3f} [{low.mean():.3f}, ")
    per_seed = results[results["method"] == "padim"].groupby("seed")["image_auroc"].mean()
    mean_cell = rows["mean"].split("|")[3].strip()
    assert mean_cell == f"{per_seed.mean():.3f} ± {per_seed.std(ddof=1):.3f}"
    report = (folder / "report.html").read_text()
    assert "mean ± std over 3 seeds" in report and " ± " in report


def test_resume_runs_only_the_missing_seed_rows(synthetic_root, tmp_path, counted):
    argv = ["--data-path", str(synthetic_root), "--category", "granite", "--methods", "patchcore",
            "--seeds", "0,1,2", "--output", str(tmp_path), *SMALL]
    assert main(argv) == 0
    folder = run_dir(tmp_path)
    whole = pd.read_csv(folder / "results.csv")
    whole[whole["seed"] != 1].to_csv(folder / "results.csv", index=False)  # as if seed 1 had not finished
    counted["fit"] = 0
    assert main(["--resume", str(folder)]) == 0
    assert counted["fit"] == 1
    resumed = pd.read_csv(folder / "results.csv")
    assert resumed["seed"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(resumed[ACCURACY].to_numpy(), whole[ACCURACY].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("value, message", [("1,x", "got 'x'"), ("1,1", "each seed once"),
                                            (",", "comma-separated seeds"), ("4294967296", "<= 4294967295")])
def test_bad_seeds_are_refused_at_parse_time(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds: " in err and message in err

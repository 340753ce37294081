"""``bench.py compare`` with seeds and bootstrap intervals, on small run folders written by hand.

Only results.csv and run.json: compare reads nothing else. Run A is a single-seed
run without intervals, run B has three seeds and an Image AUROC interval whose
seed-averaged bounds put A's value just inside or just outside it.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main as cli_main
from reports.compare import beyond_interval
from reports.runfolder import RunSettings

PAIRS = (("alpha", "m1"), ("alpha", "m2"), ("beta", "m1"), ("beta", "m2"))
B_SEEDS = (0, 1, 2)
A_AUROC = {("alpha", "m1"): 0.800, ("alpha", "m2"): 0.800, ("beta", "m1"): 0.950, ("beta", "m2"): 0.950}
# B's Image AUROC per seed; the last seed is never the mean, so "the last row" would read wrong.
B_AUROC = {("alpha", "m1"): [0.84, 0.88, 0.83], ("alpha", "m2"): [0.86, 0.85, 0.81],
           ("beta", "m1"): [0.93, 0.92, 0.94], ("beta", "m2"): [0.91, 0.95, 0.90]}
B_LOW = {("alpha", "m1"): [0.790, 0.799, 0.808],  # mean 0.799: A's 0.800 just inside
         ("alpha", "m2"): [0.795, 0.801, 0.807],  # mean 0.801: A's 0.800 just outside
         ("beta", "m1"): [0.90, 0.90, 0.90], ("beta", "m2"): [0.89, 0.89, 0.89]}
B_HIGH = {("alpha", "m1"): [0.95, 0.95, 0.95], ("alpha", "m2"): [0.95, 0.95, 0.95],
          ("beta", "m1"): [0.940, 0.949, 0.958],  # mean 0.949: A's 0.950 just outside
          ("beta", "m2"): [0.942, 0.951, 0.960]}  # mean 0.951: A's 0.950 just inside
BEYOND = {("alpha", "m1"): False, ("alpha", "m2"): True, ("beta", "m1"): True, ("beta", "m2"): False}
B_FIT_S = {("alpha", "m1"): [1.0, 1.5, 2.5], ("alpha", "m2"): [3.0, 3.0, 3.6],
           ("beta", "m1"): [0.5, 0.7, 0.6], ("beta", "m2"): [2.0, 4.0, 9.0]}


def write_run(folder: Path, rows: list[dict], settings: RunSettings | None = None) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    if settings is not None:
        (folder / "run.json").write_text(settings.to_json(), encoding="utf-8")
    return folder


def run_a(folder: Path) -> Path:
    """One seed (a ``seed`` column of 0s), no intervals; pixel AUROC as in B, so no change there."""
    rows = [{"category": c, "method": m, "seed": 0, "image_auroc": A_AUROC[c, m], "pixel_auroc": 0.9,
             "fit_s": 2.0} for c, m in PAIRS]
    return write_run(folder, rows, RunSettings(seed=0, seeds=[0], backbone="resnet18"))


def run_b(folder: Path) -> Path:
    """Three seeds; an interval on Image AUROC only."""
    rows = [{"category": c, "method": m, "seed": seed, "image_auroc": B_AUROC[c, m][i],
             "image_auroc_low": B_LOW[c, m][i], "image_auroc_high": B_HIGH[c, m][i], "pixel_auroc": 0.9,
             "fit_s": B_FIT_S[c, m][i]} for c, m in PAIRS for i, seed in enumerate(B_SEEDS)]
    return write_run(folder, rows, RunSettings(seed=0, seeds=list(B_SEEDS), bootstrap=1000, backbone="resnet18"))


def compare(a: Path, b: Path) -> tuple[str, pd.DataFrame]:
    assert cli_main(["compare", str(a), str(b)]) == 0
    stem = b / f"compare-{a.name}"
    return stem.with_suffix(".md").read_text(encoding="utf-8"), pd.read_csv(stem.with_suffix(".csv"))


def table_row(markdown: str, title: str, category: str, method: str) -> list[str]:
    """The cells of (category, method)'s row in the per-category table under the heading starting ``title``."""
    section = markdown.split(f"### {title}", 1)[1].split("###", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[:2] == [category, method]:
            return cells
    raise AssertionError(f"no row {category} {method} under {title}")


@pytest.fixture
def seeded(tmp_path):
    a, b = run_a(tmp_path / "a"), run_b(tmp_path / "b")
    markdown, diff = compare(a, b)
    return markdown, diff.set_index(["category", "method"])


def test_each_side_is_the_mean_and_std_over_its_seeds(seeded):
    _, diff = seeded
    for pair in PAIRS:
        row = diff.loc[pair]
        assert row["image_auroc_a"] == pytest.approx(A_AUROC[pair])
        assert row["image_auroc_b"] == pytest.approx(np.mean(B_AUROC[pair]))
        assert row["image_auroc_std_b"] == pytest.approx(np.std(B_AUROC[pair], ddof=1))
        assert row["image_auroc_diff"] == pytest.approx(np.mean(B_AUROC[pair]) - A_AUROC[pair])
        assert row["image_auroc_low_b"] == pytest.approx(np.mean(B_LOW[pair]))
        assert row["image_auroc_high_b"] == pytest.approx(np.mean(B_HIGH[pair]))
        assert row["fit_s_b"] == pytest.approx(np.mean(B_FIT_S[pair]))
        assert row["fit_s_std_b"] == pytest.approx(np.std(B_FIT_S[pair], ddof=1))
        assert row["fit_s_rel_pct"] == pytest.approx(100 * (np.mean(B_FIT_S[pair]) - 2.0) / 2.0)
        assert np.isnan(row["image_auroc_std_a"]) and np.isnan(row["fit_s_std_a"])  # one seed: no spread
        assert (row["seeds_a"], row["seeds_b"]) == (1, 3)


def test_csv_columns_for_seeds_and_intervals(seeded):
    _, diff = seeded
    for column in ("image_auroc_std_a", "image_auroc_std_b", "image_auroc_beyond_interval", "image_auroc_low_a",
                   "image_auroc_high_b", "pixel_auroc_std_b", "fit_s_std_b", "seeds_a", "seeds_b"):
        assert column in diff, column
    # no run has a pixel AUROC interval, and fit time never has one
    assert "pixel_auroc_beyond_interval" not in diff and "fit_s_beyond_interval" not in diff
    assert diff["image_auroc_low_a"].isna().all()


def test_beyond_interval_verdicts_just_inside_and_just_outside(seeded):
    markdown, diff = seeded
    for pair, beyond in BEYOND.items():
        assert diff.loc[pair, "image_auroc_beyond_interval"] == beyond, pair
        assert table_row(markdown, "Image AUROC", *pair)[-1] == ("yes" if beyond else "no"), pair
    assert "beyond the 95 % interval" not in markdown.split("### Pixel AUROC", 1)[1]


def test_cells_show_mean_and_std_for_the_side_with_seeds(seeded):
    markdown, _ = seeded
    mean, std = np.mean(B_AUROC["alpha", "m1"]), np.std(B_AUROC["alpha", "m1"], ddof=1)
    cells = table_row(markdown, "Image AUROC", "alpha", "m1")
    assert cells[2] == "0.800"  # A: one seed, no interval, a plain number
    assert cells[3] == f"{mean:.3f} ± {std:.3f} [0.799, 0.950]"
    fit = table_row(markdown, "Fit (s)", "beta", "m2")
    fit_mean, fit_std = np.mean(B_FIT_S["beta", "m2"]), np.std(B_FIT_S["beta", "m2"], ddof=1)
    assert fit[2] == "2.00" and fit[3] == f"{fit_mean:.2f} ± {fit_std:.2f}"
    assert "A: 1 seed, B: mean ± std over 3 seeds" in markdown


def test_summary_near_the_top_lists_the_changes_beyond_the_interval(seeded):
    markdown, _ = seeded
    summary = markdown.split("## Changes beyond the 95 % interval", 1)[1].split("##", 1)[0]
    assert markdown.index("## Changes beyond") < markdown.index("## Settings that differ")
    line = next(line for line in summary.splitlines() if line.startswith("- Image AUROC"))
    assert line.startswith("- Image AUROC: 2 of 4: ")
    assert "alpha m2" in line and "beta m1" in line and "alpha m1" not in line and "beta m2" not in line
    assert "Pixel AUROC" not in summary


def test_settings_that_differ_show_the_seeds_and_bootstrap(seeded):
    markdown, _ = seeded
    settings = markdown.split("## Settings that differ", 1)[1].split("##", 1)[0]
    assert "| method seeds |" in settings and "0, 1, 2" in settings
    assert "| bootstrap    |" in settings and "1000 resamples" in settings
    assert "backbone" not in settings  # the same on both sides


def test_only_a_with_an_interval_judges_b_against_it(tmp_path):
    # B is now the single-seed run: its value is tested against A's (seed-averaged) interval.
    _, diff = compare(run_b(tmp_path / "new"), run_a(tmp_path / "old"))
    diff = diff.set_index(["category", "method"])
    for pair, beyond in BEYOND.items():
        assert diff.loc[pair, "image_auroc_beyond_interval"] == beyond, pair
    assert diff["image_auroc_low_b"].isna().all()


def test_beyond_interval_rule():
    assert beyond_interval(0.80, 0.9, np.nan, np.nan, 0.79, 0.95) is False
    assert beyond_interval(0.79, 0.9, np.nan, np.nan, 0.79, 0.95) is False  # the bounds are inside
    assert beyond_interval(0.78, 0.9, np.nan, np.nan, 0.79, 0.95) is True
    assert beyond_interval(0.96, 0.9, np.nan, np.nan, 0.79, 0.95) is True
    # B's interval first; A's only when B has none
    assert beyond_interval(0.80, 0.9, 0.85, 0.95, 0.79, 0.95) is False
    assert beyond_interval(0.80, 0.9, 0.85, 0.95, np.nan, np.nan) is False
    assert beyond_interval(0.80, 0.96, 0.85, 0.95, np.nan, np.nan) is True
    assert beyond_interval(0.80, 0.96, np.nan, np.nan, np.nan, np.nan) is None
    assert beyond_interval(np.nan, 0.96, 0.85, 0.95, 0.79, 0.95) is None


def old_run(folder: Path, auroc: float, fit_s: float) -> Path:
    """As written before seeds: no seed column, no interval, no run.json."""
    return write_run(folder, [{"category": "alpha", "method": "m1", "image_auroc": auroc, "fit_s": fit_s},
                              {"category": "beta", "method": "m1", "image_auroc": auroc - 0.1, "fit_s": fit_s}])


def test_old_style_runs_compare_as_before(tmp_path):
    markdown, diff = compare(old_run(tmp_path / "a", 0.7, 2.0), old_run(tmp_path / "b", 0.75, 1.0))
    assert list(diff.columns) == ["category", "method", "in", "image_auroc_a", "image_auroc_b", "image_auroc_diff",
                                  "fit_s_a", "fit_s_b", "fit_s_diff", "fit_s_rel_pct"]
    assert diff["image_auroc_diff"].tolist() == pytest.approx([0.05, 0.05])
    assert "±" not in markdown and "beyond" not in markdown and "seed" not in markdown.split("## Means", 1)[1]
    assert "| alpha      | m1       | 0.700 | 0.750 | +0.050  |" in markdown


def test_old_style_run_against_a_seeded_one(tmp_path):
    old = write_run(tmp_path / "old", [{"category": c, "method": m, "image_auroc": A_AUROC[c, m], "fit_s": 2.0}
                                       for c, m in PAIRS])
    _, diff = compare(old, run_b(tmp_path / "b"))
    diff = diff.set_index(["category", "method"])
    assert diff.loc[("alpha", "m1"), "image_auroc_b"] == pytest.approx(np.mean(B_AUROC["alpha", "m1"]))
    assert (diff["seeds_a"] == 1).all() and (diff["seeds_b"] == 3).all()
    assert diff["image_auroc_beyond_interval"].tolist() == [BEYOND[pair] for pair in PAIRS]


def test_a_failed_seed_leaves_no_mean_and_is_named(tmp_path):
    b = run_b(tmp_path / "b")
    results = pd.read_csv(b / "results.csv")
    failed = (results["category"] == "beta") & (results["method"] == "m2") & (results["seed"] == 1)
    results.loc[failed, ["image_auroc", "fit_s"]] = np.nan
    results["error"] = np.where(failed, "boom", None)
    results.to_csv(b / "results.csv", index=False)
    markdown, diff = compare(run_a(tmp_path / "a"), b)
    row = diff.set_index(["category", "method"]).loc[("beta", "m2")]
    # as in results.md: a mean over the seeds that ran would flatter the method
    assert np.isnan(row["image_auroc_b"]) and pd.isna(row["image_auroc_beyond_interval"])
    failures = markdown.split("## Failed rows", 1)[1].split("##", 1)[0]
    assert "seed" in failures and "boom" in failures
    assert table_row(markdown, "Image AUROC", "beta", "m2")[3:] == ["–", "–", "–"]


def test_runs_of_different_data_sets_are_flagged_first(tmp_path):
    a = run_a(tmp_path / "a")
    b = write_run(tmp_path / "b", [{"category": "carpet", "method": "padim", "seed": 0, "image_auroc": 0.5}],
                  RunSettings(seed=0, seeds=[0], backbone="resnet18", dataset="visa", data="/data/VisA"))
    markdown, _ = compare(a, b)
    head = markdown.split("## ")[0]
    assert "**The runs read different data sets: A mvtec_ad" in head and "B visa (/data/VisA)" in head
    assert "different data sets" not in compare(a, run_a(tmp_path / "a2"))[0]

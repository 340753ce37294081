"""``python bench.py`` end to end on the synthetic set: tables written, plugins found, errors clear."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import metrics
from bench.cli import main
from reports.predictions import load_predictions

REPO = Path(__file__).resolve().parents[1]
# Small images keep the suite quick; the pipeline is the same as at 224.
SMALL = ["--resize", "72", "--crop", "64", "--weights", "random"]
COLUMNS = ["category", "method", "backbone", "weights", "image_auroc", "pixel_auroc", "pro",
           "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap", "extract_s", "fit_s",
           "predict_ms_per_image", "images_per_s", "fit_peak_mb", "predict_peak_mb", "model_mb"]


def run_dir(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


def test_run_writes_csv_and_markdown_tables(synthetic_root, tmp_path, capsys):
    code = main(["--data-path", str(synthetic_root), "--category", "weave,washer",
                 "--methods", "patchcore", "--output", str(tmp_path), "--save-models", *SMALL])
    assert code == 0
    folder = run_dir(tmp_path)
    for category in ("weave", "washer"):
        assert (folder / "models" / category / "patchcore" / "header.json").is_file()
        assert (folder / "predictions" / category / "patchcore.npz").is_file()
    assert "results written to" in (folder / "run.log").read_text()
    results = pd.read_csv(folder / "results.csv")
    assert set(COLUMNS) <= set(results.columns), set(COLUMNS) - set(results.columns)
    assert results[["category", "method"]].values.tolist() == [["weave", "patchcore"], ["washer", "patchcore"]]
    assert (results["weights"] == "random").all()
    for column in ("image_auroc", "pixel_auroc", "pro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap"):
        assert results[column].between(0, 1).all(), column
    assert (results[["extract_s", "fit_s", "predict_ms_per_image", "model_mb"]] > 0).all().all()

    markdown = (folder / "results.md").read_text()
    assert "weights: random" in markdown
    assert ("### AU-PRO (MVTec protocol, FPR up to 0.3) (higher is better; "
            "[95 % bootstrap interval over test images])") in markdown
    assert "- bootstrap: 1000 resamples of the test images, 95 % percentile intervals" in markdown
    for category, row in zip(("weave", "washer"), results.itertuples()):
        saved = load_predictions(folder / "predictions" / category / "patchcore.npz")
        expected = metrics.bootstrap_ci(metrics.image_auroc, saved["labels"], saved["scores"], seed=0)
        np.testing.assert_allclose([row.image_auroc_low, row.image_auroc_high], expected)
        assert f"[{row.pro_low:.3f}, {row.pro_high:.3f}]" in markdown
        assert 0 <= row.pixel_auroc_low <= row.pixel_auroc_high <= 1 and row.statistics_s > 0
    table = markdown.split("### Image AUROC")[1].split("###")[0]
    mean_row = [line for line in table.splitlines() if line.startswith("| mean")]
    assert mean_row and f"{results['image_auroc'].mean():.3f}" in mean_row[0]
    assert "### Image AUROC" in capsys.readouterr().out


def test_same_seed_same_numbers(synthetic_root, tmp_path):
    args = ["--data-path", str(synthetic_root), "--category", "granite", "--methods", "patchcore", *SMALL]
    for name in ("a", "b"):
        assert main([*args, "--output", str(tmp_path / name)]) == 0
    a, b = (pd.read_csv(run_dir(tmp_path / n) / "results.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(a[["image_auroc", "pixel_auroc"]], b[["image_auroc", "pixel_auroc"]])


def readme_plugin() -> str:
    """The plugin example of the README, exactly as a user would copy it."""
    readme = (REPO / "README.md").read_text()
    (code,) = re.findall(r"```python\n(# my_plugin\.py\n.*?)```", readme, flags=re.S)
    return code


def test_readme_plugin_runs_with_plugin_flag(synthetic_root, tmp_path, capsys):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(readme_plugin())
    assert main(["--plugin", str(plugin), "--list-methods"]) == 0
    assert re.search(r"^meanpatch\s", capsys.readouterr().out, flags=re.M)

    out = tmp_path / "runs"
    code = main(["--plugin", str(plugin), "--data-path", str(synthetic_root), "--category", "weave",
                 "--methods", "patchcore,meanpatch", "--output", str(out), *SMALL])
    assert code == 0
    results = pd.read_csv(run_dir(out) / "results.csv")
    assert results["method"].tolist() == ["patchcore", "meanpatch"]
    assert results["image_auroc"].notna().all()
    assert "meanpatch" in (run_dir(out) / "results.md").read_text()


def test_plugin_by_module_name_and_entry_point(tmp_path, monkeypatch, capsys):
    (tmp_path / "shiny_plugin.py").write_text(readme_plugin().replace('"meanpatch"', '"shiny"'))
    dist = tmp_path / "shiny_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shiny-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[patchbench]\nshiny = shiny_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--list-methods"]) == 0
    assert re.search(r"^shiny\s", capsys.readouterr().out, flags=re.M)
    monkeypatch.delitem(sys.modules, "shiny_plugin", raising=False)


def expect_error(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    for fragment in fragments:
        assert str(fragment) in err, err
    return err


def test_unknown_method_and_category(synthetic_root, tmp_path, capsys):
    expect_error(capsys, ["--methods", "patchcore,nosuch", "--output", str(tmp_path)], "nosuch", "patchcore")
    expect_error(capsys, ["--data-path", str(synthetic_root), "--category", "bottle",
                          "--output", str(tmp_path), *SMALL], "bottle", "weave")


def test_folder_not_in_layout(tmp_path, capsys):
    (tmp_path / "data" / "thing" / "images").mkdir(parents=True)
    expect_error(capsys, ["--data-path", str(tmp_path / "data"), "--output", str(tmp_path / "o"), *SMALL],
                 tmp_path / "data")


def test_missing_mask_is_named(category_copy, tmp_path, capsys):
    root = category_copy("washer")
    mask = sorted((root / "washer" / "ground_truth").rglob("*_mask.png"))[0]
    mask.unlink()
    expect_error(capsys, ["--data-path", str(root), "--output", str(tmp_path / "o"), *SMALL], mask.name)


def test_unreadable_image_is_named(category_copy, tmp_path, capsys):
    root = category_copy("weave")
    image = sorted((root / "weave" / "train" / "good").glob("*.png"))[3]
    image.write_bytes(b"not a png at all")
    expect_error(capsys, ["--data-path", str(root), "--output", str(tmp_path / "o"), *SMALL], image)


def test_bench_py_help_and_exit_status_from_a_shell(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for flag in ("--data-path", "--category", "--methods", "--backbone", "--coreset-ratio", "--seed", "--output"):
        assert flag in done.stdout
    done = subprocess.run([sys.executable, str(REPO / "bench.py"), "--methods", "nosuch"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "nosuch" in done.stderr and "Traceback" not in done.stderr


def test_weights_fallback_warning_is_in_run_log(synthetic_root, tmp_path, monkeypatch, capsys):
    import bench.backbone

    def offline(name):
        raise OSError("cannot reach the weights host: no network")

    monkeypatch.setattr(bench.backbone, "_imagenet_file", offline)
    argv = ["--data-path", str(synthetic_root), "--category", "weave", "--methods", "patchcore",
            "--output", str(tmp_path), "--no-cache", "--quiet", "--resize", "72", "--crop", "64"]
    assert main(argv) == 0
    warning = "ImageNet weights for resnet18 could not be had (cannot reach the weights host: no network)"
    assert warning in capsys.readouterr().err
    assert warning in (run_dir(tmp_path) / "run.log").read_text()
    assert "weights: random" in (run_dir(tmp_path) / "results.md").read_text()


def test_method_settings_are_recorded_and_compare_lists_each_difference(synthetic_root, tmp_path, capsys):
    args = ["--data-path", str(synthetic_root), "--category", "granite", "--methods", "patchcore,spade",
            "--no-cache", "--quiet", *SMALL]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    assert main([*args, "--output", str(tmp_path / "b"), "--coreset-ratio", "0.25", "--spade-top-k", "5"]) == 0
    a, b = run_dir(tmp_path / "a"), run_dir(tmp_path / "b")
    header = (a / "results.md").read_text().split("###")[0]
    assert "- patchcore settings: coreset_ratio=0.1, num_neighbors=9, projection_dim=128, seed=0" in header
    assert "- spade settings: top_k=50" in header
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "Same settings" not in out
    changed = [line for line in out.splitlines() if "settings" in line and "|" in line]
    assert len(changed) == 2, out
    assert any("coreset_ratio=0.1" in line and "coreset_ratio=0.25" in line for line in changed)
    assert any("top_k=50" in line and "top_k=5," in line for line in changed)

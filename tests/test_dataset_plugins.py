"""Datasets as plugins: the README's outside dataset, ``--dataset`` and ``--list-datasets``, detection, run.json."""

import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.dataset_choice import choose_dataset, detected
from bench.errors import PatchbenchError
from datasets.base import Dataset
from datasets.mvtec_ad import MVTecAD

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--resize", "72", "--crop", "64", "--weights", "random", "--bootstrap", "0"]


def readme_dataset_plugin() -> str:
    """The dataset plugin example of the README, exactly as a user would copy it."""
    (code,) = re.findall(r"```python\n(# my_dataset\.py\n.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return code


def line_export(synthetic_root: Path, root: Path) -> Path:
    """The synthetic ``chip`` as a line's export: every good image in ok/, the defective in nok/ with masks."""
    line = root / "line7"
    for folder in ("ok", "nok", "nok_masks"):
        (line / folder).mkdir(parents=True)
    chip = synthetic_root / "chip"
    for path in sorted((chip / "train" / "good").iterdir()) + sorted((chip / "test" / "good").iterdir()):
        shutil.copy(path, line / "ok" / f"{len(list((line / 'ok').iterdir())):03d}.png")
    for defect in sorted(p.name for p in (chip / "test").iterdir() if p.name != "good"):
        for path in sorted((chip / "test" / defect).iterdir()):
            name = f"{defect}_{path.name}"
            shutil.copy(path, line / "nok" / name)
            shutil.copy(chip / "ground_truth" / defect / f"{path.stem}_mask.png", line / "nok_masks" / name)
    return root


def run_dir(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_dataset.py"
    path.write_text(readme_dataset_plugin())
    yield path
    sys.modules.pop("patchbench_plugin_my_dataset", None)


def test_readme_dataset_plugin_is_listed_detected_and_run(synthetic_root, tmp_path, plugin_file, capsys):
    assert main(["--plugin", str(plugin_file), "--list-datasets"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^line_export\s", listed, flags=re.M) and re.search(r"^mvtec_ad\s", listed, flags=re.M)

    data = line_export(synthetic_root, tmp_path / "data")
    out = tmp_path / "runs"
    assert main(["--plugin", str(plugin_file), "--data-path", str(data), "--methods", "padim",
                 "--output", str(out), *SMALL]) == 0  # no --dataset: detected
    folder = run_dir(out)
    results = pd.read_csv(folder / "results.csv")
    good = len(list((data / "line7" / "ok").iterdir()))
    test_good = good - good * 8 // 10
    assert results[["category", "method"]].values.tolist() == [["line7", "padim"]]
    assert results["n_train"].item() == good * 8 // 10
    assert results["n_test"].item() == test_good + len(list((data / "line7" / "nok").iterdir()))
    assert 0 <= results["pixel_auroc"].item() <= 1
    assert json.loads((folder / "run.json").read_text())["dataset"] == "line_export"
    assert "- dataset: line_export" in (folder / "results.md").read_text()


def test_an_outside_dataset_error_names_the_file(synthetic_root, tmp_path, plugin_file, capsys):
    data = line_export(synthetic_root, tmp_path / "data")
    mask = sorted((data / "line7" / "nok_masks").iterdir())[0]
    mask.unlink()
    code = main(["--plugin", str(plugin_file), "--dataset", "line_export", "--data-path", str(data),
                 "--methods", "padim", "--output", str(tmp_path / "runs"), *SMALL])
    assert code == 1
    results = pd.read_csv(run_dir(tmp_path / "runs") / "results.csv")
    assert str(mask) in results["error"].item()


def test_unknown_dataset_and_dataset_without_data_path(tmp_path, capsys):
    assert main(["--dataset", "nosuch", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nosuch'" in err and "mvtec_ad" in err and "Traceback" not in err
    with pytest.raises(PatchbenchError, match="--dataset visa needs --data-path"):
        choose_dataset({"mvtec_ad": MVTecAD, "visa": Dataset}, "visa", None)


class Shaped(Dataset):
    """Matches any folder."""

    name = "shaped"

    @classmethod
    def detect(cls, root):
        return True


class Refined(Shaped):
    name = "refined"
    refines = "shaped"


def test_detection_one_match_several_refined_and_none(synthetic_root, tmp_path):
    assert detected({"mvtec_ad": MVTecAD}, synthetic_root) == ["mvtec_ad"]
    assert choose_dataset({"mvtec_ad": MVTecAD}, None, tmp_path) is MVTecAD  # nothing matches: the default
    assert detected({"mvtec_ad": MVTecAD, "shaped": Shaped, "refined": Refined}, tmp_path) == ["refined"]
    with pytest.raises(PatchbenchError, match=r"several dataset layouts \(mvtec_ad, shaped\); choose one"):
        choose_dataset({"mvtec_ad": MVTecAD, "shaped": Shaped}, None, synthetic_root)
    assert choose_dataset({"mvtec_ad": MVTecAD, "shaped": Shaped}, "shaped", synthetic_root) is Shaped


def test_run_json_keeps_the_plugin_path_absolute(synthetic_root, tmp_path, plugin_file, monkeypatch):
    data = line_export(synthetic_root, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert main(["--plugin", "my_dataset.py", "--data-path", str(data), "--methods", "padim",
                 "--output", "runs", *SMALL]) == 0
    argv = json.loads((run_dir(tmp_path / "runs") / "run.json").read_text())["argv"]
    assert argv[argv.index("--plugin") + 1] == str(plugin_file)


def test_a_run_json_without_dataset_is_an_mvtec_ad_run(tmp_path):
    from reports.runfolder import settings_from_json

    assert settings_from_json({"format": "patchbench-run", "format_version": 2}, tmp_path).dataset == "mvtec_ad"


def test_one_category_folder_is_pointed_at_its_parent(synthetic_root, tmp_path, capsys):
    code = main(["--data-path", str(synthetic_root / "chip"), "--output", str(tmp_path), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and f"--data-path {synthetic_root} --category chip" in err and "mvtec_ad" in err


def test_a_folder_no_layout_matches_is_read_as_mvtec_ad_and_says_so(tmp_path, capsys, caplog):
    (tmp_path / "data" / "thing").mkdir(parents=True)
    assert main(["--data-path", str(tmp_path / "data"), "--output", str(tmp_path / "o"), *SMALL]) == 2
    assert "the default: no registered layout matches" in caplog.text
    err = capsys.readouterr().err
    assert "no category folders under" in err and "expected the MVTec AD and of the synthetic set" not in err


class Broken(Dataset):
    """Its detect raises."""

    name = "broken"

    @classmethod
    def detect(cls, root):
        raise KeyError("oops")


def test_a_plugin_whose_detect_raises_is_skipped_with_a_warning(synthetic_root, caplog):
    assert detected({"mvtec_ad": MVTecAD, "broken": Broken}, synthetic_root) == ["mvtec_ad"]
    assert "dataset 'broken'" in caplog.text and "KeyError" in caplog.text


def test_an_mvtec_category_missing_from_the_synthetic_set_reads_well(synthetic_root, tmp_path, capsys):
    main(["--data-path", str(synthetic_root), "--category", "bottle", "--output", str(tmp_path), *SMALL])
    err = capsys.readouterr().err
    assert "unknown category 'bottle'" in err and "(a category of MVTec AD that is not downloaded" in err

"""run.json: written and read by reports.runfolder only, structured, versioned; old folders still read."""

import json

import pytest

from reports.errors import ReportError
from reports.runfolder import RunFolder, RunSettings, read_settings

SETTINGS = RunSettings(argv=["--methods", "patchcore"], data="/data/mvtec", dataset="mvtec_ad",
                       categories=["bottle", "cable"], backbone="resnet18", weights="random", resize=256,
                       crop=224, seed=3, pro_fpr_limit=0.3,
                       device="cpu", methods={"patchcore": {"coreset_ratio": 0.1, "num_neighbors": 9}},
                       versions={"patchbench": "0.1.0"})


def test_settings_round_trip_with_typed_snake_case_keys(tmp_path):
    folder = RunFolder.create(tmp_path, SETTINGS)
    data = json.loads((folder.path / "run.json").read_text())
    assert (data["format"], data["format_version"]) == ("patchbench-run", 2)
    assert data["resize"] == 256 and data["crop"] == 224 and isinstance(data["seed"], int)
    assert data["methods"]["patchcore"] == {"coreset_ratio": 0.1, "num_neighbors": 9}
    assert read_settings(folder.path) == SETTINGS
    assert RunFolder.open(folder.path).settings == SETTINGS


def test_header_lines_are_what_results_md_shows(tmp_path):
    folder = RunFolder.create(tmp_path, SETTINGS)
    markdown = folder.write([{"category": "bottle", "method": "patchcore", "image_auroc": 0.9}])
    header = markdown.split("###")[0]
    for line in ("- data: /data/mvtec", "- categories: bottle, cable", "- image: resize 256, crop 224",
                 "- seed: 3", "- PRO FPR limit: 0.3", "- patchcore settings: coreset_ratio=0.1, num_neighbors=9"):
        assert line in header


def test_a_version_1_folder_is_still_read(tmp_path):
    header = {"data": "/data/mvtec", "categories": "bottle, cable", "backbone": "resnet18", "weights": "random",
              "image": "resize 256, crop 224", "seed": 3, "PRO FPR limit": 0.3, "device": "cpu"}
    (tmp_path / "run.json").write_text(json.dumps({"argv": ["--methods", "patchcore"], "header": header,
                                                   "versions": {"patchbench": "0.1.0"}}))
    settings = read_settings(tmp_path)
    assert (settings.resize, settings.crop, settings.seed) == (256, 224, 3)
    assert settings.categories == ["bottle", "cable"] and settings.argv == ["--methods", "patchcore"]


def test_an_unknown_version_is_refused_naming_the_file(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"format": "patchbench-run", "format_version": 9}))
    with pytest.raises(ReportError, match=r"run.json is 'patchbench-run' version 9"):
        read_settings(tmp_path)


def test_resume_from_a_folder_without_run_json_says_what_to_pass(tmp_path):
    with pytest.raises(ReportError, match="pass the folder of a run that patchbench started"):
        RunFolder.open(tmp_path)

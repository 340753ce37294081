"""Folders off a factory share: each bad case ends in a message naming the file, or is converted."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main

SMALL = ["--resize", "72", "--crop", "64", "--weights", "random", "--no-cache", "--methods", "patchcore"]


def train_image(root, n=0):
    return sorted((root / "washer" / "train" / "good").glob("*.png"))[n]


def a_mask(root):
    return sorted((root / "washer" / "ground_truth").rglob("*_mask.png"))[0]


def truncate(root):
    path = train_image(root)
    path.write_bytes(path.read_bytes()[:200])
    return [path]


def mask_missing(root):
    path = a_mask(root)
    path.unlink()
    return [path.name]


def mask_wrong_size(root):
    path = a_mask(root)
    Image.new("L", (100, 80)).save(path)
    return [path, path.name.replace("_mask", "")]


def defect_without_masks(root):
    folder = a_mask(root).parent
    for mask in folder.iterdir():
        mask.unlink()
    folder.rmdir()
    return [folder.name]


def empty_training(root):
    for path in (root / "washer" / "train" / "good").iterdir():
        path.unlink()
    return [root / "washer" / "train" / "good"]


@pytest.mark.parametrize("breaks", [truncate, mask_missing, mask_wrong_size, defect_without_masks, empty_training])
def test_bad_data_is_named_and_the_run_says_it_failed(category_copy, tmp_path, capsys, breaks):
    root = category_copy("washer")
    fragments = breaks(root)
    code = main(["--data-path", str(root), "--output", str(tmp_path / "runs"), *SMALL])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    for fragment in fragments:
        assert str(fragment) in err, err


def test_stray_files_are_skipped_and_named(category_copy, tmp_path, capsys):
    root = category_copy("washer")
    good = root / "washer" / "train" / "good"
    (good / ".DS_Store").write_bytes(b"\0\0")
    (good / "notes.txt").write_text("camera 2 was dirty")
    assert main(["--data-path", str(root), "--output", str(tmp_path / "runs"), *SMALL]) == 0
    err = capsys.readouterr().err
    assert "notes.txt" in err and ".DS_Store" not in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert pd.read_csv(run_dir / "results.csv")["n_train"].tolist() == [24]


def test_rgba_palette_and_16_bit_images_are_converted(category_copy, tmp_path):
    root = category_copy("washer")
    rgb = np.asarray(Image.open(train_image(root, 0)).convert("RGB"))
    Image.fromarray(rgb).convert("RGBA").save(train_image(root, 0))
    Image.fromarray(rgb).convert("P").save(train_image(root, 1))
    gray16 = (np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(gray16).save(train_image(root, 2))
    assert Image.open(train_image(root, 2)).mode.startswith("I")
    assert main(["--data-path", str(root), "--output", str(tmp_path / "runs"), *SMALL]) == 0


def test_category_too_small_for_padim_is_explained(category_copy, tmp_path, capsys):
    root = category_copy("washer")
    for path in sorted((root / "washer" / "train" / "good").iterdir())[1:]:
        path.unlink()
    argv = ["--data-path", str(root), "--output", str(tmp_path / "runs"), *SMALL[:-1], "padim,spade"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "at least 2 training images" in err and "Traceback" not in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = pd.read_csv(run_dir / "results.csv").set_index("method")
    assert "at least 2 training images" in results.loc["padim", "error"]
    assert pd.isna(results.loc["spade", "error"]) and 0 <= results.loc["spade", "image_auroc"] <= 1

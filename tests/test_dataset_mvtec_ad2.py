"""datasets/mvtec_ad2.py: train/good only, test_public with <stem>_mask.png, private test sets refused, detection and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import read_masks
from datasets.btad import BTAD
from datasets.errors import DatasetError
from datasets.folder import Folder
from datasets.mpdd import MPDD
from datasets.mvtec_ad import MVTecAD
from datasets.mvtec_ad2 import MVTecAD2
from datasets.mvtec_loco import MVTecLOCO
from datasets.visa import VisA
from trees_folder import write_layout_skeletons
from trees_mvtec_ad2 import CATEGORIES, DEFECT_BOX, TEST_BAD, TEST_GOOD, TRAIN, write_mvtec_ad2_tree


@pytest.fixture
def ad2_root(tmp_path) -> Path:
    return write_mvtec_ad2_tree(tmp_path / "mvtec_ad_2")


def error_of(call) -> str:
    with pytest.raises(DatasetError) as error:
        call()
    return str(error.value)


def test_categories_and_known_names(ad2_root):
    data = MVTecAD2(ad2_root)
    assert data.categories() == ["can", "vial"]
    assert MVTecAD2.known_categories == ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial",
                                         "wallplugs", "walnuts")
    assert data.resolve("all") == ["can", "vial"] and data.resolve("vial,can") == ["vial", "can"]
    assert MVTecAD2.groups == {}


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_train_is_train_good_only_not_validation(ad2_root, category):
    train = MVTecAD2(ad2_root).train(category)
    assert [s.image_path for s in train] == [ad2_root / category / "train" / "good" / name for name in sorted(TRAIN)]
    assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)
    assert "validation/good is not used" in MVTecAD2.__doc__.replace("``", "")


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_test_public_labels_defects_and_masks(ad2_root, category):
    test = MVTecAD2(ad2_root).test(category)
    public = ad2_root / category / "test_public"
    assert [s.image_path for s in test] == ([public / "bad" / name for name in sorted(TEST_BAD)]
                                            + [public / "good" / name for name in sorted(TEST_GOOD)])
    assert [(s.label, s.defect) for s in test] == [(1, "bad")] * len(TEST_BAD) + [(0, "good")] * len(TEST_GOOD)
    for sample in test[:len(TEST_BAD)]:
        assert sample.mask_path == public / "ground_truth" / "bad" / f"{sample.image_path.stem}_mask.png"
    assert all(s.mask_path is None for s in test[len(TEST_BAD):])
    assert not any("private" in str(s.image_path) for s in test)


def test_read_masks_gives_the_box_at_each_category_size(ad2_root):
    for category, (size, mode) in CATEGORIES.items():
        test = MVTecAD2(ad2_root).test(category)
        with Image.open(test[0].image_path) as image, Image.open(test[0].mask_path) as mask:
            assert image.size == mask.size == size and image.mode == mode
        box = np.zeros((size[1], size[0]), np.uint8)
        box[DEFECT_BOX] = 255
        expected = np.asarray(Image.fromarray(box).resize((64, 64), Image.NEAREST)) > 0
        for sample, mask in zip(test, read_masks(test, resize=64, crop=64)):
            assert np.array_equal(mask.astype(bool), expected if sample.label else np.zeros_like(expected))


def test_mask_of_another_size_is_an_error_when_read(ad2_root):
    mask = ad2_root / "can" / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png"
    Image.new("L", (40, 56)).save(mask)
    with pytest.raises(DatasetError, match=r"mask .*000_regular_mask\.png is 40x56 but its image .* is 48x40"):
        read_masks(MVTecAD2(ad2_root).test("can"), resize=64, crop=64)


def test_private_test_sets_only_are_refused(ad2_root):
    shutil.rmtree(ad2_root / "vial" / "test_public")
    assert MVTecAD2(ad2_root).categories() == ["can", "vial"]
    assert MVTecAD2(ad2_root).train("vial")
    message = error_of(lambda: MVTecAD2(ad2_root).test("vial"))
    assert f"{ad2_root / 'vial'} has test_private and test_private_mixed but no test_public" in message
    assert "no public labels" in message and "server" in message and "patchbench scores test_public" in message
    shutil.rmtree(ad2_root / "vial" / "test_private")
    assert "has test_private_mixed but no test_public" in error_of(lambda: MVTecAD2(ad2_root).test("vial"))
    shutil.rmtree(ad2_root / "vial" / "test_private_mixed")
    message = error_of(lambda: MVTecAD2(ad2_root).test("vial"))
    assert "has no test_public folder; expected" in message and "ground_truth/bad" in message


def test_missing_mask_names_image_and_expected_path(ad2_root):
    mask = ad2_root / "can" / "test_public" / "ground_truth" / "bad" / "001_shift_1_mask.png"
    mask.unlink()
    message = error_of(lambda: MVTecAD2(ad2_root).test("can"))
    assert f"defective test image {ad2_root / 'can' / 'test_public' / 'bad' / '001_shift_1.png'} has no mask" in message
    assert f"expected {mask}" in message and "restore it" in message


def test_empty_folders(ad2_root):
    for path in (ad2_root / "can" / "train" / "good").iterdir():
        path.unlink()
    assert "train/good has no images" in error_of(lambda: MVTecAD2(ad2_root).train("can"))
    shutil.rmtree(ad2_root / "can" / "train")
    assert MVTecAD2(ad2_root).categories() == ["can", "vial"]  # still a category: its test sets are there
    assert "train/good does not exist" in error_of(lambda: MVTecAD2(ad2_root).train("can"))
    shutil.rmtree(ad2_root / "vial" / "test_public" / "bad")  # half unpacked: no defective images
    assert "vial/test_public/bad is missing or has no images" in error_of(lambda: MVTecAD2(ad2_root).test("vial"))
    shutil.rmtree(ad2_root / "can" / "test_public" / "good")
    assert "can/test_public/good is missing or has no images" in error_of(lambda: MVTecAD2(ad2_root).test("can"))


def test_unknown_category_and_missing_root(ad2_root, tmp_path):
    shutil.rmtree(ad2_root / "vial")
    message = error_of(lambda: MVTecAD2(ad2_root).test("vial"))
    assert "unknown category 'vial'" in message and "not downloaded" in message and "available: can" in message
    assert "unknown category 'widget'" in error_of(lambda: MVTecAD2(ad2_root).train("widget"))
    message = error_of(lambda: MVTecAD2(tmp_path / "nowhere").categories())
    assert "does not exist" in message and "test_public" in message


def test_a_category_folder_passed_as_root_names_its_parent(ad2_root):
    message = error_of(lambda: MVTecAD2(ad2_root / "can").categories())
    assert "is one MVTec AD 2 category folder" in message and f"pass the folder above it, {ad2_root}" in message


def test_detect_own_tree_and_not_the_other_layouts(ad2_root, tmp_path):
    assert MVTecAD2.detect(ad2_root)
    skeletons = write_layout_skeletons(tmp_path / "skeletons")
    assert MVTecAD2.detect(skeletons["mvtec_ad2"])
    for name, root in skeletons.items():
        if name != "mvtec_ad2":
            assert not MVTecAD2.detect(root), name
    for other in (MVTecAD, VisA, MVTecLOCO, BTAD, MPDD, Folder):
        assert not other.detect(ad2_root), other.name
    assert not MVTecAD2.detect(tmp_path / "missing")
    shutil.rmtree(ad2_root / "can" / "test_public")
    shutil.rmtree(ad2_root / "vial")
    assert MVTecAD2.detect(ad2_root)  # private test sets only: detected, so test() can say why it refuses

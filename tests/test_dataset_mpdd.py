"""datasets/mpdd.py: MPDD in the MVTec AD layout, told apart from MVTec AD by its category names."""

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
from trees_folder import write_layout_skeletons
from trees_mpdd import DEFECT_BOX, DEFECTS, PER_DEFECT, SIZE, TEST_GOOD, TRAIN, write_mpdd_tree


@pytest.fixture
def mpdd_root(tmp_path) -> Path:
    return write_mpdd_tree(tmp_path / "MPDD")


def test_names_and_refinement():
    assert MPDD.known_categories == ("bracket_black", "bracket_brown", "bracket_white", "connector",
                                     "metal_plate", "tubes")
    assert MPDD.refines == MVTecAD.name == "mvtec_ad"
    assert dict(MPDD.groups) == {}


def test_categories_counts_labels_and_masks(mpdd_root):
    data = MPDD(mpdd_root)
    assert data.categories() == ["bracket_black", "tubes"]
    assert data.resolve("all") == ["bracket_black", "tubes"]
    for category, defects in DEFECTS.items():
        train = data.train(category)
        assert len(train) == TRAIN
        assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)
        test = data.test(category)
        assert len(test) == TEST_GOOD + PER_DEFECT * len(defects)
        assert sorted({s.defect for s in test}) == sorted({"good", *defects})
        for sample in test:
            assert sample.label == (sample.defect != "good")
            if sample.label:
                assert sample.mask_path == (mpdd_root / category / "ground_truth" / sample.defect
                                            / f"{sample.image_path.stem}_mask.png")
            else:
                assert sample.mask_path is None
        keys = [(s.defect, s.image_path.name) for s in test]
        assert keys == sorted(keys)


def test_read_masks_gives_the_box(mpdd_root):
    box = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    box[DEFECT_BOX] = 255
    expected = np.asarray(Image.fromarray(box).resize((56, 56), Image.NEAREST)) > 0
    test = MPDD(mpdd_root).test("bracket_black")
    for sample, mask in zip(test, read_masks(test, resize=56, crop=56)):
        assert np.array_equal(mask.astype(bool), expected) if sample.label else not mask.any()


def test_detect_needs_every_category_to_be_mpdd(mpdd_root, tmp_path):
    assert MPDD.detect(mpdd_root)
    assert MVTecAD.detect(mpdd_root)  # the layout is MVTec AD's: refines decides
    skeletons = write_layout_skeletons(tmp_path / "skeletons")
    assert MPDD.detect(skeletons["mpdd"])
    for name, root in skeletons.items():
        if name != "mpdd":
            assert not MPDD.detect(root), name
    assert not BTAD.detect(mpdd_root) and not Folder.detect(mpdd_root)
    shutil.copytree(skeletons["mvtec_ad"] / "bottle", mpdd_root / "bottle")
    assert not MPDD.detect(mpdd_root)  # one MVTec AD category: not MPDD
    assert not MPDD.detect(tmp_path / "missing")


def test_detect_ignores_stray_folders_but_needs_a_test_folder(mpdd_root, tmp_path):
    (mpdd_root / "notes").mkdir()
    (mpdd_root / ".cache").mkdir()
    assert MPDD.detect(mpdd_root)
    only_train = tmp_path / "only_train" / "tubes" / "train" / "good"
    only_train.mkdir(parents=True)
    assert not MPDD.detect(tmp_path / "only_train")


def test_missing_mask_names_image_and_expected_mask(mpdd_root):
    (mpdd_root / "tubes" / "ground_truth" / "flattening" / "001_mask.png").unlink()
    with pytest.raises(DatasetError) as error:
        MPDD(mpdd_root).test("tubes")
    message = str(error.value)
    assert str(mpdd_root / "tubes" / "test" / "flattening" / "001.png") in message
    assert str(mpdd_root / "tubes" / "ground_truth" / "flattening" / "001_mask.png") in message


def test_unknown_category_hints_at_mpdd_names(mpdd_root):
    with pytest.raises(DatasetError) as error:
        MPDD(mpdd_root).train("connector")
    message = str(error.value)
    assert "'connector'" in message and "a category of mpdd that is not downloaded" in message
    assert "bracket_black, tubes" in message
    with pytest.raises(DatasetError, match="unknown category 'bottle'"):
        MPDD(mpdd_root).test("bottle")


def test_missing_root_and_folders(mpdd_root, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        MPDD(tmp_path / "nowhere").categories()
    shutil.rmtree(mpdd_root / "tubes" / "test")
    with pytest.raises(DatasetError, match="tubes has no test folder"):
        MPDD(mpdd_root).test("tubes")

"""datasets/folder.py: good/ and bad/ folders, the seeded train/test split, optional masks, detection and errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import read_masks
from datasets.btad import BTAD
from datasets.errors import DatasetError
from datasets.folder import TEST_FRACTION, Folder, held_out_count
from datasets.mpdd import MPDD
from datasets.mvtec_ad import MVTecAD
from trees_folder import (BAD_IMAGES, DEFECT_BOX, GOOD_IMAGES, SIZE, write_folder_category,
                          write_folder_tree, write_layout_skeletons)


@pytest.fixture
def folder_root(tmp_path) -> Path:
    return write_folder_tree(tmp_path / "line")


def split_names(root: Path, category: str, seed: int) -> tuple[list[str], list[str]]:
    data = Folder(root, seed=seed)
    train = [s.image_path.name for s in data.train(category)]
    test_good = [s.image_path.name for s in data.test(category) if s.label == 0]
    return train, test_good


def test_categories_of_a_folder_of_categories(folder_root):
    assert Folder(folder_root).categories() == ["bolts", "labels"]
    assert Folder(folder_root).resolve("labels,bolts") == ["labels", "bolts"]


def test_counts_labels_and_order(folder_root):
    data = Folder(folder_root, seed=0)
    for category in ("bolts", "labels"):
        train, test = data.train(category), data.test(category)
        held = held_out_count(GOOD_IMAGES)
        assert held == 2 and len(train) == GOOD_IMAGES - held and len(test) == BAD_IMAGES + held
        assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)
        assert [s.defect for s in test] == ["bad"] * BAD_IMAGES + ["good"] * held
        assert [s.label for s in test] == [1] * BAD_IMAGES + [0] * held
        assert [s.image_path.name for s in train] == sorted(s.image_path.name for s in train)
        assert [s.image_path.name for s in test] == sorted(s.image_path.name for s in test)
        assert all(s.image_path.parent == folder_root / category / "good" for s in train)


def test_split_same_seed_same_split_other_seed_other_split(folder_root):
    train, test = split_names(folder_root, "bolts", seed=0)
    assert not set(train) & set(test)
    assert sorted(train + test) == [f"good_{i:02d}.png" for i in range(GOOD_IMAGES)]
    assert split_names(folder_root, "bolts", seed=0) == (train, test)
    others = [split_names(folder_root, "bolts", seed=seed)[1] for seed in range(1, 6)]
    assert any(other != test for other in others)
    assert split_names(folder_root, "bolts", seed=3)[1] == split_names(folder_root, "bolts", seed=3)[1]


def test_categories_do_not_share_one_permutation(tmp_path):
    # Same file names in many categories: the held-out positions must differ between some of them.
    for index in range(6):
        write_folder_category(tmp_path / "root" / f"cat{index}", seed=0, masks=False)
    held = {tuple(split_names(tmp_path / "root", f"cat{index}", seed=0)[1]) for index in range(6)}
    assert len(held) > 1


@pytest.mark.parametrize(("good", "held"), [(2, 1), (3, 1), (5, 1), (7, 1), (8, 2), (10, 2), (13, 3), (100, 20)])
def test_held_out_count(good, held):
    assert held_out_count(good) == held == max(1, int(good * TEST_FRACTION + 0.5))


def test_two_good_images_are_enough_one_is_not(tmp_path):
    folder = write_folder_category(tmp_path / "tiny", good=2, masks=False)
    train, test = split_names(folder, "tiny", seed=0)
    assert len(train) == 1 and len(test) == 1
    (folder / "good" / "good_01.png").unlink()
    with pytest.raises(DatasetError) as error:
        Folder(folder).train("tiny")
    message = str(error.value)
    assert str(folder / "good") in message and "1 good image;" in message and "add good images" in message


def test_masks_both_names_and_read_masks_gives_the_box(folder_root):
    test = Folder(folder_root).test("bolts")
    masks = {s.image_path.name: s.mask_path for s in test if s.label}
    assert masks == {"bad_00.png": folder_root / "bolts" / "masks" / "bad_00.png",
                     "bad_01.png": folder_root / "bolts" / "masks" / "bad_01_mask.png",
                     "bad_02.png": folder_root / "bolts" / "masks" / "bad_02_mask.png"}
    box = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    box[DEFECT_BOX] = 255
    expected = np.asarray(Image.fromarray(box).resize((64, 64), Image.NEAREST)) > 0
    for sample, mask in zip(test, read_masks(test, resize=64, crop=64)):
        assert np.array_equal(mask.astype(bool), expected) if sample.label else not mask.any()


def test_without_masks_folder_defects_have_no_mask(folder_root):
    test = Folder(folder_root).test("labels")
    assert all(s.mask_path is None for s in test)
    assert all(s.image_path.suffix == ".jpg" for s in test)


def test_mask_with_another_extension_is_found(folder_root):
    masks = folder_root / "bolts" / "masks"
    Image.open(masks / "bad_00.png").save(masks / "bad_00.bmp")
    (masks / "bad_00.png").unlink()
    test = Folder(folder_root).test("bolts")
    assert test[0].mask_path == masks / "bad_00.bmp"


def test_missing_mask_names_image_and_expected_paths(folder_root):
    masks = folder_root / "bolts" / "masks"
    (masks / "bad_01_mask.png").unlink()
    with pytest.raises(DatasetError) as error:
        Folder(folder_root).test("bolts")
    message = str(error.value)
    assert str(folder_root / "bolts" / "bad" / "bad_01.png") in message
    assert str(masks / "bad_01.png") in message and str(masks / "bad_01_mask.png") in message
    assert "add it, or remove" in message


def test_two_masks_for_one_image_are_named(folder_root):
    masks = folder_root / "bolts" / "masks"
    shutil.copy(masks / "bad_00.png", masks / "bad_00_mask.png")
    with pytest.raises(DatasetError) as error:
        Folder(folder_root).test("bolts")
    assert str(masks / "bad_00.png") in str(error.value) and str(masks / "bad_00_mask.png") in str(error.value)


def test_single_category_root_named_after_its_folder(tmp_path):
    root = write_folder_category(tmp_path / "my_line", seed=0)
    data = Folder(root, seed=0)
    assert data.categories() == ["my_line"]
    assert len(data.train("my_line")) == GOOD_IMAGES - 2
    assert sum(s.label for s in data.test("my_line")) == BAD_IMAGES
    assert Folder.detect(root)
    with pytest.raises(DatasetError, match=r"unknown category 'other'.*available: my_line"):
        data.train("other")


def test_root_with_good_and_bad_wins_over_its_child_folders(tmp_path, caplog):
    root = write_folder_category(tmp_path / "outer", seed=0, masks=False)
    write_folder_category(root / "inner", seed=1, masks=False)
    with caplog.at_level(logging.WARNING, logger="patchbench"):
        assert Folder(root).categories() == ["outer"]
    assert "inner" in caplog.text and "one category" in caplog.text
    assert all(s.image_path.parent.parent == root for s in Folder(root).test("outer"))


def test_detect_own_trees_and_not_the_other_layouts(folder_root, tmp_path):
    assert Folder.detect(folder_root)
    skeletons = write_layout_skeletons(tmp_path / "skeletons")
    assert Folder.detect(skeletons["folder"])
    for name, root in skeletons.items():
        if name != "folder":
            assert not Folder.detect(root), name
    # An MVTec AD 2 category folder holds test_public/good and test_public/bad beside ground_truth/.
    assert not Folder.detect(skeletons["mvtec_ad2"] / "can")
    assert not MVTecAD.detect(folder_root) and not MPDD.detect(folder_root) and not BTAD.detect(folder_root)
    assert not Folder.detect(tmp_path / "missing")


def test_errors_name_the_folder(folder_root, tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist.*ROOT/good"):
        Folder(tmp_path / "nowhere").categories()
    with pytest.raises(DatasetError, match=r"unknown category 'nuts'.*available: bolts, labels"):
        Folder(folder_root).test("nuts")
    for path in (folder_root / "labels" / "bad").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=r"labels/bad has no images.*defective images of labels"):
        Folder(folder_root).test("labels")
    for path in (folder_root / "bolts" / "good").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=r"bolts/good has 0 good images; at least 2"):
        Folder(folder_root).train("bolts")

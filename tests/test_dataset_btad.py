"""datasets/btad.py: BTAD's ok/ko folders, per-product extensions, masks by stem, detection and errors."""

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
from trees_btad import DEFECT_BOX, PRODUCTS, SIZE, TEST_KO, TEST_OK, TRAIN, write_btad_tree
from trees_folder import write_layout_skeletons


@pytest.fixture
def btad_root(tmp_path) -> Path:
    return write_btad_tree(tmp_path / "BTech_Dataset_transformed")


def test_categories_and_known_names(btad_root):
    data = BTAD(btad_root)
    assert data.categories() == ["01", "02", "03"]
    assert BTAD.known_categories == ("01", "02", "03")
    assert data.resolve("all") == ["01", "02", "03"]
    assert data.resolve("03,01") == ["03", "01"]


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_train_is_ok_folder_as_good(btad_root, product):
    train = BTAD(btad_root).train(product)
    image_ext = PRODUCTS[product][0]
    assert [s.image_path for s in train] == [btad_root / product / "train" / "ok" / f"{i:04d}{image_ext}"
                                            for i in range(TRAIN)]
    assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_test_labels_defects_and_masks_by_product_extension(btad_root, product):
    image_ext, mask_ext = PRODUCTS[product]
    test = BTAD(btad_root).test(product)
    assert len(test) == TEST_OK + TEST_KO
    ko = [s for s in test if s.label == 1]
    ok = [s for s in test if s.label == 0]
    assert [s.defect for s in ko] == ["ko"] * TEST_KO and [s.defect for s in ok] == ["good"] * TEST_OK
    assert all(s.mask_path is None for s in ok)
    for sample in ko:
        assert sample.image_path.suffix == image_ext
        assert sample.mask_path == btad_root / product / "ground_truth" / "ko" / f"{sample.image_path.stem}{mask_ext}"
    assert [s.image_path.parent.name for s in test] == ["ko"] * TEST_KO + ["ok"] * TEST_OK  # folder, then name
    assert test == BTAD(btad_root).test(product)


def test_read_masks_gives_the_box_from_png_and_bmp_masks(btad_root):
    box = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    box[DEFECT_BOX] = 255
    expected = np.asarray(Image.fromarray(box).resize((64, 64), Image.NEAREST)) > 0
    for product in PRODUCTS:
        test = BTAD(btad_root).test(product)
        masks = read_masks(test, resize=64, crop=64)
        for sample, mask in zip(test, masks):
            if sample.label:
                assert np.array_equal(mask.astype(bool), expected), sample.mask_path
            else:
                assert not mask.any()


def test_converted_copy_with_png_only_is_read(btad_root):
    # anomalib's downloader turns every .bmp into .png: masks are then found by stem all the same.
    for path in list(btad_root.rglob("*.bmp")):
        Image.open(path).save(path.with_suffix(".png"))
        path.unlink()
    test = BTAD(btad_root).test("03")
    assert all(s.mask_path.suffix == ".png" for s in test if s.label)
    assert BTAD(btad_root).train("01")[0].image_path.suffix == ".png"


def test_detect_own_tree_and_not_the_other_layouts(btad_root, tmp_path):
    assert BTAD.detect(btad_root)
    skeletons = write_layout_skeletons(tmp_path / "skeletons")
    assert BTAD.detect(skeletons["btad"])
    for name, root in skeletons.items():
        if name != "btad":
            assert not BTAD.detect(root), name
    assert not MVTecAD.detect(btad_root) and not MPDD.detect(btad_root) and not Folder.detect(btad_root)
    assert not BTAD.detect(tmp_path / "missing")


def test_missing_mask_names_image_and_expected_path(btad_root):
    (btad_root / "03" / "ground_truth" / "ko" / "0001.bmp").unlink()
    with pytest.raises(DatasetError) as error:
        BTAD(btad_root).test("03")
    message = str(error.value)
    assert str(btad_root / "03" / "test" / "ko" / "0001.bmp") in message
    assert str(btad_root / "03" / "ground_truth" / "ko" / "0001.bmp") in message
    assert "add the mask" in message
    (btad_root / "02" / "ground_truth" / "ko" / "0000.png").unlink()
    with pytest.raises(DatasetError, match=r"expected .*02/ground_truth/ko/0000\.png"):
        BTAD(btad_root).test("02")


def test_missing_ground_truth_folder(btad_root):
    shutil.rmtree(btad_root / "01" / "ground_truth")
    with pytest.raises(DatasetError, match=r"0000\.bmp has no mask; expected .*01/ground_truth/ko/0000\.png"):
        BTAD(btad_root).test("01")


def test_two_masks_of_one_stem_are_named(btad_root):
    extra = btad_root / "01" / "ground_truth" / "ko" / "0000.bmp"
    Image.open(extra.with_suffix(".png")).save(extra)
    with pytest.raises(DatasetError) as error:
        BTAD(btad_root).test("01")
    assert str(extra) in str(error.value) and str(extra.with_suffix(".png")) in str(error.value)
    assert "keep one" in str(error.value)


def test_unknown_category_lists_what_is_there(btad_root):
    shutil.rmtree(btad_root / "02")
    with pytest.raises(DatasetError) as error:
        BTAD(btad_root).train("02")
    message = str(error.value)
    assert "'02'" in message and "01, 03" in message and "not downloaded" in message
    with pytest.raises(DatasetError, match="unknown category 'widget'"):
        BTAD(btad_root).test("widget")


def test_missing_root_and_empty_folders(btad_root, tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist.*<NN>/train/ok"):
        BTAD(tmp_path / "nowhere").categories()
    for path in (btad_root / "01" / "train" / "ok").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=r"01/train/ok has no images.*good training images"):
        BTAD(btad_root).train("01")
    shutil.rmtree(btad_root / "02" / "test")
    with pytest.raises(DatasetError, match=r"02 has no test folder; expected .*test/ok"):
        BTAD(btad_root).test("02")
    shutil.rmtree(btad_root / "03" / "train")
    (btad_root / "03" / "test").mkdir(exist_ok=True)
    assert BTAD(btad_root).categories() == ["01", "02"]
    with pytest.raises(DatasetError, match=r"03 has no train/ok folder"):
        BTAD(btad_root).train("03")

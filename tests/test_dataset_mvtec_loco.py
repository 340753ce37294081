"""datasets.mvtec_loco: the LOCO layout, folder masks read as their union, sPRO regions with saturation areas, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import read_mask, read_masks
from datasets.errors import DatasetError
from datasets.mvtec_ad import MVTecAD
from datasets.mvtec_loco import MVTecLOCO, saturation_area
from trees_mvtec_loco import DEFECTS, HEIGHT, REGIONS, WIDTH, write_mvtec_loco_tree

BOX, SPLICE = "breakfast_box", "splicing_connectors"
LOGICAL, STRUCTURAL = "logical_anomalies", "structural_anomalies"


@pytest.fixture(scope="module")
def loco_root(tmp_path_factory) -> Path:
    """The tree, written once; tests that damage it copy it first (``loco_copy``)."""
    return write_mvtec_loco_tree(tmp_path_factory.mktemp("loco") / "mvtec_loco_anomaly_detection")


@pytest.fixture
def loco_copy(loco_root, tmp_path) -> Path:
    return Path(shutil.copytree(loco_root, tmp_path / "copy"))


def box(rows: tuple[int, int], cols: tuple[int, int], size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


# ------------------------------------------------------------------ layout


def test_categories_splits_labels_and_folder_masks(loco_root):
    dataset = MVTecLOCO(loco_root)
    assert dataset.categories() == [BOX, SPLICE]
    for category in (BOX, SPLICE):
        train = dataset.train(category)
        # validation/good is not used: only the three train images.
        assert [s.image_path.relative_to(loco_root).as_posix() for s in train] == [
            f"{category}/train/good/{i:03d}.png" for i in range(3)]
        assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)
        test = dataset.test(category)
        assert [(s.image_path.relative_to(loco_root).as_posix(), s.label, s.defect) for s in test] == [
            (f"{category}/test/good/000.png", 0, "good"),
            (f"{category}/test/good/001.png", 0, "good"),
            (f"{category}/test/{LOGICAL}/000.png", 1, LOGICAL),
            (f"{category}/test/{LOGICAL}/001.png", 1, LOGICAL),
            (f"{category}/test/{STRUCTURAL}/000.png", 1, STRUCTURAL),
        ]
        assert [s.mask_path for s in test[:2]] == [None, None]
        assert [s.mask_path.relative_to(loco_root).as_posix() for s in test[2:]] == [
            f"{category}/ground_truth/{LOGICAL}/000", f"{category}/ground_truth/{LOGICAL}/001",
            f"{category}/ground_truth/{STRUCTURAL}/000"]


def test_subsets_name_the_test_folders_and_categories_resolve(loco_root):
    assert MVTecLOCO.subsets == {"logical": (LOGICAL,), "structural": (STRUCTURAL,)}
    dataset = MVTecLOCO(loco_root)
    assert dataset.resolve("all") == [BOX, SPLICE]
    assert dataset.resolve(f"{SPLICE},{BOX}") == [SPLICE, BOX]
    with pytest.raises(DatasetError, match="'pushpins'.*not downloaded.*available: breakfast_box, splicing"):
        dataset.resolve("pushpins")
    with pytest.raises(DatasetError, match="unknown category 'pushpins'"):
        dataset.test("pushpins")


def test_union_masks_from_the_folders(loco_root):
    dataset = MVTecLOCO(loco_root)
    for category in (BOX, SPLICE):
        test = dataset.test(category)
        masks = read_masks(test, resize=WIDTH, crop=WIDTH)  # 48x40 -> 48x48: rows stretch
        full = np.zeros((len(test), HEIGHT, WIDTH), np.uint8)
        for index, sample in enumerate(test):
            for _, (r0, r1, c0, c1) in REGIONS.get((category, sample.defect, sample.image_path.stem), []):
                full[index, r0:r1, c0:c1] = 1
        rows = (np.arange(WIDTH) * HEIGHT + HEIGHT // 2) // WIDTH  # Pillow's nearest rows: floor((j + .5) * 40/48)
        np.testing.assert_array_equal(masks, full[:, rows, :])
        assert masks[:2].sum() == 0 and all(masks[i].sum() > 0 for i in range(2, 5))


def test_read_mask_of_a_folder_is_the_union_of_its_files(loco_root):
    folder = loco_root / BOX / "ground_truth" / LOGICAL / "000"
    union = read_mask(folder, 24, 20)
    parts = [read_mask(path, 24, 20) for path in sorted(folder.glob("*.png"))]
    assert len(parts) == 2 and parts[0].sum() and parts[1].sum()
    np.testing.assert_array_equal(union, parts[0] | parts[1])
    # as stored: one grey file per region, its pixels the defect's pixel_value
    with Image.open(folder / "001.png") as image:
        assert image.mode == "L" and set(np.unique(np.asarray(image))) == {0, 250}


# ------------------------------------------------------------------ sPRO regions
# 48x40 images at resize 24, crop 20: Pillow's nearest picks column 2j + 1 and row floor((j + .5) * 5/3),
# the crop keeps resized rows and columns 2..21. An absolute threshold scales by 24 * 24 / (48 * 40) = 0.3.


def test_regions_at_the_evaluated_size_with_saturation_areas(loco_root):
    dataset = MVTecLOCO(loco_root)
    regions = dataset.regions(BOX, dataset.test(BOX), resize=24, crop=20)
    assert regions[0] == [] and regions[1] == []
    (almonds, s1), (fruit, s2) = regions[2]
    # missing_almonds rows 10-19, cols 8-27 -> resized rows 6-11, cols 4-13 (60 px), all visible;
    # relative 1.0: the whole region.
    np.testing.assert_array_equal(almonds, box((4, 10), (2, 12), 20))
    assert s1 == 60
    # nectarines_2_tangerine_1 rows 30-39, cols 36-47 -> resized rows/cols 18-23 (36 px); the crop keeps
    # 18-21: 16 px. Absolute 100 px -> 30 at this size, more than is visible: clipped to 16.
    np.testing.assert_array_equal(fruit, box((16, 20), (16, 20), 20))
    assert s2 == 16
    # missing_almonds rows 0-5, cols 10-19 -> resized rows 0-3, cols 5-9 (20 px); the crop keeps rows 2-3:
    # 10 px. Relative 1.0 -> 20, clipped to the 10 left.
    [(top, s3)] = regions[3]
    np.testing.assert_array_equal(top, box((0, 2), (3, 8), 20))
    assert s3 == 10
    # box_damaged cols 0-3 -> resized columns 0-1, all cut by the crop: no region. contamination rows 25-29,
    # cols 20-29 -> resized rows 15-17, cols 10-14 (15 px).
    [(dirt, s4)] = regions[4]
    np.testing.assert_array_equal(dirt, box((13, 16), (8, 13), 20))
    assert s4 == 15
    # the regions of an image tile its union mask
    masks = read_masks(dataset.test(BOX), 24, 20).astype(bool)
    for mask, image_regions in zip(masks, regions):
        union = np.zeros((20, 20), bool)
        for region, _ in image_regions:
            union |= region
        np.testing.assert_array_equal(union, mask)


def test_regions_relative_fraction_and_absolute_scaled(loco_root):
    dataset = MVTecLOCO(loco_root)
    regions = dataset.regions(SPLICE, dataset.test(SPLICE), resize=24, crop=20)
    # extra_cable: 60 px, relative 0.5 -> 30.
    [(cable, s1)] = regions[2]
    assert cable.sum() == 60 and s1 == 30
    # wrong_connector_type_5_2 rows 20-29, cols 20-39 -> resized rows 12-17, cols 10-19 (60 px, all
    # visible); absolute 40 px of the full image -> 40 * 0.3 = 12.
    [(connector, s2)] = regions[3]
    np.testing.assert_array_equal(connector, box((10, 16), (8, 18), 20))
    assert s2 == pytest.approx(12)
    [(broken, s3)] = regions[4]
    assert broken.sum() == 4 and s3 == 4


def test_a_region_the_crop_keeps_in_part_at_another_size(loco_root):
    # box_damaged (rows 0-9, cols 0-3) at resize 72, crop 64 (offset 4): columns x 2/3 -> resized 0-5,
    # rows x 5/9 -> resized 0-17 (108 px); kept: columns 4-5, rows 4-17 = 28 px; relative 1.0 -> 108 -> 28.
    dataset = MVTecLOCO(loco_root)
    test = dataset.test(BOX)
    [(damaged, s1), (_, s2)] = dataset.regions(BOX, test[4:], resize=72, crop=64)[0]
    np.testing.assert_array_equal(damaged, box((0, 14), (0, 2), 64))
    assert s1 == 28
    assert dataset.regions(BOX, test[:1], 72, 64) == [[]]


def test_saturation_is_at_least_one_pixel(loco_copy):
    # A single full-size pixel that the resize keeps (row 10, column 13 -> resized 6, 6): extra_cable's
    # relative 0.5 gives half a pixel; sPRO divides by it, so one.
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10, 13] = 246
    Image.fromarray(mask).save(loco_copy / SPLICE / "ground_truth" / STRUCTURAL / "000" / "000.png")
    dataset = MVTecLOCO(loco_copy)
    [[(pixel, saturation)]] = dataset.regions(SPLICE, dataset.test(SPLICE)[4:], 24, 20)
    assert pixel.sum() == 1 and saturation == 1


def test_saturation_area_by_hand():
    relative = {"saturation_threshold": 0.5, "relative_saturation": True}
    absolute = {"saturation_threshold": 1000, "relative_saturation": False}
    assert saturation_area(relative, scale=0.01, visible=90) == 45
    assert saturation_area(relative, scale=0.01, visible=30) == 15  # half of what the crop leaves
    assert saturation_area(absolute, scale=0.01, visible=90) == 10
    assert saturation_area(absolute, scale=0.001, visible=90) == 1
    assert saturation_area(absolute, scale=0.01, visible=3) == 3


def test_a_region_thinner_than_the_resize_step_is_kept(loco_copy):
    # One full-size column (12) of 40 rows; 48 -> 24 px under nearest keeps the odd columns (it samples
    # 2i + 1), so nearest alone drops it. It becomes the one evaluated column it touches (6), whole.
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[:, 12] = 246
    Image.fromarray(mask).save(loco_copy / SPLICE / "ground_truth" / STRUCTURAL / "000" / "000.png")
    dataset = MVTecLOCO(loco_copy)
    [[(line, _)]] = dataset.regions(SPLICE, dataset.test(SPLICE)[4:], 24, 24)
    assert line.sum() == 24 and line[:, 6].all()


# ------------------------------------------------------------------ detection


def other_layouts(root: Path) -> dict[str, Path]:
    """The distinguishing folders of the other built-in layouts, one root each."""
    def touch(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path) if path.suffix == ".png" else path.write_text("x")

    roots = {name: root / name for name in ("mvtec_ad", "mvtec_ad2", "visa", "btad", "folder", "empty")}
    for path in ("bottle/train/good/000.png", "bottle/test/good/000.png", "bottle/test/crack/000.png",
                 "bottle/ground_truth/crack/000_mask.png"):
        touch(roots["mvtec_ad"] / path)
    for path in ("can/train/good/000.png", "can/test_public/good/000.png", "can/validation/good/000.png"):
        touch(roots["mvtec_ad2"] / path)
    for path in ("split_csv/1cls.csv", "candle/Data/Images/Normal/0000.JPG"):
        touch(roots["visa"] / path)
    for path in ("01/train/ok/0000.png", "01/test/ko/0000.png", "01/ground_truth/ko/0000.png"):
        touch(roots["btad"] / path)
    for path in ("good/a.png", "bad/b.png"):
        touch(roots["folder"] / path)
    roots["empty"].mkdir()
    return roots


def test_detect_this_layout_only(loco_root, tmp_path):
    assert MVTecLOCO.detect(loco_root)
    for name, root in other_layouts(tmp_path).items():
        assert not MVTecLOCO.detect(root), name
    only_config = tmp_path / "only_config" / "pushpins"
    only_config.mkdir(parents=True)
    (only_config / "defects_config.json").write_text("[]")
    assert MVTecLOCO.detect(only_config.parent)
    only_logical = tmp_path / "only_logical" / "pushpins" / "test" / LOGICAL
    only_logical.mkdir(parents=True)
    assert MVTecLOCO.detect(tmp_path / "only_logical")


def test_refines_mvtec_ad_which_matches_it_too(loco_root):
    # MVTec AD's detection sees train/good and test: without refines a LOCO folder would be ambiguous.
    assert MVTecLOCO.refines == MVTecAD.name == "mvtec_ad"


# ------------------------------------------------------------------ errors


def test_missing_or_empty_ground_truth_folder(loco_copy):
    folder = loco_copy / BOX / "ground_truth" / LOGICAL / "001"
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=f"ground-truth folder {folder} .*has no mask images.*restore"):
        MVTecLOCO(loco_copy).test(BOX)
    folder.rmdir()
    with pytest.raises(DatasetError, match=f"{LOGICAL}/001.png has no ground-truth folder; expected {folder}/"):
        MVTecLOCO(loco_copy).test(BOX)


def test_mask_folder_emptied_later_names_it(loco_copy):
    dataset = MVTecLOCO(loco_copy)
    test = dataset.test(BOX)
    for path in test[3].mask_path.iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=f"mask folder {test[3].mask_path} has no mask images"):
        read_masks(test, 24, 20)


def test_missing_or_unreadable_config(loco_copy):
    config = loco_copy / BOX / "defects_config.json"
    config.write_text("[{\"defect_name\": ", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"cannot read {config}: .*restore"):
        MVTecLOCO(loco_copy).test(BOX)
    config.write_text("{}", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"{config} is not a non-empty list of defects"):
        MVTecLOCO(loco_copy).test(BOX)
    config.unlink()
    with pytest.raises(DatasetError, match=f"{config} is missing; .*restore"):
        MVTecLOCO(loco_copy).test(BOX)
    # the other category is unaffected
    assert len(MVTecLOCO(loco_copy).test(SPLICE)) == 5


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("relative_saturation"), "defect 1 has no key 'relative_saturation'"),
    (lambda e: e.pop("pixel_value"), "defect 1 has no key 'pixel_value'"),
    (lambda e: e.update(pixel_value=256), "defect 1: 'pixel_value' is 256, not an integer in 1..255"),
    (lambda e: e.update(pixel_value=255), "defect 1: 'pixel_value' 255 is also defect 'missing_almonds''s"),
    (lambda e: e.update(relative_saturation="yes"), "defect 1: 'relative_saturation' is 'yes'"),
    (lambda e: e.update(saturation_threshold=-3), "defect 1: 'saturation_threshold' is -3, not a pixel count"),
    (lambda e: e.update(relative_saturation=True), "defect 1: 'saturation_threshold' is 100, not a fraction"),
])
def test_invalid_config_entry_names_file_and_key(loco_copy, change, message):
    config = loco_copy / BOX / "defects_config.json"
    entries = json.loads(config.read_text())
    change(entries[1])
    config.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=f"{config}, {message}.*"):
        MVTecLOCO(loco_copy).test(BOX)


@pytest.mark.parametrize("values, message", [
    ((200,), "has pixel value 200, which no defect of .*defects_config.json has "
             r"\(pixel values there: 234, 236, 250, 255\)"),
    ((255, 250), r"has several pixel values \(250, 255\)"),
    ((), "has no defect pixels"),
])
def test_mask_values_must_be_one_defect_of_the_config(loco_copy, values, message):
    path = loco_copy / BOX / "ground_truth" / LOGICAL / "001" / "000.png"
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for offset, value in enumerate(values):
        mask[5 + offset, 5:9] = value
    Image.fromarray(mask).save(path)
    dataset = MVTecLOCO(loco_copy)
    with pytest.raises(DatasetError, match=f"mask {path} {message}"):
        dataset.regions(BOX, dataset.test(BOX), 24, 20)


def test_colour_mask_and_wrong_size_mask(loco_copy):
    path = loco_copy / BOX / "ground_truth" / STRUCTURAL / "000" / "001.png"
    Image.new("RGB", (WIDTH, HEIGHT), (234, 0, 0)).save(path)
    dataset = MVTecLOCO(loco_copy)
    with pytest.raises(DatasetError, match=f"mask {path} has 3 channels.*single-channel"):
        dataset.regions(BOX, dataset.test(BOX), 24, 20)
    Image.new("L", (WIDTH + 2, HEIGHT), 234).save(path)
    image = loco_copy / BOX / "test" / STRUCTURAL / "000.png"
    with pytest.raises(DatasetError, match=f"mask {path} is 50x40 but its image {image} is 48x40"):
        read_masks(dataset.test(BOX), 24, 20)
    with pytest.raises(DatasetError, match=f"mask {path} is 50x40"):
        dataset.regions(BOX, dataset.test(BOX), 24, 20)


def test_missing_train_test_or_root(loco_copy, tmp_path):
    shutil.rmtree(loco_copy / BOX / "train")
    with pytest.raises(DatasetError, match=f"{loco_copy / BOX / 'train' / 'good'} has no images"):
        MVTecLOCO(loco_copy).train(BOX)
    shutil.rmtree(loco_copy / SPLICE / "test")
    with pytest.raises(DatasetError, match=f"{loco_copy / SPLICE} has no test folder"):
        MVTecLOCO(loco_copy).test(SPLICE)
    with pytest.raises(DatasetError, match=f"dataset folder {tmp_path / 'nowhere'} does not exist"):
        MVTecLOCO(tmp_path / "nowhere").categories()


def test_config_entries_of_the_tree_are_loco_shaped():
    # The keys and value types the official DefectConfig asserts: relative thresholds are floats in
    # (0, 1], absolute ones integers; pixel values in 1..255.
    for entries in DEFECTS.values():
        for entry in entries:
            assert set(entry) == {"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"}
            assert isinstance(entry["saturation_threshold"], float if entry["relative_saturation"] else int)
            assert 1 <= entry["pixel_value"] <= 255

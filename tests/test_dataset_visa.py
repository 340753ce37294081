"""datasets/visa.py: VisA read in place through split_csv/1cls.csv, class-valued masks, groups, detection and errors."""

from __future__ import annotations

import hashlib
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
from trees_visa import DEFECT_BOX, MASK_VALUES, OBJECTS, SIZE, TEST_ANOMALY, TEST_NORMAL, TRAIN, write_visa_tree


@pytest.fixture
def visa_root(tmp_path) -> Path:
    return write_visa_tree(tmp_path / "VisA")


def csv_path(root: Path) -> Path:
    return root / "split_csv" / "1cls.csv"


def csv_lines(root: Path) -> list[str]:
    return csv_path(root).read_text(encoding="utf-8").splitlines()


def edit_line(root: Path, number: int, text: str | None) -> None:
    """Replace line ``number`` (1-based, the header is 1) of 1cls.csv with ``text``; None deletes it."""
    lines = csv_lines(root)
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    csv_path(root).write_text("\n".join(lines) + "\n", encoding="utf-8")


def line_of(root: Path, fragment: str) -> int:
    return next(number for number, line in enumerate(csv_lines(root), 1) if fragment in line)


def error_of(call) -> str:
    with pytest.raises(DatasetError) as error:
        call()
    return str(error.value)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ categories and samples


def test_categories_groups_and_known_names(visa_root):
    data = VisA(visa_root)
    assert data.categories() == ["candle", "pcb1"]
    assert len(VisA.known_categories) == 12 and {"pipe_fryum", "chewinggum", "macaroni2"} <= set(VisA.known_categories)
    assert sorted(name for group in VisA.groups.values() for name in group) == sorted(VisA.known_categories)
    assert VisA.groups["complex_structure"] == ("pcb1", "pcb2", "pcb3", "pcb4")
    assert set(VisA.groups["multiple_instances"]) == {"candle", "capsules", "macaroni1", "macaroni2"}
    assert set(VisA.groups["single_instance"]) == {"cashew", "chewinggum", "fryum", "pipe_fryum"}
    assert data.resolve("complex_structure") == ["pcb1"]
    assert data.resolve("multiple_instances,all") == ["candle", "pcb1"]
    message = error_of(lambda: data.resolve("single_instance"))
    assert "single_instance" in message and "cashew" in message and "candle, pcb1" in message


@pytest.mark.parametrize("obj", sorted(OBJECTS))
def test_train_is_the_csv_train_rows_sorted(visa_root, obj):
    train = VisA(visa_root).train(obj)
    digits = OBJECTS[obj]
    assert [s.image_path for s in train] == [visa_root / obj / "Data" / "Images" / "Normal" / f"{i:0{digits}d}.JPG"
                                            for i in range(TRAIN)]
    assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)


@pytest.mark.parametrize("obj", sorted(OBJECTS))
def test_test_labels_defects_and_masks(visa_root, obj):
    test = VisA(visa_root).test(obj)
    assert len(test) == TEST_NORMAL + TEST_ANOMALY
    assert [(s.label, s.defect) for s in test] == [(1, "anomaly")] * TEST_ANOMALY + [(0, "good")] * TEST_NORMAL
    for sample in test[:TEST_ANOMALY]:
        assert sample.image_path.parent == visa_root / obj / "Data" / "Images" / "Anomaly"
        assert sample.mask_path == visa_root / obj / "Data" / "Masks" / "Anomaly" / f"{sample.image_path.stem}.png"
    assert all(s.mask_path is None and s.image_path.parent.name == "Normal" for s in test[TEST_ANOMALY:])
    train = {s.image_path for s in VisA(visa_root).train(obj)}
    assert not train & {s.image_path for s in test}
    assert test == VisA(visa_root).test(obj)


def test_masks_of_small_class_values_read_as_defect(visa_root):
    mask_path = visa_root / "candle" / "Data" / "Masks" / "Anomaly" / "000.png"
    stored = np.asarray(Image.open(mask_path))
    assert set(np.unique(stored)) == {0, MASK_VALUES[0]} and MASK_VALUES[0] == 1  # black in a viewer
    box = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    box[DEFECT_BOX] = 255
    expected = np.asarray(Image.fromarray(box).resize((64, 64), Image.NEAREST)) > 0
    assert np.array_equal(read_masks([mask_path], resize=64, crop=64)[0].astype(bool), expected)
    for obj in OBJECTS:
        test = VisA(visa_root).test(obj)
        masks = read_masks(test, resize=64, crop=64)
        for sample, mask in zip(test, masks):
            assert np.array_equal(mask.astype(bool), expected if sample.label else np.zeros_like(expected))


def test_reading_changes_nothing_on_disk(visa_root):
    before = digest(visa_root)
    data = VisA(visa_root)
    for obj in data.categories():
        data.train(obj), data.test(obj)
    assert digest(visa_root) == before


def test_csv_with_bom_crlf_and_blank_lines_is_read(visa_root):
    lines = csv_lines(visa_root)
    text = "\r\n".join(lines[:5] + ["", *lines[5:]]) + "\r\n\r\n"
    csv_path(visa_root).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert len(VisA(visa_root).train("candle")) == TRAIN
    assert len(VisA(visa_root).test("pcb1")) == TEST_NORMAL + TEST_ANOMALY


# ------------------------------------------------------------------ detection


def test_detect_own_tree_and_not_the_other_layouts(visa_root, tmp_path):
    assert VisA.detect(visa_root)
    skeletons = write_layout_skeletons(tmp_path / "skeletons")
    assert VisA.detect(skeletons["visa"])
    for name, root in skeletons.items():
        if name != "visa":
            assert not VisA.detect(root), name
    for other in (MVTecAD, MVTecAD2, MVTecLOCO, BTAD, MPDD, Folder):
        assert not other.detect(visa_root), other.name
    assert not VisA.detect(tmp_path / "missing")


def test_detect_objects_without_csv_then_say_where_it_is(visa_root):
    csv_path(visa_root).unlink()
    assert VisA.detect(visa_root)
    message = error_of(lambda: VisA(visa_root).categories())
    assert str(csv_path(visa_root)) in message and "is missing" in message
    assert "spot-diff" in message and "VisA_20220922.tar" in message


# ------------------------------------------------------------------ errors of 1cls.csv rows


@pytest.mark.parametrize("column", ["object", "split", "label", "image", "mask"])
def test_missing_column_names_the_file_and_line_1(visa_root, column):
    header = ",".join(name if name != column else "other" for name in "object,split,label,image,mask".split(","))
    edit_line(visa_root, 1, header)
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"{csv_path(visa_root)}, line 1: no column {column!r}" in message
    assert "object,split,label,image,mask" in message


@pytest.mark.parametrize("field, value, expected", [
    (1, "val", "split 'val' is neither 'train' nor 'test'"),
    (1, "Test", "split 'Test' is neither"),
    (2, "good", "label 'good' is neither 'normal' nor 'anomaly'"),
    (2, "Normal", "label 'Normal' is neither"),
])
def test_unknown_split_or_label_names_the_line(visa_root, field, value, expected):
    number = line_of(visa_root, "pcb1,test,normal")
    fields = csv_lines(visa_root)[number - 1].split(",")
    fields[field] = value
    edit_line(visa_root, number, ",".join(fields))
    message = error_of(lambda: VisA(visa_root).train("candle"))
    assert f"{csv_path(visa_root)}, line {number}: {expected}" in message and "fix the row" in message


def test_row_with_missing_field_names_the_line(visa_root):
    number = line_of(visa_root, "candle,train,normal")
    edit_line(visa_root, number, csv_lines(visa_root)[number - 1].rstrip(","))
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"line {number}: 4 fields where the header has 5" in message


def test_anomaly_row_without_mask(visa_root):
    number = line_of(visa_root, "candle/Data/Images/Anomaly/001.JPG")
    edit_line(visa_root, number, "candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,")
    message = error_of(lambda: VisA(visa_root).test("pcb1"))
    assert f"{csv_path(visa_root)}, line {number}: anomaly image candle/Data/Images/Anomaly/001.JPG has no mask" in message
    assert "candle/Data/Masks/Anomaly/001.png" in message and "remove the row" in message


def test_train_anomaly_and_normal_with_mask_are_rejected(visa_root):
    number = line_of(visa_root, "candle,train,normal")
    original = csv_lines(visa_root)[number - 1]
    edit_line(visa_root, number, original.replace("train,normal", "train,anomaly") + "candle/Data/Masks/Anomaly/000.png")
    assert f"line {number}: a train image labelled anomaly" in error_of(lambda: VisA(visa_root).categories())
    edit_line(visa_root, number, original + "candle/Data/Masks/Anomaly/000.png")
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"line {number}: normal image" in message and "lists a mask" in message


def test_paths_outside_the_object_folder_are_rejected(visa_root):
    number = line_of(visa_root, "pcb1,train,normal")
    edit_line(visa_root, number, "pcb1,train,normal,candle/Data/Images/Normal/0000.JPG,")
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"line {number}: image 'candle/Data/Images/Normal/0000.JPG' is not a path under the object's folder pcb1/" in message
    edit_line(visa_root, number, "pcb1,train,normal,pcb1/../candle/Data/Images/Normal/0000.JPG,")
    assert f"line {number}: image" in error_of(lambda: VisA(visa_root).categories())


def test_duplicate_row_names_both_lines(visa_root):
    first = line_of(visa_root, "pcb1,test,normal")
    lines = csv_lines(visa_root)
    csv_path(visa_root).write_text("\n".join(lines + [lines[first - 1]]) + "\n", encoding="utf-8")
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"line {len(lines) + 1}:" in message and f"first on line {first}" in message and "keep one" in message


def test_listed_image_that_does_not_exist(visa_root):
    image = visa_root / "pcb1" / "Data" / "Images" / "Normal" / "001.JPG"
    image.unlink()
    number = line_of(visa_root, "pcb1/Data/Images/Normal/001.JPG")
    message = error_of(lambda: VisA(visa_root).train("pcb1"))
    assert f"{csv_path(visa_root)}, line {number}: {image} does not exist" in message
    assert "restore it from the VisA archive, or remove the row" in message
    assert VisA(visa_root).train("candle")  # another object is unaffected


def test_lower_cased_copy_is_named_in_the_error(visa_root):
    image = visa_root / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG"
    image.rename(image.with_suffix(".jpg"))
    message = error_of(lambda: VisA(visa_root).test("candle"))
    assert f"there is {image.with_suffix('.jpg')}" in message and "case-sensitive" in message


def test_listed_mask_that_does_not_exist(visa_root):
    mask = visa_root / "pcb1" / "Data" / "Masks" / "Anomaly" / "001.png"
    mask.unlink()
    number = line_of(visa_root, "pcb1/Data/Masks/Anomaly/001.png")
    assert f"line {number}: {mask} does not exist" in error_of(lambda: VisA(visa_root).test("pcb1"))
    shutil.rmtree(visa_root / "pcb1" / "Data" / "Masks")
    assert f"(no folder {mask.parent})" in error_of(lambda: VisA(visa_root).test("pcb1"))


def test_empty_or_unreadable_csv(visa_root):
    csv_path(visa_root).write_text("object,split,label,image,mask\n", encoding="utf-8")
    assert "has a header but no rows" in error_of(lambda: VisA(visa_root).categories())
    csv_path(visa_root).write_bytes(b"object,split\xff\xfe,label\n")
    message = error_of(lambda: VisA(visa_root).categories())
    assert f"cannot read {csv_path(visa_root)}" in message and "spot-diff" in message


# ------------------------------------------------------------------ categories present in one place only


def test_object_in_csv_but_not_on_disk(visa_root):
    shutil.rmtree(visa_root / "pcb1")
    assert VisA(visa_root).categories() == ["candle"]
    message = error_of(lambda: VisA(visa_root).train("pcb1"))
    assert "unknown category 'pcb1'" in message and "not downloaded" in message and "available: candle" in message
    assert "unknown category 'widget'" in error_of(lambda: VisA(visa_root).test("widget"))


def test_object_on_disk_but_not_in_csv(visa_root):
    lines = [line for line in csv_lines(visa_root) if not line.startswith("pcb1,")]
    csv_path(visa_root).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert VisA(visa_root).categories() == ["candle"]
    message = error_of(lambda: VisA(visa_root).test("pcb1"))
    assert f"{visa_root / 'pcb1'} is not listed in {csv_path(visa_root)}" in message and "spot-diff" in message


def test_object_without_test_rows(visa_root):
    lines = [line for line in csv_lines(visa_root) if not line.startswith("pcb1,test,")]
    csv_path(visa_root).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(VisA(visa_root).train("pcb1")) == TRAIN
    assert "lists no test images of pcb1" in error_of(lambda: VisA(visa_root).test("pcb1"))


def test_missing_root(tmp_path):
    message = error_of(lambda: VisA(tmp_path / "nowhere").categories())
    assert "does not exist" in message and "split_csv/1cls.csv" in message



def test_one_file_in_two_spellings_is_a_duplicate_and_backslashes_are_read(tmp_path):
    root = write_visa_tree(tmp_path / "visa")
    csv_path = root / "split_csv" / "1cls.csv"
    rows = csv_path.read_text().splitlines()
    train = next(line for line in rows if ",train," in line)
    obj, _, label, image, mask = train.split(",")
    windows = f"{obj},train,{label},{image.replace('/', chr(92))},{mask}"
    csv_path.write_text("\n".join([line if line != train else windows for line in rows]) + "\n")
    assert any(s.image_path == root / image for s in VisA(root).train(obj))  # the "\\" path found
    again = f"{obj},test,{label},{image.replace('/Data/', '/Data//')},{mask}"
    csv_path.write_text(csv_path.read_text() + again + "\n")
    with pytest.raises(DatasetError, match=r"is listed again \(first on line"):
        VisA(root).train(obj)


def test_a_selection_is_not_one_category(tmp_path):
    root = write_visa_tree(tmp_path / "visa")
    with pytest.raises(DatasetError, match="take one category name, not a selection; got 'complex_structure'"):
        VisA(root).train("complex_structure")

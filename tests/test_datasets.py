"""datasets/: the MVTec layout loader, image/mask reading, and the synthetic set."""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt

from datasets.errors import DatasetError
from datasets import (
    CATEGORIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OBJECTS,
    SYNTHETIC_CATEGORIES,
    SYNTHETIC_OBJECTS,
    SYNTHETIC_TEXTURES,
    TEXTURES,
    Sample,
    build_synthetic,
    default_synthetic_root,
    ensure_synthetic,
    load_split,
    read_images,
    read_masks,
    resolve_categories,
)
from datasets import mvtec, synthetic
from datasets.cache_root import cache_root, configured_cache_root
from datasets.synthetic_scenes import SCENES

# ------------------------------------------------------------------ helpers


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_png(
    path: Path, array: np.ndarray | None = None, size: tuple[int, int] = (32, 32)
) -> Path:
    """Write a small image (default: mid-grey RGB ``size``) to ``path``, folders included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.full((size[1], size[0], 3), 128, np.uint8)
    Image.fromarray(array).save(path)
    return path


def make_category(
    root: Path, name: str, train: int = 2, good: int = 1, defects: dict[str, int] | None = None,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """A minimal MVTec-layout category under ``root``; masks mark a 4x4 square."""
    folder = root / name
    for i in range(train):
        write_png(folder / "train" / "good" / f"{i:03d}.png", size=size)
    for i in range(good):
        write_png(folder / "test" / "good" / f"{i:03d}.png", size=size)
    for defect, count in (defects or {"crack": 1}).items():
        for i in range(count):
            write_png(folder / "test" / defect / f"{i:03d}.png", size=size)
            mask = np.zeros((size[1], size[0]), np.uint8)
            mask[4:8, 4:8] = 255
            write_png(folder / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return folder


# ------------------------------------------------------------------ synthetic set


def test_synthetic_categories_cover_textures_and_objects():
    assert len(SYNTHETIC_TEXTURES) >= 2 and len(SYNTHETIC_OBJECTS) >= 2
    assert set(SYNTHETIC_TEXTURES) | set(SYNTHETIC_OBJECTS) == set(SYNTHETIC_CATEGORIES)
    assert all(len(SCENES[name].defects) >= 3 for name in SYNTHETIC_CATEGORIES)


def test_synthetic_build_same_seed_same_bytes(synthetic_root, tmp_path):
    # One category rebuilt (a quarter of the time; granite is rebuilt in another
    # process below), on one thread where the first build used a pool: the
    # order of work must not matter.
    names = ["washer"]
    again = tree_digest(build_synthetic(tmp_path / "again", seed=0, categories=names, workers=1))
    first = {k: v for k, v in tree_digest(synthetic_root).items() if k.split("/")[0] in names}
    assert len(first) > 40
    assert first == again


def test_synthetic_build_same_bytes_in_another_process(synthetic_root, tmp_path):
    # A fresh interpreter with another hash salt: nothing may hang on hash() or ids.
    script = (
        "import sys; from datasets import build_synthetic; "
        "build_synthetic(sys.argv[1], seed=0, categories=['granite'])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "p")], env=env, check=True)
    first = {k: v for k, v in tree_digest(synthetic_root).items() if k.startswith("granite/")}
    assert first == tree_digest(tmp_path / "p")


def test_synthetic_counts_extend_the_default_set(synthetic_root, tmp_path):
    # bench.py profile's MVTec-sized category must hold the default set's pictures, plus more.
    counts = synthetic.ImageCounts(train=26, test_good=1, per_defect=6)
    tree = tree_digest(build_synthetic(tmp_path / "big", seed=0, categories=["chip"], counts=counts))
    first = {k: v for k, v in tree_digest(synthetic_root).items() if k.startswith("chip/")}
    assert len([k for k in tree if k.startswith("chip/train/good/")]) == 26
    assert len([k for k in tree if k.startswith("chip/test/good/")]) == 1
    assert all(len([k for k in tree if k.startswith(f"chip/test/{d}/")]) == 6 for d in SCENES["chip"].defects)
    assert all(len([k for k in tree if k.startswith(f"chip/ground_truth/{d}/")]) == 6 for d in SCENES["chip"].defects)
    shared = set(first) & set(tree)
    assert {k for k in first if "/test/good/" not in k} <= shared
    assert {k: tree[k] for k in shared} == {k: first[k] for k in shared}


def test_synthetic_build_other_seed_other_bytes(synthetic_root, tmp_path):
    other = tree_digest(build_synthetic(tmp_path / "other", seed=1, categories=["granite"]))
    first = tree_digest(synthetic_root)
    images = [name for name in other if "_mask" not in name]
    assert images and all(other[name] != first[name] for name in images)


def test_synthetic_categories_differ(synthetic_root):
    pictures = [
        np.asarray(Image.open(synthetic_root / name / "train" / "good" / "000.png").convert("RGB"))
        for name in SYNTHETIC_CATEGORIES
    ]
    for i in range(len(pictures)):
        for j in range(i + 1, len(pictures)):
            assert np.abs(pictures[i].astype(int) - pictures[j].astype(int)).mean() > 5


def test_synthetic_normal_images_vary(synthetic_root):
    for name in SYNTHETIC_CATEGORIES:
        a, b = (
            np.asarray(Image.open(synthetic_root / name / "train" / "good" / f"{i:03d}.png"), float)
            for i in (0, 1)
        )
        assert np.abs(a - b).mean() > 2, name


def test_synthetic_layout_counts_and_masks(synthetic_root):
    for name in SYNTHETIC_CATEGORIES:
        folder = synthetic_root / name
        assert len(list((folder / "train" / "good").glob("*.png"))) == synthetic.TRAIN_IMAGES
        assert len(list((folder / "test" / "good").glob("*.png"))) == synthetic.TEST_GOOD_IMAGES
        for defect in SCENES[name].defects:
            images = sorted((folder / "test" / defect).glob("*.png"))
            assert len(images) == synthetic.IMAGES_PER_DEFECT
            for image_path in images:
                mask_path = folder / "ground_truth" / defect / f"{image_path.stem}_mask.png"
                with Image.open(image_path) as image, Image.open(mask_path) as mask:
                    assert image.size == mask.size == (256, 256)
                    values = np.asarray(mask)
                assert mask.mode == "L"
                assert set(np.unique(values)) <= {0, 255}
                assert (values == 255).sum() >= 4, mask_path


def test_synthetic_grey_category_is_single_channel(synthetic_root):
    grey = [name for name in SYNTHETIC_CATEGORIES if SCENES[name].grey]
    assert grey
    for name in SYNTHETIC_CATEGORIES:
        with Image.open(synthetic_root / name / "train" / "good" / "000.png") as image:
            assert image.mode == ("L" if name in grey else "RGB")


@pytest.mark.parametrize("name", SYNTHETIC_CATEGORIES)
def test_synthetic_masks_cover_exactly_what_the_defect_changed(synthetic_root, name):
    # A defect draws from its own random stream, so rendering the same seed
    # without the defect gives the image's clean twin: the two must differ
    # inside the mask and nowhere away from it (objects: only their soft shadow).
    scene = SCENES[name]
    for defect in scene.defects:
        for index in range(synthetic.IMAGES_PER_DEFECT):
            stem = f"{index:03d}"
            broken = np.asarray(Image.open(synthetic_root / name / "test" / defect / f"{stem}.png"))
            mask_path = synthetic_root / name / "ground_truth" / defect / f"{stem}_mask.png"
            mask = np.asarray(Image.open(mask_path)) > 0
            clean, _ = scene.render(synthetic.image_rng(0, name, "test", defect, index), None)
            diff = np.abs(broken.astype(int) - clean.astype(int))
            diff = diff.max(axis=-1) if diff.ndim == 3 else diff
            away = distance_transform_edt(~mask)
            where = f"{name}/{defect}/{index:03d}"
            assert (diff[mask] > 2).mean() > 0.75 and diff[mask].mean() > 8, where
            if scene.kind == "texture":
                # Soft rims reach 2-3 px out, and the lens blur half a grey level further.
                assert diff[away > 4].max() <= 1 and diff[away > 6].max() == 0, where
            else:
                assert diff[away > 8].max() <= 24 and diff[away > 32].max() <= 2, where


def test_ensure_synthetic_builds_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path / "cache"))
    root = default_synthetic_root(seed=3)
    assert root == tmp_path / "cache" / f"synthetic-v{synthetic.VERSION}-seed3"
    builds = []

    def fake_build(folder, seed=0, **_):
        builds.append(seed)
        (Path(folder) / "built.txt").write_text(str(seed))
        return Path(folder)

    monkeypatch.setattr(synthetic, "build_synthetic", fake_build)
    assert ensure_synthetic(seed=3) == root
    assert ensure_synthetic(seed=3) == root
    assert builds == [3]
    assert (root / "built.txt").read_text() == "3"
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no staging left


def test_cache_root_is_the_variable_else_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv("PATCHBENCH_CACHE", raising=False)
        else:
            monkeypatch.setenv("PATCHBENCH_CACHE", unset)
        assert configured_cache_root() is None
        assert cache_root() == tmp_path / "home" / ".cache" / "patchbench"
        assert default_synthetic_root(seed=1) == cache_root() / f"synthetic-v{synthetic.VERSION}-seed1"
    monkeypatch.setenv("PATCHBENCH_CACHE", "~/elsewhere")
    assert configured_cache_root() == cache_root() == tmp_path / "home" / "elsewhere"


def test_ensure_synthetic_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def failing_build(folder, seed=0, **_):
        (Path(folder) / "weave").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "build_synthetic", failing_build)
    root = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(root)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ loader


def test_load_split_counts_labels_and_order(synthetic_root):
    for name in SYNTHETIC_CATEGORIES:
        train = load_split(synthetic_root, name, "train")
        test = load_split(synthetic_root, name, "test")
        assert len(train) == synthetic.TRAIN_IMAGES
        assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in train)
        defects = SCENES[name].defects
        assert len(test) == synthetic.TEST_GOOD_IMAGES + len(defects) * synthetic.IMAGES_PER_DEFECT
        assert sum(s.label for s in test) == len(defects) * synthetic.IMAGES_PER_DEFECT
        for sample in test:
            assert sample.label == (sample.defect != "good")
            assert (sample.mask_path is None) == (sample.label == 0)
            if sample.mask_path is not None:
                assert sample.mask_path.name == f"{sample.image_path.stem}_mask.png"
                assert sample.mask_path.parent.name == sample.defect
        keys = [(s.defect, s.image_path.name) for s in test]
        assert keys == sorted(keys)
        assert test == load_split(synthetic_root, name, "test")


def test_load_split_ignores_hidden_and_non_images_and_reads_any_case(tmp_path):
    folder = make_category(tmp_path, "widget", train=2)
    train = folder / "train" / "good"
    (train / ".hidden.png").write_bytes(b"not an image")
    (train / "notes.txt").write_text("hello")
    (train / "Thumbs.db").write_bytes(b"\0")
    write_png(train / "UPPER.PNG")
    write_png(train / "photo.JpEg")
    names = [s.image_path.name for s in load_split(tmp_path, "widget", "train")]
    assert names == ["000.png", "001.png", "UPPER.PNG", "photo.JpEg"]


def test_custom_named_category_folder(tmp_path):
    make_category(tmp_path, "widget", train=3, good=2, defects={"dent": 2, "burn": 1})
    (tmp_path / "not_a_category").mkdir()
    assert resolve_categories(tmp_path, "all") == ["widget"]
    test = load_split(tmp_path, "widget", "test")
    assert [(s.defect, s.label) for s in test] == [
        ("burn", 1), ("dent", 1), ("dent", 1), ("good", 0), ("good", 0)
    ]
    assert len(load_split(tmp_path, "widget", "train")) == 3


def test_mvtec_constants():
    assert len(CATEGORIES) == 15 and len(set(CATEGORIES)) == 15
    assert set(TEXTURES) == {"carpet", "grid", "leather", "tile", "wood"}
    assert set(OBJECTS) == set(CATEGORIES) - set(TEXTURES) and len(OBJECTS) == 10


@pytest.fixture
def mixed_root(tmp_path) -> Path:
    for name in ("bottle", "carpet", "widget", "screw"):
        make_category(tmp_path, name)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bottle", ["bottle"]),
        ("all", ["bottle", "carpet", "screw", "widget"]),
        ("objects", ["bottle", "screw"]),
        ("textures", ["carpet"]),
        ("widget, carpet", ["widget", "carpet"]),
        ("textures,objects", ["carpet", "bottle", "screw"]),
        ("carpet,all", ["carpet", "bottle", "screw", "widget"]),
        ("screw,screw", ["screw"]),
    ],
)
def test_resolve_categories(mixed_root, spec, expected):
    assert resolve_categories(mixed_root, spec) == expected


def test_resolve_synthetic_groups(synthetic_root):
    assert resolve_categories(synthetic_root, "all") == sorted(SYNTHETIC_CATEGORIES)
    assert resolve_categories(synthetic_root, "textures") == sorted(SYNTHETIC_TEXTURES)
    assert resolve_categories(synthetic_root, "objects") == sorted(SYNTHETIC_OBJECTS)


def test_the_layout_loader_is_given_the_groups(synthetic_root):
    # datasets.mvtec knows MVTec AD's groups only; the synthetic set's come from datasets.categories.
    with pytest.raises(DatasetError, match="textures of MVTec AD \\(carpet"):
        mvtec.resolve_categories(synthetic_root, "textures")
    weave_only = mvtec.CategoryGroups({"textures": ("weave",)}, "a test")
    assert mvtec.resolve_categories(synthetic_root, "textures", weave_only) == ["weave"]
    imported = {
        node.module for node in ast.walk(ast.parse(Path(mvtec.__file__).read_text()))
        if isinstance(node, ast.ImportFrom)
    }
    assert not {name for name in imported if "synthetic" in name or "scene" in name}


# ------------------------------------------------------------------ loader errors


def test_unknown_category_names_it_root_and_choices(mixed_root):
    with pytest.raises(DatasetError) as error:
        resolve_categories(mixed_root, "bottle,gizmo")
    message = str(error.value)
    assert "gizmo" in message and str(mixed_root) in message
    assert "bottle" in message and "widget" in message


def test_mvtec_name_not_downloaded_is_reported(mixed_root):
    with pytest.raises(DatasetError, match="hazelnut.*not downloaded"):
        resolve_categories(mixed_root, "hazelnut")
    with pytest.raises(DatasetError, match="hazelnut"):
        load_split(mixed_root, "hazelnut", "train")


def test_group_with_no_member_present(tmp_path):
    make_category(tmp_path, "widget")
    with pytest.raises(DatasetError, match="textures.*widget"):
        resolve_categories(tmp_path, "textures")


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        resolve_categories(tmp_path / "nowhere", "all")


def test_root_without_categories(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="train/good"):
        resolve_categories(tmp_path, "all")


def test_folder_without_train_good(tmp_path):
    (tmp_path / "widget" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        load_split(tmp_path, "widget", "test")
    assert str(tmp_path / "widget") in str(error.value)
    assert "train/good" in str(error.value)


def test_empty_train_folder(tmp_path):
    folder = make_category(tmp_path, "widget", train=0)
    (folder / "train" / "good").mkdir(parents=True)
    (folder / "train" / "good" / "readme.txt").write_text("no pictures")
    with pytest.raises(DatasetError, match=r"train/good has no images.*expected"):
        load_split(tmp_path, "widget", "train")


def test_folder_without_test(tmp_path):
    write_png(tmp_path / "widget" / "train" / "good" / "000.png")
    assert len(load_split(tmp_path, "widget", "train")) == 1
    with pytest.raises(DatasetError, match=r"widget has no test folder.*expected"):
        load_split(tmp_path, "widget", "test")


def test_missing_mask_names_image_and_expected_mask(tmp_path):
    folder = make_category(tmp_path, "widget", defects={"crack": 2})
    (folder / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError) as error:
        load_split(tmp_path, "widget", "test")
    message = str(error.value)
    assert str(folder / "test" / "crack" / "001.png") in message
    assert str(folder / "ground_truth" / "crack" / "001_mask.png") in message


def test_bad_split_is_a_programming_error(tmp_path):
    make_category(tmp_path, "widget")
    with pytest.raises(ValueError):
        load_split(tmp_path, "widget", "validation")


# ------------------------------------------------------------------ reading images


def test_read_images_shapes(synthetic_root):
    samples = load_split(synthetic_root, "washer", "test")[:3]
    paths = [s.image_path for s in samples]
    assert read_images(paths).shape == (3, 3, 224, 224)
    small = read_images(paths, resize=64, crop=48, workers=2)
    assert small.shape == (3, 3, 48, 48) and small.dtype == np.float32
    assert read_images([], resize=64, crop=48).shape == (0, 3, 48, 48)
    assert read_masks(samples, resize=64, crop=48).shape == (3, 48, 48)


def test_read_images_same_result_whatever_the_workers(synthetic_root):
    paths = [s.image_path for s in load_split(synthetic_root, "weave", "train")[:6]]
    one, four = read_images(paths, 64, 56, workers=1), read_images(paths, 64, 56, workers=4)
    assert np.array_equal(one, four)


def test_normalisation_of_a_constant_image(tmp_path):
    path = write_png(tmp_path / "c.png", np.full((10, 10, 3), (200, 100, 50), np.uint8))
    out = read_images([path], resize=10, crop=6)
    expected = [
        (200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225
    ]
    for channel, value in enumerate(expected):
        assert np.allclose(out[0, channel], value, atol=1e-5)


def test_center_crop_takes_the_middle(tmp_path):
    gradient = np.arange(100, dtype=np.uint8).reshape(10, 10)
    path = write_png(tmp_path / "g.png", np.stack([gradient] * 3, -1))
    out = read_images([path], resize=10, crop=4)[0, 0]
    grey = np.round((out * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255).astype(int)
    assert np.array_equal(grey, gradient[3:7, 3:7])


def test_resize_is_square_whatever_the_aspect(tmp_path):
    path = write_png(tmp_path / "wide.png", size=(90, 30))
    assert read_images([path], resize=32, crop=32).shape == (1, 3, 32, 32)


def test_grey_category_comes_in_as_three_equal_channels(synthetic_root):
    path = synthetic_root / "granite" / "train" / "good" / "000.png"
    assert Image.open(path).mode == "L"
    image = read_images([path], resize=64, crop=64)[0]
    rgb = image * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
    assert image.shape == (3, 64, 64)
    assert np.allclose(rgb[0], rgb[1], atol=1e-5) and np.allclose(rgb[1], rgb[2], atol=1e-5)


def _unnormalised(path: Path) -> np.ndarray:
    image = read_images([path], resize=4, crop=4)[0]
    return np.round((image * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]) * 255)


@pytest.mark.parametrize(("value16", "value8"), [(0, 0), (257, 1), (32896, 128), (65535, 255)])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path, value16, value8):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), value16, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.all(_unnormalised(path) == value8)


def test_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    palette = Image.fromarray(np.full((4, 4, 3), (10, 20, 30), np.uint8)).quantize(colors=4)
    palette.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    for name in ("a.png", "p.png"):
        out = _unnormalised(tmp_path / name)
        assert out.shape == (3, 4, 4)
        assert np.allclose(out[:, 0, 0], (10, 20, 30), atol=1), name


def test_unreadable_image_is_named(tmp_path):
    good = write_png(tmp_path / "ok.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(DatasetError) as error:
        read_images([good, garbage])
    assert str(garbage) in str(error.value) and "replace or remove" in str(error.value)


def test_truncated_image_is_named(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    whole = write_png(tmp_path / "whole.png", noise)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cut.png"):
        read_images([cut])


# ------------------------------------------------------------------ reading masks


def test_good_images_get_all_zero_masks_and_defects_do_not(synthetic_root):
    for name in SYNTHETIC_CATEGORIES:
        samples = load_split(synthetic_root, name, "test")
        masks = read_masks(samples)
        assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
        for sample, mask in zip(samples, masks):
            assert mask.any() == bool(sample.label), sample.image_path


def test_read_masks_accepts_paths_and_none(tmp_path):
    values = np.zeros((8, 8), np.uint8)
    values[0:4, 0:4] = 1  # any nonzero value is defect, not only 255
    path = write_png(tmp_path / "m.png", values)
    masks = read_masks([None, path, str(path)], resize=8, crop=8)
    assert not masks[0].any()
    assert np.array_equal(masks[1], values) and np.array_equal(masks[2], values)


def test_mask_resize_is_nearest_and_cropped_like_the_image(tmp_path):
    values = np.zeros((16, 16), np.uint8)
    values[6:10, 6:10] = 255
    path = write_png(tmp_path / "m.png", values)
    mask = read_masks([path], resize=8, crop=4)[0]
    assert set(np.unique(mask)) == {0, 1}
    expected = np.zeros((4, 4), np.uint8)
    expected[1:3, 1:3] = 1  # 16->8 halves the square to [3:5], the crop starts at 2
    assert np.array_equal(mask, expected)


def test_mask_of_another_size_names_both_files(tmp_path):
    folder = make_category(tmp_path, "widget", size=(32, 32))
    mask_path = folder / "ground_truth" / "crack" / "000_mask.png"
    write_png(mask_path, np.zeros((20, 24), np.uint8))
    samples = load_split(tmp_path, "widget", "test")
    with pytest.raises(DatasetError) as error:
        read_masks(samples, resize=32, crop=32)
    message = str(error.value)
    assert str(mask_path) in message and str(folder / "test" / "crack" / "000.png") in message
    assert "24x20" in message and "32x32" in message


def test_unreadable_mask_is_named(tmp_path):
    bad = tmp_path / "bad_mask.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="bad_mask.png"):
        read_masks([bad])


def test_sample_is_a_plain_value():
    sample = Sample(Path("a.png"), 1, "crack", Path("a_mask.png"))
    assert sample == Sample(Path("a.png"), 1, "crack", Path("a_mask.png"))
    assert Sample(Path("b.png"), 0, "good").mask_path is None


def test_a_jpeg_mask_is_its_shape_not_its_compression_rings(tmp_path):
    from datasets.transforms import read_mask

    box = np.zeros((100, 150), dtype=np.uint8)
    box[20:70, 40:110] = 255
    Image.fromarray(box).save(tmp_path / "m.jpg", quality=90)
    assert (np.asarray(Image.open(tmp_path / "m.jpg")) > 0).sum() > box.astype(bool).sum()  # the rings
    mask = read_mask(tmp_path / "m.jpg", resize=150, crop=150)
    exact = read_mask(_png(tmp_path / "m.png", box), resize=150, crop=150)
    assert np.abs(mask.astype(int) - exact).sum() < 20  # a few edge pixels either way, no ring


def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def test_a_broken_link_is_an_error_naming_it(tmp_path):
    from datasets.base import list_images

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "elsewhere" / "b.png")
    with pytest.raises(DatasetError, match=r"b.png links to .*elsewhere/b.png, which does not exist"):
        list_images(tmp_path)

"""``bench.py predict``: scores equal to the method's, overlays at the crop size, other weights refused."""

import csv
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import predict
from bench.backbone import Backbone
from bench.cli import main
from bench.models import save_model
from datasets import load_split, read_images
from methods.base import FeatureSet
from methods.patchcore import PatchCore
from reports import figures

# Small images keep the suite quick; the pipeline is the same as at 224.
RESIZE, CROP = 72, 64
CATEGORY = "weave"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # The session's model cache (see conftest): the traced trunk is shared with the CLI's Backbone.
    return tmp_path_factory.getbasetemp() / "cache" / "models"


@pytest.fixture(scope="module")
def backbone(cache_dir):
    return Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=cache_dir)


def features(backbone, paths):
    images = read_images(paths, resize=RESIZE, crop=CROP)
    return FeatureSet(backbone.extract(images, PatchCore.layers), image_size=(CROP, CROP))


@pytest.fixture(scope="module")
def fitted(synthetic_root, backbone, tmp_path_factory):
    """PatchCore fitted on the category's train images, and its saved folder: ``(method, folder)``."""
    train = [s.image_path for s in load_split(synthetic_root, CATEGORY, "train")]
    method = PatchCore(coreset_ratio=0.25).fit(features(backbone, train))
    folder = save_model(method, tmp_path_factory.mktemp("models") / CATEGORY / "patchcore",
                        backbone=backbone.name, weights_id=backbone.weights_id,
                        weights_used=backbone.weights_used, resize=RESIZE, crop=CROP,
                        layers=PatchCore.layers, category=CATEGORY)
    return method, folder


def image_of(root, defect="hole", index=0) -> Path:
    return root / CATEGORY / "test" / defect / f"{index:03d}.png"


def read_scores(folder):
    with open(folder / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


FLOAT_COLUMNS = ("score", "map_max")


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """Rows of two ``scores.csv`` of the same images scored in other batches: the same but for rounding.

    Another batch shape changes oneDNN's summation order (on AMD: 11.058747291564941
    against 11.058743476867676), so the floats agree to a tolerance; the other
    columns exactly.
    """
    assert [{k: v for k, v in row.items() if k not in FLOAT_COLUMNS} for row in a] == \
           [{k: v for k, v in row.items() if k not in FLOAT_COLUMNS} for row in b]
    for key in FLOAT_COLUMNS:
        np.testing.assert_allclose([float(row[key]) for row in b], [float(row[key]) for row in a], rtol=1e-5)


def test_scores_equal_the_method_and_an_overlay_is_drawn(synthetic_root, backbone, fitted, tmp_path, capsys):
    method, folder = fitted
    image = image_of(synthetic_root)
    out = tmp_path / "out"
    assert main(["predict", str(image), "--model", str(folder), "--output", str(out)]) == 0

    expected = float(method.predict(features(backbone, [image])).scores[0])
    (row,) = read_scores(out)
    assert row["image"] == str(image)
    assert float(row["score"]) == expected
    assert row["overlay"] == "hole_000_overlay.png"  # <parent>_<stem>_overlay.png, even for a lone image
    assert f"{expected:.6g}" in [line.split()[-1] for line in capsys.readouterr().out.splitlines()
                                 if line.startswith(str(image))]
    with Image.open(out / "hole_000_overlay.png") as png:
        assert png.format == "PNG" and png.size == (CROP, CROP) and png.mode == "RGB"
        overlay = np.asarray(png)
    plain = np.asarray(predict.network_view(image, RESIZE, CROP))
    assert np.abs(overlay.astype(int) - plain).mean() > 10  # the heat map is on top
    assert sorted(p.name for p in out.iterdir()) == ["hole_000_overlay.png", "scores.csv"]


def test_many_images_in_steps_score_as_one_batch(synthetic_root, fitted, tmp_path, monkeypatch):
    method, folder = fitted
    images = [image_of(synthetic_root, d, i) for d in ("good", "hole", "stain") for i in (0, 1)]
    assert main(["predict", *map(str, images), "--model", str(folder), "--output", str(tmp_path / "a")]) == 0
    monkeypatch.setattr(predict, "IMAGES_PER_STEP", 4)
    assert main(["predict", *map(str, images), "--model", str(folder), "--output", str(tmp_path / "b")]) == 0

    a, b = read_scores(tmp_path / "a"), read_scores(tmp_path / "b")
    assert_same_rows(a, b)
    # Same stems in different folders: the folder tells the overlays apart.
    assert [row["overlay"] for row in a] == [f"{d}_{i:03d}_overlay.png" for d in ("good", "hole", "stain") for i in (0, 1)]
    assert all((tmp_path / "a" / row["overlay"]).is_file() for row in a)


def test_default_output_is_predictions_in_the_current_folder(synthetic_root, fitted, tmp_path, monkeypatch):
    _, folder = fitted
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(image_of(synthetic_root)), "--model", str(folder)]) == 0
    assert (tmp_path / "predictions" / "scores.csv").is_file()


def no_download(name):
    raise AssertionError("predict must refuse other weights before fetching any")


def test_other_weights_are_refused_before_anything_is_built(synthetic_root, fitted, tmp_path, monkeypatch, capsys):
    _, folder = fitted
    monkeypatch.setattr("bench.backbone._imagenet_file", no_download)
    other = tmp_path / "other.pdparams"
    other.write_bytes(b"not the model's weights")
    image = str(image_of(synthetic_root))
    for weights, given in (("imagenet", "imagenet"), (str(other), "file-")):
        code = main(["predict", image, "--model", str(folder), "--weights", weights, "--output", str(tmp_path / "out")])
        assert code == 2
        error = capsys.readouterr().err
        assert f"error: model {folder} was fitted on features from weights random-seed0, but is given weights {given}" in error
        assert "leave --weights out (or pass --weights random)" in error.lower()
    assert not (tmp_path / "out").exists()


def test_a_missing_image_is_named(synthetic_root, fitted, tmp_path, capsys):
    _, folder = fitted
    missing = tmp_path / "nowhere" / "lost.png"
    code = main(["predict", str(image_of(synthetic_root)), str(missing), "--model", str(folder),
                 "--output", str(tmp_path / "out")])
    assert code == 2
    assert f"error: cannot read image {missing}" in capsys.readouterr().err
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_a_missing_model_is_named(synthetic_root, tmp_path, capsys):
    assert main(["predict", str(image_of(synthetic_root)), "--model", str(tmp_path / "none")]) == 2
    assert f"error: model {tmp_path / 'none'} does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A resnet18 state dict as a user would keep it in a ``.pdparams`` file."""
    import paddle

    path = tmp_path_factory.mktemp("weights") / "mine.pdparams"
    state = paddle.get_rng_state()  # other tests never see the draws of this initialisation
    paddle.save(paddle.vision.models.resnet18(num_classes=-1).state_dict(), str(path))
    paddle.set_rng_state(state)
    return path


def resaved(fitted, folder, weights_id, weights_used):
    """The fitted method saved again as if its features had come from other weights."""
    method, _ = fitted
    return save_model(method, folder, backbone="resnet18", weights_id=weights_id, weights_used=weights_used,
                      resize=RESIZE, crop=CROP, layers=PatchCore.layers)


def test_a_model_of_a_weights_file_needs_that_file(synthetic_root, fitted, weights_file, cache_dir, tmp_path, capsys):
    identity = Backbone("resnet18", weights=weights_file, cache_dir=cache_dir).weights_id
    folder = resaved(fitted, tmp_path / "model", identity, f"file:{weights_file.name}")
    image = str(image_of(synthetic_root))
    run = ["predict", image, "--model", str(folder), "--output", str(tmp_path / "out")]

    assert main(run) == 2
    assert "pass --weights PATH/TO/mine.pdparams (the file whose sha256 starts with" in capsys.readouterr().err
    copy = tmp_path / "copy.pdparams"
    shutil.copyfile(weights_file, copy)
    with open(copy, "ab") as f:
        f.write(b"\0")  # one byte more: another file
    assert main([*run, "--weights", str(copy)]) == 2
    assert f"from weights {identity}, but is given weights file-" in capsys.readouterr().err
    assert main([*run, "--weights", str(weights_file)]) == 0


def test_imagenet_model_offline_is_refused_then_takes_the_imagenet_file(
        synthetic_root, fitted, weights_file, tmp_path, monkeypatch, capsys):
    folder = resaved(fitted, tmp_path / "model", "imagenet", "imagenet")
    image = str(image_of(synthetic_root))
    run = ["predict", image, "--model", str(folder), "--output", str(tmp_path / "out")]

    def offline(name):
        raise OSError("cannot reach the weights host")

    monkeypatch.setattr("bench.backbone._imagenet_file", offline)
    assert main(run) == 2
    error = capsys.readouterr().err
    assert "features come from a random initialisation" in error  # Backbone's own warning
    assert f"model {folder} was fitted on features from weights imagenet, but is given weights random-seed0" in error
    assert "pass --weights the path of Paddle's ImageNet resnet18.pdparams (its md5 is checked)" in error

    # Stand-in for Paddle's published file: the md5 Paddle lists is the one of our file.
    from paddle.vision.models import resnet

    md5 = hashlib.md5(weights_file.read_bytes()).hexdigest()
    monkeypatch.setitem(resnet.model_urls, "resnet18", (resnet.model_urls["resnet18"][0], md5))
    assert main([*run, "--weights", str(weights_file)]) == 0
    monkeypatch.setitem(resnet.model_urls, "resnet18", (resnet.model_urls["resnet18"][0], "0" * 32))
    assert main([*run, "--weights", str(weights_file)]) == 2
    assert "from weights imagenet, but is given weights file-" in capsys.readouterr().err


def test_overlay_blends_the_colormap_from_low_to_high():
    assert predict.overlay is figures.overlay  # one overlay, the report's
    grey = np.full((2, 2, 3), 100, np.uint8)
    heat = np.array([[0.0, 1.0], [2.0, 9.0]])
    out = figures.overlay(grey, heat, low=0.0, high=2.0).astype(int)
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 2] > out[0, 0, 0]  # lowest: blue
    assert out[1, 0, 0] > out[1, 0, 2]  # highest: red
    np.testing.assert_array_equal(out[1, 1], out[1, 0])  # above the scale: clipped to red
    assert (out >= 50).all() and (out <= 50 + 128).all()  # half image, half colour


def test_output_names_tell_images_apart():
    names = predict.output_names([Path("/d/good/000.png"), Path("/d/crack/000.png"), Path("/d/good/000.png"),
                                  Path("/d/x/a.png"), Path("/d/x/a.jpg"), Path("/e/good_000.png"),
                                  Path("/f/b.png")])
    assert names[:3] == ["good_000", "crack_000", "good_000"]
    assert names[3:5] == ["x_a-2", "x_a-1"]  # same folder and stem: numbered in path order (a.jpg first)
    assert names[5] == "e_good_000"         # its own folder, as every image: no clash with good/000.png
    assert names[6] == "f_b"


def test_output_names_always_name_the_folder():
    # The issue: stain/001.png was "001" when no other image of the call had stem 001.
    assert predict.output_names([Path("/d/good/000.png"), Path("/d/hole/000.png"), Path("/d/stain/001.png")]) \
        == ["good_000", "hole_000", "stain_001"]
    assert predict.output_names([Path("/d/stain/001.png")]) == ["stain_001"]
    # More folders only where one is not enough, and only for the images that need them.
    assert predict.output_names([Path("/p/good/000.png"), Path("/q/good/000.png"), Path("/q/stain/001.png")]) \
        == ["p_good_000", "q_good_000", "stain_001"]
    # Two names that read the same from different folders, with no folder left: numbered, never equal.
    names = predict.output_names([Path("/a_b/c.png"), Path("/a/b_c.png"), Path("/z/a_b_c-1.png")])
    assert len(set(names)) == 3 and names[2] == "z_a_b_c-1"


def test_default_output_folder_is_git_ignored():
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "predictions/scores.csv"], cwd=root)
    assert ignored.returncode == 0, "predict's default output folder predictions/ is not in .gitignore"
    assert predict.parser().get_default("output") == Path("predictions")

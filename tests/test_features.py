"""Features are extracted once per category and backbone, persist on disk, and survive corruption;
one failing category does not sink a run, and --resume finishes it."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.backbone import Backbone
from bench.cli import main, parse
from bench.features import DiskEntry
from bench.plugins import available_methods
from bench.runner import run
from methods.base import AnomalyMethod, Prediction
from methods.maps import anomaly_map

SMALL = ["--resize", "72", "--crop", "64", "--weights", "random"]
ACCURACY = ["image_auroc", "pixel_auroc", "pro", "image_ap", "pixel_ap"]


class CountingBackbone:
    """A real backbone that records every extraction it is asked for."""

    def __init__(self):
        self.inner = Backbone("resnet18", weights="random", seed=0)
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def extract(self, images, layers, batch_size=8, progress=None):
        self.calls.append((len(images), tuple(layers)))
        return self.inner.extract(images, layers, batch_size=batch_size, progress=progress)


@pytest.fixture(scope="module")
def backbone():
    return CountingBackbone()


def bench_run(backbone, root, out, *extra, methods="patchcore,padim,spade", category="weave,chip", extra_methods=()):
    """A run of ``methods`` (by name) and ``extra_methods`` (classes, run first) through ``backbone``."""
    argv = ["--data-path", str(root), "--category", category, "--methods", methods,
            "--output", str(out), *SMALL, *extra]
    options, manager = parse(argv)
    options.argv = argv
    registered = available_methods(manager)
    chosen = {cls.name: cls for cls in extra_methods}
    chosen.update({name: registered[name] for name in methods.split(",")})
    backbone.calls.clear()
    return run(options, chosen, root, backbones={"resnet18": backbone})


class InPlaceCentering(AnomalyMethod):
    """A careless plugin: centres the shared layer2 features in place."""

    name = "inplace"
    layers = ("layer2",)

    def fit(self, features):
        layer2 = features["layer2"]
        layer2 -= layer2.mean(axis=0)  # silently changes every later method's input, unless read-only
        return self


class Layer4Norm(AnomalyMethod):
    """A plugin that reads layer4: its presence must not change what avgpool means for others."""

    name = "layer4norm"
    layers = ("layer4",)

    def fit(self, features):
        return self

    def predict(self, features):
        grid = np.sqrt((features["layer4"] ** 2).sum(axis=1))
        maps = anomaly_map(grid, features.image_size)
        return Prediction(scores=maps.reshape(len(maps), -1).max(axis=1), maps=maps)


def test_three_methods_share_one_extraction_per_split(backbone, synthetic_root, tmp_path):
    result = bench_run(backbone, synthetic_root, tmp_path, "--no-cache")
    # weave and chip, train and test: four forward passes over the images, no more.
    assert len(backbone.calls) == 4
    assert all(set(layers) == {"avgpool", "layer1", "layer2", "layer3"} for _, layers in backbone.calls)
    assert sorted(result.results["method"].unique()) == ["padim", "patchcore", "spade"]
    assert len(result.results) == 6
    assert not result.results["features_from_cache"].any()


def test_second_run_extracts_nothing_and_gives_the_same_numbers(backbone, synthetic_root, tmp_path):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    first = bench_run(backbone, synthetic_root, tmp_path / "a", *cache, methods="patchcore")
    assert len(backbone.calls) == 4
    second = bench_run(backbone, synthetic_root, tmp_path / "b", *cache, methods="patchcore")
    assert backbone.calls == []
    assert second.results["features_from_cache"].all()
    pd.testing.assert_frame_equal(first.results[ACCURACY], second.results[ACCURACY])

    # PaDiM adds layer1: only what is missing is extracted, the rest comes from disk.
    third = bench_run(backbone, synthetic_root, tmp_path / "c", *cache, methods="patchcore,padim")
    assert [layers for _, layers in backbone.calls] == [("layer1",)] * 4
    pd.testing.assert_frame_equal(first.results[ACCURACY],
                                  third.results[third.results["method"] == "patchcore"][ACCURACY]
                                  .reset_index(drop=True))


def test_corrupted_cache_entry_is_reported_and_rebuilt(backbone, synthetic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = bench_run(backbone, synthetic_root, tmp_path / "a", "--cache-dir", str(cache),
                      methods="patchcore", category="weave")
    victim = sorted(cache.glob("*/layer2-*.npy"))[0]  # <layer>-<crc32 hex>.npy
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    capsys.readouterr()
    again = bench_run(backbone, synthetic_root, tmp_path / "b", "--cache-dir", str(cache),
                      methods="patchcore", category="weave")
    assert str(victim) in capsys.readouterr().err
    assert str(victim) in (again.run_dir / "run.log").read_text()
    assert len(backbone.calls) == 1  # only the damaged split is extracted again
    pd.testing.assert_frame_equal(first.results[ACCURACY], again.results[ACCURACY])
    bench_run(backbone, synthetic_root, tmp_path / "c", "--cache-dir", str(cache),
              methods="patchcore", category="weave")
    assert backbone.calls == []  # and the rebuilt entry is whole


def test_cache_command_lists_and_clears(backbone, synthetic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    bench_run(backbone, synthetic_root, tmp_path / "a", "--cache-dir", str(cache),
              methods="patchcore", category="weave")
    capsys.readouterr()
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("weave") == 2 and "2 entries" in listing and "layer2,layer3" in listing
    # Not the cache's: a folder without a manifest and a loose file must survive "clear".
    (cache / "holiday_photos").mkdir()
    (cache / "holiday_photos" / "beach.png").write_bytes(b"not features")
    (cache / "notes.txt").write_text("mine")
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "removed 2 entries" in out
    assert "left alone 2 item(s)" in out and "holiday_photos" in out and "notes.txt" in out
    assert sorted(p.name for p in cache.iterdir()) == ["holiday_photos", "notes.txt"]
    assert (cache / "holiday_photos" / "beach.png").read_bytes() == b"not features"


class PoisoningBackbone(CountingBackbone):
    """Extracts correctly, then loses the last image, as a skipped batch would leave it (NaN)."""

    def extract(self, images, layers, batch_size=8, progress=None):
        features = super().extract(images, layers, batch_size=batch_size, progress=progress)
        for array in features.values():
            array[-1] = np.nan
        return features


def test_features_that_are_not_whole_are_never_cached(synthetic_root, tmp_path):
    cache = tmp_path / "cache"
    result = bench_run(PoisoningBackbone(), synthetic_root, tmp_path / "a", "--cache-dir", str(cache),
                       methods="patchcore", category="weave")
    (error,) = result.results["error"]
    assert "unusable layer2 features for weave/train" in error and "nothing was cached" in error
    assert not list(cache.glob("*/*.npy"))


def test_batch_size_below_one_stops_before_the_cache_is_touched(synthetic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as exit_info:
        main(["--data-path", str(synthetic_root), "--category", "weave", "--methods", "patchcore",
              "--output", str(tmp_path / "runs"), "--cache-dir", str(cache), "--batch-size", "-3", *SMALL])
    assert exit_info.value.code == 2
    assert not cache.exists() and not (tmp_path / "runs").exists()


def test_cached_layer_with_nan_is_reported_and_extracted_again(backbone, synthetic_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = bench_run(backbone, synthetic_root, tmp_path / "a", "--cache-dir", str(cache),
                      methods="patchcore", category="weave")
    # A poisoned entry whose checksums agree: only looking at the values can tell.
    layer2 = sorted(cache.glob("*/layer2-*.npy"))[0]
    folder = layer2.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    poisoned = np.load(layer2)
    poisoned[:] = np.nan
    DiskEntry(folder, manifest["description"]).store({"layer2": poisoned})
    capsys.readouterr()
    again = bench_run(backbone, synthetic_root, tmp_path / "b", "--cache-dir", str(cache),
                      methods="patchcore", category="weave")
    assert "NaN or infinite" in capsys.readouterr().err
    assert len(backbone.calls) == 1
    pd.testing.assert_frame_equal(first.results[ACCURACY], again.results[ACCURACY])


def test_a_method_writing_into_shared_features_fails_alone(backbone, synthetic_root, tmp_path):
    alone = bench_run(backbone, synthetic_root, tmp_path / "a", "--no-cache", methods="patchcore", category="weave")
    both = bench_run(backbone, synthetic_root, tmp_path / "b", "--no-cache", methods="patchcore", category="weave",
                     extra_methods=[InPlaceCentering])
    rows = both.results.set_index("method")
    assert "method 'inplace'" in rows.loc["inplace", "error"]
    assert "wrote into its input features" in rows.loc["inplace", "error"]
    assert pd.isna(rows.loc["patchcore"].get("error"))
    np.testing.assert_allclose(rows.loc[["patchcore"], ACCURACY].to_numpy(float),
                               alone.results[ACCURACY].to_numpy(float), atol=1e-9)


def test_a_method_gets_the_same_features_whatever_else_runs(backbone, synthetic_root, tmp_path):
    alone = bench_run(backbone, synthetic_root, tmp_path / "a", "--no-cache", methods="spade", category="chip")
    both = bench_run(backbone, synthetic_root, tmp_path / "b", "--no-cache", methods="spade", category="chip",
                     extra_methods=[Layer4Norm])
    spade = both.results[both.results["method"] == "spade"]
    # Another layer set traces another graph, whose kernels may round differently: hence a tolerance.
    np.testing.assert_allclose(spade[ACCURACY].to_numpy(float), alone.results[ACCURACY].to_numpy(float),
                               atol=1e-4)


def test_failed_category_is_recorded_and_resume_finishes_the_run(category_copy, synthetic_root, tmp_path, capsys):
    root = category_copy("weave")
    shutil.copytree(synthetic_root / "chip", root / "chip")
    image = sorted((root / "chip" / "test" / "good").glob("*.png"))[0]
    good_bytes = image.read_bytes()
    image.write_bytes(b"\x89PNG broken")
    argv = ["--data-path", str(root), "--methods", "patchcore,padim", "--output", str(tmp_path / "runs"),
            "--no-cache", *SMALL]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(image) in err and "Traceback" not in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    partial = pd.read_csv(run_dir / "results.csv")
    assert partial[partial["category"] == "weave"]["error"].isna().all()
    assert partial[partial["category"] == "chip"]["error"].str.contains(image.name).all()
    assert "### Failures" in (run_dir / "results.md").read_text()

    image.write_bytes(good_bytes)
    assert main(["--resume", str(run_dir)]) == 0
    final = pd.read_csv(run_dir / "results.csv")
    assert final[["category", "method"]].values.tolist() == [
        ["chip", "patchcore"], ["chip", "padim"], ["weave", "patchcore"], ["weave", "padim"]]
    assert "error" not in final or final["error"].isna().all()
    # Finished rows were kept as they were, not recomputed.
    kept = partial[partial["category"] == "weave"].reset_index(drop=True)
    pd.testing.assert_frame_equal(final[final["category"] == "weave"].reset_index(drop=True)[kept.columns.drop("error")],
                                  kept.drop(columns="error"), check_dtype=False)

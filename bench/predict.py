"""``bench.py predict IMAGE... --model PATH``: score images with a saved model and draw heat maps.

The backbone, its weights, the image geometry and the layers all come from the
model's header (see ``bench.models``), so the features are the ones the model
was fitted on; ``--weights`` only says where to find weights the model names
but cannot rebuild by itself (a file, or ImageNet weights on an offline machine).

Per image, in the output folder (``--output``, default ``predictions/`` in the
current folder, which the repository's ``.gitignore`` leaves out):

- a row of ``scores.csv`` (``image,score,map_max,overlay``; scores in full
  precision) and a line ``image  score`` on the terminal;
- ``<parent>_<stem>_overlay.png``: the image as the network saw it (resized,
  center cropped, ``crop x crop``) under its anomaly map in the ``jet``
  colormap at alpha 0.5. ``<parent>`` is the image's folder, always:
  ``stain/001.png`` gives ``stain_001_overlay.png`` whatever else the call
  holds. Only images that would still share a name get more parent folders in
  front, one at a time until the names differ (``a/good/000.png`` and
  ``b/good/000.png`` give ``a_good_000_overlay.png`` and
  ``b_good_000_overlay.png``); images no folder tells apart (``x/a.png`` and
  ``x/a.jpg``) are numbered in path order (``x_a-1_overlay.png``,
  ``x_a-2_overlay.png``). ``output_names`` is the rule.

All overlays of one call share one colour scale, blue at the lowest and red at
the highest map value over the images of the call, so colours compare between
images (with a single image the scale is that image's own range).
"""

from __future__ import annotations

import argparse
import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import PatchbenchError
from bench.filehash import file_digests
from bench.model_compat import check_compatible
from bench.model_weights import (
    IMAGENET, file_weights_id, is_file_id, random_seed, random_weights_id, weights_advice,
)
from bench.models import load_model
from bench.plugins import available_methods, plugin_manager
from reports.atomic import write_atomic, write_text_atomic
from reports.figures import overlay

# Images read, extracted and predicted at a time: bounds the feature memory whatever the number of images.
IMAGES_PER_STEP = 32


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py predict",
        description="Score images with a saved model; write scores.csv and a heat-map overlay per image.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files to score")
    p.add_argument("--model", type=Path, required=True,
                   help="a saved model folder (a run with --save-models writes <run>/models/<category>/<method>)")
    p.add_argument("--output", type=Path, default=Path("predictions"),
                   help="folder for scores.csv and the overlays (default: ./predictions, git-ignored)")
    p.add_argument("--weights", default=None,
                   help="where the model's backbone weights are: needed for a model fitted with a weights "
                        "file (its path; the sha256 is checked), or the path of Paddle's ImageNet .pdparams "
                        "when they cannot be downloaded (the md5 is checked). Default: what the model names")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where the backbone runs (default: the GPU when Paddle has one)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="load the plugin of a method that is not built in (repeatable)")
    return p


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    methods = available_methods(plugin_manager(options.plugin))
    method, header = load_model(options.model, methods)
    backbone = model_backbone(header, options.weights, options.device)
    scores, maps = predict_images(method, backbone, header, options.images, options.batch_size)
    names = [f"{name}_overlay.png" for name in output_names(options.images)]
    write_outputs(options.output, header, options.images, names, scores, maps)
    width = max(len(str(p)) for p in options.images)
    print(f"{'image':<{width}}  score")
    for path, score in zip(options.images, scores):
        print(f"{str(path):<{width}}  {score:.6g}")
    print(f"wrote {len(names)} overlay{'' if len(names) == 1 else 's'} and scores.csv to {options.output}")
    return 0


# -- the model's backbone ---------------------------------------------------------


def model_backbone(header: dict, weights: str | None, device: str):
    """The Backbone that gives the model's features; refuses weights other than the model's.

    The identity ``weights`` promises is checked before anything is built, so a
    mismatch costs no download or model load; the built Backbone is checked
    again (ImageNet weights that cannot be had fall back to random ones).
    """
    from bench.backbone import Backbone

    saved = header["weights_id"]
    seed = random_seed(saved)
    if weights is None:
        if is_file_id(saved):
            raise PatchbenchError(
                f"model {header['path']} was fitted with backbone weights from a file "
                f"({header['weights_used']}); {weights_advice(header)}"
            )
        if seed is None and saved != IMAGENET:
            raise PatchbenchError(f"model {header['path']} names backbone weights {saved!r}, which this "
                                  "patchbench does not know; pass --weights PATH to them")
        weights = "random" if seed is not None else "imagenet"
    if weights == "random":
        promised = random_weights_id(0 if seed is None else seed)
    elif weights == "imagenet":
        promised = IMAGENET
    else:
        promised = weights_file_id(Path(weights), header)
    check_weights(header, promised)
    backbone = Backbone(header["backbone"], weights=weights, seed=seed or 0, device=device)
    # A file checked to be Paddle's ImageNet weights gets a file id from Backbone; it stands for "imagenet".
    built = IMAGENET if promised == IMAGENET and is_file_id(backbone.weights_id) else backbone.weights_id
    check_weights(header, built)
    return backbone


def check_weights(header: dict, weights_id: str) -> None:
    # Backbone, resize and crop always come from the model here; only the weights can differ.
    advice = weights_advice(header)
    check_compatible(header, backbone=header["backbone"], weights_id=weights_id,
                     resize=header["resize"], crop=header["crop"], fix=advice[:1].upper() + advice[1:])


def weights_file_id(path: Path, header: dict) -> str:
    """``Backbone``'s identity of a weights file, or ``"imagenet"`` for Paddle's published ImageNet file."""
    if not path.is_file():
        raise PatchbenchError(f"weights file {path} does not exist; {weights_advice(header)}")
    digests = file_digests(path, "sha256", "md5")
    if header["weights_id"] == IMAGENET and digests["md5"] == imagenet_md5(header["backbone"]):
        return IMAGENET
    return file_weights_id(digests["sha256"])


def imagenet_md5(backbone: str) -> str | None:
    from bench.paddle_import import paddle

    paddle()  # Paddle's CPU environment set, its import noise dropped
    from paddle.vision.models.resnet import model_urls

    return model_urls[backbone][1] if backbone in model_urls else None


# -- scoring ------------------------------------------------------------------------


def predict_images(method, backbone, header: dict, paths: list[Path], batch_size: int = 8):
    """Scores ``[N]`` float64 and anomaly maps ``[N, crop, crop]`` float32 of the images at ``paths``."""
    from bench.units import check_prediction
    from datasets import read_images
    from methods.base import FeatureSet

    layers, size = tuple(header["layers"]), tuple(header["image_size"])
    scores = np.empty(len(paths), dtype=np.float64)
    maps = np.empty((len(paths), *size), dtype=np.float32)
    for start in range(0, len(paths), IMAGES_PER_STEP):
        chunk = paths[start : start + IMAGES_PER_STEP]
        images = read_images(chunk, resize=header["resize"], crop=header["crop"])
        features = FeatureSet(backbone.extract(images, layers, batch_size=batch_size), image_size=size)
        prediction = method.predict(features)
        check_prediction(method.name, prediction, len(chunk), size)
        scores[start : start + len(chunk)] = prediction.scores
        maps[start : start + len(chunk)] = prediction.maps
    return scores, maps


# -- outputs --------------------------------------------------------------------------


def output_names(paths: list[Path]) -> list[str]:
    """One file-name stem per image: the same for the same file, different for different files.

    ``<parent>_<stem>`` (``stain/001.png`` -> ``stain_001``), whatever else the
    call holds, so a name can be told from the path alone. Only where two
    different files would get the same name do those files get one more parent
    folder in front, then another, until the names differ
    (``a/good/000.png``, ``b/good/000.png`` -> ``a_good_000``, ``b_good_000``).
    Files no folder tells apart (``x/a.png``, ``x/a.jpg``) are numbered in path
    order: ``x_a-1``, ``x_a-2``.
    """
    resolved = [Path(p).resolve() for p in paths]
    unique = sorted(set(resolved))
    depth = dict.fromkeys(unique, 1)
    while True:
        deeper = [p for group in clashes({p: prefixed_stem(p, depth[p]) for p in unique})
                  if len({q.parent for q in group}) > 1  # another folder can still tell them apart
                  for p in group if depth[p] < len(p.parent.parts) - 1]
        if not deeper:
            break
        for path in deeper:
            depth[path] += 1
    chosen = {p: prefixed_stem(p, depth[p]) for p in unique}
    taken = set(chosen.values())
    for group in clashes(chosen):
        for path in group:
            chosen[path] = numbered(chosen[path], taken)
    return [chosen[p] for p in resolved]


def clashes(names: dict[Path, str]) -> list[list[Path]]:
    """The groups of paths (each in path order) that share a name."""
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(names):
        by_name[names[path]].append(path)
    return [group for group in by_name.values() if len(group) > 1]


def numbered(name: str, taken: set[str]) -> str:
    """``name-1``, or the next number not in ``taken`` (another file may be called ``a-1``); added to it."""
    number = 1
    while f"{name}-{number}" in taken:
        number += 1
    taken.add(f"{name}-{number}")
    return f"{name}-{number}"


def prefixed_stem(path: Path, depth: int) -> str:
    """The stem after the names of its ``depth`` nearest parent folders, joined by ``_``."""
    parents = path.parent.parts[1:]  # not the root "/"
    return "_".join([*parents[max(0, len(parents) - depth):], path.stem])


def network_view(path: Path, resize: int, crop: int) -> np.ndarray:
    """The image as the backbone saw it, before normalisation: ``[crop, crop, 3]`` uint8."""
    from datasets.transforms import load_rgb, resize_crop

    return np.asarray(resize_crop(load_rgb(path), resize, crop, Image.BILINEAR))


def write_outputs(folder: Path, header: dict, paths: list[Path], names: list[str],
                  scores: np.ndarray, maps: np.ndarray) -> None:
    """Write the overlays, then ``scores.csv`` (last, so it only lists overlays that exist)."""
    folder = Path(folder)
    low, high = float(maps.min()), float(maps.max())
    for path, name, anomaly_map in zip(paths, names, maps):
        image = Image.fromarray(overlay(network_view(path, header["resize"], header["crop"]), anomaly_map, low, high))
        write_atomic(folder / name, lambda tmp, image=image: image.save(tmp, format="PNG"))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["image", "score", "map_max", "overlay"])
    for path, name, score, anomaly_map in zip(paths, names, scores, maps):
        # repr: the shortest text that reads back as the same float64.
        writer.writerow([str(path), repr(float(score)), repr(float(anomaly_map.max())), name])
    write_text_atomic(folder / "scores.csv", table.getvalue())

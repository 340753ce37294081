"""Backbone features of each (category, split), extracted once and shared by every method.

Every method of a run asks for a subset of the same layers, so the harness
extracts the union of those layers once per split and hands each method the
same arrays. With a cache folder, features also persist between runs:

``<cache>/<key>/manifest.json`` plus one ``<layer>.npy`` per layer, where
``key`` is a hash of everything that changes the features: the image files
(path, size, modification time), category, split, backbone, weights identity,
resize and crop. Layers are stored one file each, so a later run that needs
another layer extracts only what is missing and keeps the rest. Every file is
written atomically and the manifest records each layer's shape and CRC-32, so a
truncated or corrupted entry is detected, reported and rebuilt.

Nothing reaches the disk or a method unless it is what a correct extraction
gives: one row per image, every value finite (the backbone leaves NaN where it
wrote nothing). Methods get read-only arrays, because every method of the run
shares them: a method that wrote into its input would change the next one's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from bench.errors import PatchbenchError
from bench.filehash import file_crc32
from bench.log import logger, progress
from datasets import Sample, read_images
from datasets.cache_root import cache_root
from methods.base import FeatureSet
from reports.atomic import write_atomic, write_text_atomic

# 2: avgpool is always layer4's pool, and entries are checked before they are written.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``<cache root>/features`` (``datasets.cache_root``: ``$PATCHBENCH_CACHE``, else ``~/.cache/patchbench``)."""
    return cache_root() / "features"


@dataclass
class Extraction:
    """Features of one split and what they cost: ``seconds`` to extract (or load), and from where."""

    features: FeatureSet
    seconds: float
    from_cache: bool


def entry_key(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def describe(samples: list[Sample], category: str, split: str, backbone, resize: int, crop: int) -> dict:
    """Everything that changes a split's features, as JSON-able data."""
    files = []
    for sample in samples:
        stat = Path(sample.image_path).stat()
        files.append([str(Path(sample.image_path).resolve()), stat.st_size, stat.st_mtime_ns])
    return {
        "version": FORMAT_VERSION,
        "category": category,
        "split": split,
        "backbone": backbone.name,
        "weights": backbone.weights_id,
        "resize": resize,
        "crop": crop,
        "files": files,
    }


class DiskEntry:
    """One cache entry: a folder of per-layer ``.npy`` files and their manifest."""

    def __init__(self, folder: Path, description: dict):
        self.folder = folder
        self.description = description

    def _manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.exists():
            return {"description": self.description, "layers": {}}
        return json.loads(path.read_text())

    def load(self, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The stored layers among ``layers`` that pass their checks; bad ones are reported and dropped."""
        try:
            stored = self._manifest()["layers"]
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("warning: feature cache entry %s has an unreadable manifest (%s); rebuilding it",
                           self.folder, exc)
            shutil.rmtree(self.folder, ignore_errors=True)
            return {}
        found = {}
        n_images = len(self.description["files"])
        for layer in layers:
            if layer not in stored:
                continue
            info, path = stored[layer], self.folder / stored[layer]["file"]
            try:
                if file_crc32(path) != info["crc32"]:
                    raise ValueError("checksum mismatch")
                array = np.load(path, allow_pickle=False)
                if list(array.shape) != info["shape"]:
                    raise ValueError(f"shape {array.shape} instead of {info['shape']}")
                problem = feature_problem(array, n_images)
                if problem:
                    raise ValueError(problem)
            except (OSError, ValueError) as exc:
                logger.warning("warning: feature cache file %s is truncated or corrupted (%s); "
                               "extracting it again", path, exc)
                continue
            found[layer] = array
        return found

    def store(self, arrays: dict[str, np.ndarray]) -> None:
        """Add ``arrays`` to the entry; the manifest is rewritten last, so it never names a partial file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            manifest = self._manifest()
        except (OSError, ValueError):
            manifest = {"description": self.description, "layers": {}}
        if not (self.folder / MANIFEST).exists():
            # The manifest marks the folder as the cache's (``cache clear`` deletes nothing else),
            # so it is there before any layer file, even if this store is interrupted.
            write_text_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1))
        for layer, array in arrays.items():
            path = write_atomic(self.folder / f"{layer}.npy",
                                lambda tmp, a=array: _save_npy(tmp, a))
            manifest["layers"][layer] = {"file": path.name, "shape": list(array.shape),
                                         "dtype": str(array.dtype), "bytes": path.stat().st_size,
                                         "crc32": file_crc32(path)}
        write_text_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1))


def feature_problem(array: np.ndarray, n_images: int) -> str | None:
    """Why ``array`` cannot be one layer's features of ``n_images`` images, or None if it can."""
    if array.ndim < 2 or len(array) != n_images:
        return f"shape {array.shape}, not one row per image ({n_images})"
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
        return f"{bad} of {n_images} images have NaN or infinite values"
    return None


def read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same arrays, marked read-only, so a method cannot change what the next one gets."""
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object, so NumPy does not append ".npy" to the name
        np.save(f, array, allow_pickle=False)


class FeatureCache:
    """Extracts the union of the run's layers for a split, keeps it for the run, and on disk.

    ``cache_dir=None`` keeps features in memory only (``--no-cache``).
    """

    def __init__(self, backbone, layers: tuple[str, ...], resize: int, crop: int, batch_size: int = 8,
                 cache_dir: Path | None = None):
        self.backbone = backbone
        self.layers = tuple(layers)
        self.resize = resize
        self.crop = crop
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._entries: dict[tuple[str, str], Extraction] = {}

    def get(self, category: str, split: str, samples: list[Sample]) -> Extraction:
        key = (category, split)
        if key not in self._entries:
            self._entries[key] = self._load_or_extract(category, split, samples)
        return self._entries[key]

    def drop(self, category: str) -> None:
        """Forget a finished category's features, so a run holds one category at a time."""
        for key in [k for k in self._entries if k[0] == category]:
            del self._entries[key]

    def _load_or_extract(self, category: str, split: str, samples: list[Sample]) -> Extraction:
        start = time.perf_counter()
        entry, found = None, {}
        if self.cache_dir is not None:
            description = describe(samples, category, split, self.backbone, self.resize, self.crop)
            entry = DiskEntry(self.cache_dir / entry_key(description), description)
            found = entry.load(self.layers)
        missing = tuple(layer for layer in self.layers if layer not in found)
        if missing:
            extracted = self._extract(samples, missing, f"{category}/{split}")
            for layer, array in extracted.items():
                problem = feature_problem(array, len(samples))
                if problem:
                    raise PatchbenchError(
                        f"the {self.backbone.name} backbone gave unusable {layer} features for {category}/{split} "
                        f"({problem}); nothing was cached. Check the weights (--weights) and --batch-size"
                    )
            if entry is not None:
                entry.store(extracted)
            found.update(extracted)
        layers = MappingProxyType(read_only({layer: found[layer] for layer in self.layers}))
        features = FeatureSet(layers, image_size=(self.crop, self.crop))
        return Extraction(features, time.perf_counter() - start, from_cache=not missing)

    def _extract(self, samples: list[Sample], layers: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
        images = read_images([s.image_path for s in samples], resize=self.resize, crop=self.crop)
        with progress(total=len(images), desc=f"features {what}", unit="img") as bar:
            return self.backbone.extract(images, layers, batch_size=self.batch_size,
                                         progress=lambda done, total: bar.update(done - bar.n))

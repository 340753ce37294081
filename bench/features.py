"""Backbone features of each (category, split), extracted once and shared by every method.

Every method of a run asks for a subset of the same layers, so the harness
extracts the union of those layers once per split and hands each method the
same arrays. With a cache folder, features also persist between runs:

``<cache>/<key>/manifest.json`` plus one ``<layer>-<crc32 hex>.npy`` per
layer, where ``key`` is a hash of everything that changes the features: the
image files (path, size, modification time), category, split, backbone,
weights identity, resize and crop. Layers are stored one file each, so a later
run that needs another layer extracts only what is missing and keeps the rest.
Every file is written atomically and the manifest records each layer's file,
shape and CRC-32, so a truncated or corrupted entry is detected, reported and
rebuilt.

Several worker processes may share one cache folder and store the same entry at
once, without a lock: a layer file is named by the CRC-32 of its own bytes, so
no writer ever renames different bytes over a file another writer's manifest
names, and whichever manifest is renamed last names only files that match it
(see ``DiskEntry.store``).

Nothing reaches the disk or a method unless it is what a correct extraction
gives: one row per image, every value finite (the backbone leaves NaN where it
wrote nothing). Methods get read-only arrays, because every method of the run
shares them: a method that wrote into its input would change the next one's.

On a GPU the methods' Paddle kernels read the same layers from the device:
``FeatureSet.tensor`` uploads a layer on its first use and shares it after;
``drop`` frees those copies with the category.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
from reports.atomic import write_text_atomic

# 2: avgpool is always layer4's pool, and entries are checked before they are written.
# Not bumped for the ``<layer>-<crc32>.npy`` names: every reader, old or new, opens the file the
# manifest names, so old readers read new entries and new readers old ones (``<layer>.npy``).
# A bump would only make every existing cache extract everything again.
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
    """One cache entry: a folder of per-layer ``.npy`` files and the manifest that names them."""

    def __init__(self, folder: Path, description: dict):
        self.folder = folder
        self.description = description

    def _manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.exists():
            return self._fresh_manifest()
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
        """Add ``arrays`` (layer name -> features, one row per image) to the entry; safe beside other writers.

        Workers sharing the cache may store the same entry at once, with bytes that differ in the
        last bits. Without a lock: each layer file is named by its own CRC-32 (``_write_layer``), so a
        file name always stands for the same bytes; the manifest is rewritten last, atomically, from
        the manifest on disk at that moment plus these layers. Whichever manifest is renamed last
        wins and names only files whose bytes match its records. A layer that only the losing
        writer stored may drop out of the entry; a later run extracts it again.

        A losing writer's files stay in the folder, named by no manifest, and so does a layer's
        previous file when it is stored again: deleting them could pull a file from under a reader
        that read the manifest just before it was replaced, and without a lock no writer can know.
        ``cache clear`` removes whole entry folders, these files included; ``cache list`` counts them.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / MANIFEST).exists():
            # The manifest marks the folder as the cache's (``cache clear`` deletes nothing else),
            # so it is there before any layer file, even if this store is interrupted. Racing
            # another writer's full manifest, this empty one can only drop layers, never misname one.
            write_text_atomic(self.folder / MANIFEST, json.dumps(self._fresh_manifest(), indent=1))
        written = {layer: _write_layer(self.folder, layer, array) for layer, array in arrays.items()}
        # Read as late as possible, so layers another writer stored meanwhile are kept.
        manifest = self._current_manifest()
        manifest["layers"].update(written)
        write_text_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1))

    def _fresh_manifest(self) -> dict:
        return {"description": self.description, "layers": {}}

    def _current_manifest(self) -> dict:
        """The manifest on disk, or a fresh one if it is unreadable (its files are then simply not named)."""
        try:
            manifest = self._manifest()
            if isinstance(manifest.get("layers"), dict):
                return manifest
        except (OSError, ValueError, AttributeError):
            pass
        return self._fresh_manifest()


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


def _write_layer(folder: Path, layer: str, array: np.ndarray) -> dict:
    """Save ``array`` as ``folder/<layer>-<crc32 hex>.npy``; its manifest record (file, shape, dtype, bytes, crc32).

    The CRC-32 is taken from the temporary file before the rename, so the record describes the
    bytes that land under that name whoever else stores the layer: a writer with other bytes
    renames them to another name, one with the same bytes replaces them with themselves. (Two
    writers' bytes with the same CRC would be the same layer's features to within rounding, of
    the same shape: either loads correctly under the other's record.)
    """
    tmp = _shared_temp_file(folder, prefix=f".{layer}.")
    try:
        _save_npy(tmp, array)
        crc, size = file_crc32(tmp), tmp.stat().st_size
        name = f"{layer}-{crc:08x}.npy"
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"file": name, "shape": list(array.shape), "dtype": str(array.dtype), "bytes": size, "crc32": crc}


def _shared_temp_file(folder: Path, prefix: str) -> Path:
    """A new empty file in ``folder`` with the usual mode, not mkstemp's private 0600.

    As ``reports.atomic.write_atomic`` does, which cannot be used here: it needs the final name
    before the bytes are written, and this name is the bytes' CRC. Other workers read the cache.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


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
        """Forget a finished category's features and free their device copies, so a run holds one
        category at a time, on the host and on the device."""
        for key in [k for k in self._entries if k[0] == category]:
            self._entries.pop(key).features.release()

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

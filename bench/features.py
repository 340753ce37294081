"""Backbone features of each (category, split), extracted once and shared by every method.

Every method of a run asks for a subset of the same layers, so the harness
extracts the union of those layers once per split and hands each method the
same arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets import Sample, read_images
from methods.base import FeatureSet


@dataclass
class Extraction:
    """Features of one split and what they cost: ``seconds`` of reading and forward passes."""

    features: FeatureSet
    seconds: float


class FeatureCache:
    """Extracts the union of the run's layers for a split and keeps the result for the run."""

    def __init__(self, backbone, layers: tuple[str, ...], resize: int, crop: int, batch_size: int = 8):
        self.backbone = backbone
        self.layers = tuple(layers)
        self.resize = resize
        self.crop = crop
        self.batch_size = batch_size
        self._entries: dict[tuple[str, str], Extraction] = {}

    def get(self, category: str, split: str, samples: list[Sample]) -> Extraction:
        key = (category, split)
        if key not in self._entries:
            self._entries[key] = self._extract(samples)
        return self._entries[key]

    def drop(self, category: str) -> None:
        """Forget a finished category's features, so a run holds one category at a time."""
        for key in [k for k in self._entries if k[0] == category]:
            del self._entries[key]

    def _extract(self, samples: list[Sample]) -> Extraction:
        start = time.perf_counter()
        images = read_images([s.image_path for s in samples], resize=self.resize, crop=self.crop)
        layers = self.backbone.extract(images, self.layers, batch_size=self.batch_size)
        seconds = time.perf_counter() - start
        return Extraction(FeatureSet(layers, image_size=(self.crop, self.crop)), seconds)

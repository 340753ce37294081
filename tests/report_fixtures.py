"""A small labelled test set for hand-written run folders: the reports' tests build runs on it."""

from pathlib import Path

import numpy as np

from datasets.mvtec import Sample


def tiny_test_set(good: int, bad: int, side: int) -> tuple[np.ndarray, np.ndarray, list[Sample]]:
    """``good`` then ``bad`` images: labels ``[N]`` int8, masks ``[N, side, side]`` (a 3 x 3 defect in each
    bad one) and their ``Sample``s (paths that need not exist)."""
    labels = np.repeat([0, 1], [good, bad]).astype(np.int8)
    masks = np.zeros((good + bad, side, side), dtype=np.uint8)
    masks[good:, 2:5, 2:5] = 1
    samples = [Sample(Path(f"img{i}.png"), int(y), "good" if y == 0 else "crack",
                      Path(f"mask{i}.png") if y else None) for i, y in enumerate(labels)]
    return labels, masks, samples

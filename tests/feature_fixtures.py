"""Small random backbone features for method tests: resnet-like layer1..layer3 and avgpool, shrunk."""

import numpy as np

from methods.base import FeatureSet


def random_features(n, seed, channels=(4, 6, 8), image_size=(32, 32)) -> FeatureSet:
    """``n`` images: layer1 ``[n, c1, 8, 8]``, layer2 ``[n, c2, 4, 4]``, layer3 ``[n, c3, 2, 2]``,
    avgpool ``[n, c3]``, all standard normal from ``seed``."""
    rng = np.random.default_rng(seed)
    c1, c2, c3 = channels
    return FeatureSet(
        {
            "layer1": rng.normal(size=(n, c1, 8, 8)).astype(np.float32),
            "layer2": rng.normal(size=(n, c2, 4, 4)).astype(np.float32),
            "layer3": rng.normal(size=(n, c3, 2, 2)).astype(np.float32),
            "avgpool": rng.normal(size=(n, c3)).astype(np.float32),
        },
        image_size=image_size,
    )

"""Seeded synthetic patch features for the coreset's tests and timings: texture-like and object-like.

``bench.profile_inputs.patch_like_features`` is object-like (a few scene clusters
around a low-dimensional latent); ``gaussian_features`` there is the worst case (no
structure at all). Texture features sit between: a stochastic texture repeats the
same few local patterns everywhere, so its CNN patch features spread over many
directions at once (high intrinsic dimension) with only weakly separated modes.
"""

from __future__ import annotations

import numpy as np


def texture_like_features(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 post-ReLU features shaped like CNN patch features of a texture, seeded.

    Each point mixes a 96-dim latent with a slowly decaying spectrum (so after the
    128-dim projection no few directions hold most of the variance) around one of
    64 modes set about one noise width apart (weak clustering), plus broad
    per-channel noise, then ReLU.
    """
    rng = np.random.default_rng(seed)
    latent, modes = 96, 64
    scale = (1.0 / np.arange(1, latent + 1) ** 0.35).astype(np.float32)
    centres = 0.8 * rng.standard_normal((modes, latent), dtype=np.float32)
    z = centres[rng.integers(modes, size=n)] + rng.standard_normal((n, latent), dtype=np.float32)
    mixing = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(np.sqrt(latent / 8))
    x = (z * scale) @ mixing
    x += 0.4 * rng.standard_normal((n, dim), dtype=np.float32)
    x += 0.5  # a positive bias: post-ReLU features are mostly non-zero
    return np.maximum(x, 0, out=x)

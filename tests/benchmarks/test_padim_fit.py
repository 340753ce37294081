"""Latency of PaDiM's fit (pytest-benchmark; see "Latency tracking" in the README).

Two seeded sizes that run in about a second each: resnet18 at 224 x 224 with
40 training images (3,136 Gaussians of d = 100), and Wide-ResNet-50-2's d = 550
of 1,792 channels on a 14 x 14 grid with 100 images (196 Gaussians). Plain
``pytest`` runs each once, untimed; each checks one Gaussian against float64
``np.cov``. ``methods.gaussians.fit_flop`` gives the FLOP count of each
(3.3 and 28 GFLOP) for a GFLOP/s figure.
"""

import numpy as np
import pytest

from bench.profile_inputs import FULL, resnet18_features
from methods.base import FeatureSet
from methods.gaussians import unpack_upper
from methods.padim import Padim

PYRAMID = ("layer1", "layer2", "layer3")


def wide_resnet_like(n, side, seed):
    """Wide-ResNet-50-2's layer1..layer3 channels (256, 512, 1024) on a ``side`` grid, post-ReLU-like."""
    rng = np.random.default_rng(seed)
    layers = {name: np.abs(rng.standard_normal((n, c, side // k, side // k), dtype=np.float32))
              for name, c, k in (("layer1", 256, 1), ("layer2", 512, 2), ("layer3", 1024, 4))}
    return FeatureSet(layers, (4 * side, 4 * side))


def check_one_gaussian(model, features, position):
    """The factor at ``position`` inverts the float64 covariance of the embedding there."""
    samples = model._positions(features)[:, position].astype(np.float64)  # [N, d]
    cov = np.cov(samples, rowvar=False) + model.eps * np.eye(samples.shape[1])
    u = unpack_upper(model.whitener_[position : position + 1], samples.shape[1])[0].astype(np.float64)
    np.testing.assert_allclose(u.T @ cov @ u, np.eye(len(u)), atol=2e-3)


@pytest.mark.benchmark(group="PaDiM fit")
def test_padim_fit_resnet18(benchmark):
    train = resnet18_features(40, FULL, PYRAMID, seed=1)
    model = benchmark.pedantic(lambda: Padim(seed=0).fit(train), rounds=3, warmup_rounds=1)
    assert model.whitener_.shape == (56 * 56, 100 * 101 // 2)
    check_one_gaussian(model, train, 1234)


@pytest.mark.benchmark(group="PaDiM fit")
def test_padim_fit_wide_resnet_d550(benchmark):
    train = wide_resnet_like(100, 14, seed=2)
    model = benchmark.pedantic(lambda: Padim(seed=0).fit(train), rounds=3, warmup_rounds=1)
    assert model.whitener_.shape == (14 * 14, 550 * 551 // 2)
    check_one_gaussian(model, train, 101)

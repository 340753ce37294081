"""The harness's probes: time and the peak memory of one call, not of the process so far."""

import numpy as np

from bench.probes import measure


def test_peak_memory_belongs_to_the_call():
    _, big = measure(lambda: np.ones(200 * 2**20 // 8).sum())  # a 200 MB temporary
    _, small = measure(lambda: 1 + 1)
    assert big.peak_rss_bytes - small.peak_rss_bytes > 150 * 2**20
    assert big.seconds > small.seconds >= 0
    assert small.peak_gpu_bytes == 0  # no GPU here


def test_measure_returns_the_result():
    result, probe = measure(lambda: "done")
    assert result == "done" and probe.peak_rss_bytes > 0


"""Fixtures shared by the suite: the synthetic data set, built once per session."""

import shutil
from pathlib import Path

import pytest

from bench.threads import configure_cpu_env

# Before any test module imports paddle: all cores for Paddle, MKL's fast path.
configure_cpu_env()

from datasets import build_synthetic  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The synthetic MVTec-layout set, seed 0, built once for the whole session. Do not modify it."""
    return build_synthetic(tmp_path_factory.mktemp("synthetic") / "set", seed=0)


@pytest.fixture
def category_copy(synthetic_root, tmp_path):
    """A writable copy of one synthetic category under a fresh root: ``copy(name) -> root``."""

    def copy(name: str) -> Path:
        root = tmp_path / "data"
        shutil.copytree(synthetic_root / name, root / name)
        return root

    return copy


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test caches models and data in a folder of the session, never in the user's home."""
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def always_prune(monkeypatch):
    """At test sizes the pruned search's cost model would search densely: make every search prune
    (a test that wants the dense pass sets ``DENSE_FRACTION`` to 0 itself)."""
    import numpy as np

    import methods.bank_index as bank_index

    monkeypatch.setattr(bank_index, "MIN_PRUNE_FLOPS", 0.0)
    monkeypatch.setattr(bank_index, "CALL_FLOPS", 0.0)
    monkeypatch.setattr(bank_index, "ESTIMATE_FRACTION", np.inf)
    monkeypatch.setattr(bank_index, "DENSE_FRACTION", np.inf)

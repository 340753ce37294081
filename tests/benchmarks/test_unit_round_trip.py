"""The driver's round trip per unit on Dask, tracked with pytest-benchmark: a grid of trivial units.

What ``--workers``/``--scheduler`` add to each (category, backbone) unit besides
its work: submitting it, the scheduler, the worker, sending its rows back and
the driver's ``emit``. One local worker process, started once for the module.
The file sorts after the other benchmarks on purpose: a Dask cluster started in a
pytest process left the benchmarks after it measurably slower (SPADE predict by
~12 % in ``bench.py latency``), so nothing runs after it.
"""

import argparse
import sys

import cloudpickle
import pytest

from bench.grid import gather_units, local_cluster
from bench.units import Naming, Unit

UNITS = 50


def trivial_unit(unit, options, data_root, naming):
    """A unit with no work: one row back, no files."""
    return [({"category": unit.category, "backbone": unit.backbone, "method": "none", "seed": 0}, {})]


# The workers cannot import this test module: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with local_cluster(1) as cluster, Client(cluster) as client:
        yield client


@pytest.mark.benchmark(group="grid")
def test_unit_round_trip(benchmark, client):
    units = [Unit(f"category-{i}", "resnet18", (("none", 0),)) for i in range(UNITS)]
    options = argparse.Namespace(device="cpu")
    naming = Naming(several_backbones=False, several_seeds=False)

    def grid() -> list[dict]:
        rows = []
        gather_units(client, units, options, ".", naming, lambda row, files: rows.append(row),
                     task=trivial_unit)
        return rows

    rows = benchmark.pedantic(grid, rounds=5, warmup_rounds=1)
    assert sorted(row["category"] for row in rows) == sorted(unit.category for unit in units)

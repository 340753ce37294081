"""Units on Dask workers: a ``LocalCluster`` of ``--workers N`` processes, or the cluster at ``--scheduler``.

Dask distributed is the scheduler, not a home-made one: each unit (a category on
one backbone) is one task; a worker that dies mid-unit (killed, out of memory)
has its task run again on another worker by the Dask scheduler (up to its
``distributed.scheduler.allowed-failures`` times), and a unit that fails
deterministically returns error rows like any other unit (``bench.units``), so
nothing is retried for it. Results come back as (row, files) lists and the
driver writes them (``bench.runner``: one writer).

Workers load the run's plugins themselves (``--plugin`` modules must be
importable, or the ``.py`` files present at the same path, on every worker) and
keep one backbone per process between units. On a local cluster the cores are
split between the workers (``OMP_NUM_THREADS`` and the BLAS pools), so N
workers do not oversubscribe them. With ``--device gpu`` a unit asks for one
``GPU`` resource: start GPU workers with ``dask worker ... --resources GPU=1``
(one worker per GPU, ``CUDA_VISIBLE_DEVICES`` choosing it).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path

from bench import log
from bench.log import logger
from bench.threads import cpu_count
from bench.units import Naming, Unit, failure_reason, run_unit

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def local_cluster(n_workers: int):
    """``n_workers`` worker processes on this machine, one task at a time each, the cores split between them."""
    import dask
    from distributed import LocalCluster

    threads = str(max(1, cpu_count() // n_workers))
    # A nanny writes its "pre-spawn" variables (OMP/MKL/OpenBLAS threads = 1 by default) into this, the
    # driver's, environment for good, where every later subprocess would inherit them; the thread counts
    # go to the workers alone through ``env``, which is applied in the worker process before any task.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536}}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR, env={name: threads for name in THREAD_VARIABLES})


@contextlib.contextmanager
def client_for(options):
    """A Dask client of the cluster the run asks for; a cluster started here is shut down on leaving."""
    from distributed import Client

    if options.scheduler:
        with Client(options.scheduler, timeout="30s") as client:
            yield client
        return
    with local_cluster(options.workers) as cluster, Client(cluster) as client:
        yield client


_METHODS: dict[tuple, dict] = {}


def worker_methods(options) -> dict:
    """The run's method classes, as this worker process loads them from the run's plugins (once)."""
    key = (tuple(options.plugin), options.methods)
    if key not in _METHODS:
        from bench.cli import select_methods
        from bench.plugins import available_methods, shared_manager

        _METHODS[key] = select_methods(available_methods(shared_manager(options.plugin)), options.methods)
    return _METHODS[key]


def unit_task(unit: Unit, options, data_root: str, naming: Naming) -> list[tuple[dict, dict[str, bytes]]]:
    """What a worker runs: the unit's rows with their files, in the order they finished."""
    log.setup(quiet=True)  # the driver draws the progress; a worker's bars would interleave with it
    finished: list[tuple[dict, dict[str, bytes]]] = []
    run_unit(unit, worker_methods(options), options, Path(data_root), naming,
             lambda row, files: finished.append((row, files)))
    return finished


def run_units(units: list[Unit], options, data_root: Path, naming: Naming, emit) -> None:
    """Run ``units`` on the cluster the options ask for and ``emit`` each row as its unit comes back."""
    if not units:
        return
    with client_for(options) as client:
        logger.info("Dask: %d units on %s", len(units), client.scheduler.address)
        gather_units(client, units, options, data_root, naming, emit)
        for worker, peak in sorted(client.run(peak_rss_mb).items()):
            logger.info("Dask worker %s: peak resident memory %.0f MB", worker, peak)


def gather_units(client, units: list[Unit], options, data_root: Path, naming: Naming, emit,
                 task=unit_task) -> None:
    """Submit every unit as ``task(unit, options, data_root, naming)`` and ``emit`` the rows of each as it
    completes, in any order; a unit whose task raised (e.g. ``KilledWorker`` after repeated worker deaths)
    becomes error rows. On Ctrl-C the units still queued are cancelled."""
    from distributed import as_completed

    resources = {"GPU": 1} if options.device == "gpu" else None
    run_token = uuid.uuid4().hex[:8]  # a shared scheduler may hold keys of other runs
    futures = {client.submit(task, unit, options, str(data_root), naming, pure=False, resources=resources,
                             key=f"patchbench-{run_token}-{unit.category}-{unit.backbone}"): unit
               for unit in units}
    try:
        for future in as_completed(futures):
            unit = futures[future]
            try:
                finished = future.result()
            except Exception as exc:  # noqa: BLE001 - see the docstring
                reason = failure_reason(exc, f"unit {unit.category!r} on {unit.backbone}")
                finished = [({"category": unit.category, "backbone": unit.backbone, "method": name,
                              "seed": seed, "error": reason}, {}) for name, seed in unit.todo]
            for row, files in finished:
                emit(row, files)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark, in MB (run on each worker at the end)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

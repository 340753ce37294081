"""Units on Dask: ``--workers 2`` and ``--scheduler`` give the serial run's results, also when a worker dies."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--resize", "72", "--crop", "64", "--weights", "random", "--bootstrap", "100", "--no-cache"]
EXACT = ["category", "backbone", "method", "seed", "weights", "n_train", "n_test", "model_mb"]
ACCURACY = ["image_auroc", "pixel_auroc", "pro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap",
            "image_auroc_low", "image_auroc_high", "pro_low", "pro_high"]


def run_dir(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


def grid_args(root: Path, output: Path) -> list[str]:
    return ["--data-path", str(root), "--category", "weave,chip,granite", "--methods", "patchcore,padim",
            "--seeds", "0,1", "--output", str(output), *SMALL]


@pytest.fixture(scope="module")
def serial(synthetic_root, tmp_path_factory) -> pd.DataFrame:
    output = tmp_path_factory.mktemp("serial")
    assert main(grid_args(synthetic_root, output)) == 0
    return pd.read_csv(run_dir(output) / "results.csv")


def assert_same_results(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same rows in the same order, sizes and counts exact; accuracy up to float noise, since the workers'
    BLAS runs on other thread counts than the serial run's."""
    assert "error" not in got or got["error"].isna().all(), got.get("error")
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    np.testing.assert_allclose(got[ACCURACY].to_numpy(), expected[ACCURACY].to_numpy(), rtol=1e-4, atol=1e-6)


def test_two_local_workers_give_the_serial_results(synthetic_root, tmp_path, serial):
    threads = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    assert main([*grid_args(synthetic_root, tmp_path), "--workers", "2"]) == 0
    # the workers' thread counts stay theirs: the driver's later subprocesses keep all cores
    assert {name: os.environ.get(name) for name in threads} == threads
    folder = run_dir(tmp_path)
    assert_same_results(pd.read_csv(folder / "results.csv"), serial)
    # the driver wrote every row's predictions and the report, whichever worker made them
    assert len(list((folder / "predictions").rglob("*.npz"))) == len(serial)
    assert (folder / "report.html").is_file() and "dask" in (folder / "run.log").read_text().lower()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_workers(address: str, n: int):
    from distributed import Client

    client = Client(address, timeout="30s")
    client.wait_for_workers(n, timeout=60)
    return client


def test_a_killed_worker_costs_a_retry_not_the_run(synthetic_root, tmp_path, serial):
    address = f"tcp://127.0.0.1:{free_port()}"
    # `dask scheduler` and `dask worker`, as a user starts them, through this interpreter
    scheduler = start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                       address.rsplit(":", 1)[1], "--no-dashboard"])
    workers = []
    try:
        time.sleep(1.0)
        workers = [start([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                          "--no-dashboard", "--name", f"w{i}"]) for i in range(2)]
        client = wait_for_workers(address, 2)
        run = subprocess.Popen([sys.executable, str(REPO / "bench.py"), *grid_args(synthetic_root, tmp_path),
                                "--scheduler", address, "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim = kill_a_worker_mid_unit(client, workers)
        out, err = run.communicate(timeout=600)
        client.close()
        assert run.returncode == 0, err
        assert victim.poll() is not None  # it died, and the run still finished
        assert_same_results(pd.read_csv(run_dir(tmp_path) / "results.csv"), serial)
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait()


def kill_a_worker_mid_unit(client, workers: list[subprocess.Popen]) -> subprocess.Popen:
    """SIGKILL the worker process that is first seen running a unit; return it."""
    by_pid = {process.pid: process for process in workers}
    pids = client.run(os.getpid)  # worker address -> pid
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = [address for address, tasks in client.processing().items() if tasks]
        if busy:
            victim = by_pid[pids[busy[0]]]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            return victim
        time.sleep(0.05)
    raise AssertionError("no worker ever ran a unit")


def test_two_backbones_are_a_grid_axis_with_features_once_per_category_and_backbone(synthetic_root, tmp_path,
                                                                                      monkeypatch):
    from bench.backbone import Backbone

    calls = []
    extract = Backbone.extract

    def counting(self, images, layers, *args, **kwargs):
        calls.append(self.name)
        return extract(self, images, layers, *args, **kwargs)

    monkeypatch.setattr(Backbone, "extract", counting)
    argv = ["--data-path", str(synthetic_root), "--category", "granite", "--methods", "patchcore,padim",
            "--backbone", "resnet18,wide_resnet50_2", "--output", str(tmp_path), *SMALL]
    assert main(argv) == 0
    folder = run_dir(tmp_path)
    results = pd.read_csv(folder / "results.csv")
    assert results[["backbone", "method"]].values.tolist() == [
        [backbone, method] for backbone in ("resnet18", "wide_resnet50_2") for method in ("patchcore", "padim")]
    assert sorted(calls) == ["resnet18"] * 2 + ["wide_resnet50_2"] * 2  # train and test, once per backbone
    assert (folder / "predictions" / "granite" / "padim.wide_resnet50_2.npz").is_file()
    assert "- backbone: resnet18, wide_resnet50_2" in (folder / "results.md").read_text()


def test_ctrl_c_keeps_finished_rows_and_shuts_down_the_local_cluster(synthetic_root, tmp_path):
    import psutil

    run = subprocess.Popen([sys.executable, str(REPO / "bench.py"), *grid_args(synthetic_root, tmp_path),
                            "--workers", "2", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        csvs = list(tmp_path.glob("*/results.csv"))
        if csvs and len(pd.read_csv(csvs[0])) >= 1:
            break
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert len(pd.read_csv(run_dir(tmp_path) / "results.csv")) >= 1
    # nothing of the run is left: the workers it started went with it
    time.sleep(1.0)
    left = [p.info for p in psutil.process_iter(["pid", "status", "cmdline"])
            if _session(p.pid) == run.pid and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not left, left


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_a_worker_builds_its_backbone_once_for_all_its_units(synthetic_root, monkeypatch):
    import bench.units
    from bench.cli import parse
    from bench.grid import unit_task
    from bench.units import Naming, Unit

    built = []
    real = bench.units.backbone_for

    def counting(options, name):
        key = (name, str(options.weights), options.seed, options.device)
        if key not in bench.units._BACKBONES:
            built.append(name)
        return real(options, name)

    monkeypatch.setattr(bench.units, "_BACKBONES", {})
    monkeypatch.setattr(bench.units, "backbone_for", counting)
    monkeypatch.setattr("bench.grid.log.setup", lambda quiet: None)  # a worker's quiet logging, not this process's
    options, _ = parse(["--methods", "padim", *SMALL])
    naming = Naming(several_backbones=False, several_seeds=False)
    for category in ("weave", "chip"):  # two units in this process, as on one worker
        (row, files), = unit_task(Unit(category, "resnet18", (("padim", 0),)), options, str(synthetic_root), naming)
        assert "error" not in row and list(files) == [f"predictions/{category}/padim.npz"]
    assert built == ["resnet18"]


def test_a_serial_run_does_not_import_dask(synthetic_root, tmp_path):
    argv = ["--data-path", str(synthetic_root), "--category", "weave", "--methods", "padim",
            "--output", str(tmp_path), "--quiet", *SMALL]
    code = ("import sys\nfrom bench.cli import main\n"
            f"assert main({argv!r}) == 0\n"
            "assert not any(name.split('.')[0] in ('dask', 'distributed') for name in sys.modules), 'Dask imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

"""A warm start: saved inference models reused from the cache root, Paddle left unimported when features are
cached, the run's time: line, ``bench.py cache`` for models, and ``bench.startup``'s cold/warm protocol."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench import backbone as bb
from bench import units
from bench.backbone import Backbone, saved_model_problem
from bench.errors import PatchbenchError
from bench.cli import main
from bench.run_timing import format_timing, parse_timing
from bench.startup import measure_start

import paddle  # noqa: E402  (after bench.backbone: the CPU thread env)

REPO = Path(__file__).resolve().parents[1]
X = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
LAYERS = ["layer1", "layer2"]


def saved_folder(cache_dir: Path) -> Path:
    (folder,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    return folder


@pytest.fixture
def saved(tmp_path):
    """A models folder holding one saved resnet18 trunk, and the features it gave."""
    cache_dir = tmp_path / "models"
    first = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=cache_dir)
    return cache_dir, first.extract(X, LAYERS)


def refuse(*args, **kwargs):
    raise AssertionError("the saved model is there: nothing may be built, loaded or traced")


def test_saved_models_persist_in_the_cache_root_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path / "root"))
    Backbone("resnet18", weights="random", device="cpu").extract(X, LAYERS)
    folder = saved_folder(tmp_path / "root" / "models")
    assert saved_model_problem(str(folder)) is None and (folder / "sizes.json").is_file()
    monkeypatch.delenv("PATCHBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Backbone("resnet18", weights="random", device="cpu").cache_dir == str(
        tmp_path / "home" / ".cache" / "patchbench" / "models")


def test_a_saved_model_is_loaded_without_building_loading_or_tracing(saved, monkeypatch):
    cache_dir, expected = saved
    monkeypatch.setattr(Backbone, "_build_net", refuse)
    monkeypatch.setattr(bb, "_load_weights", refuse)
    monkeypatch.setattr(paddle.jit, "to_static", refuse)
    monkeypatch.setattr(paddle.jit, "save", refuse)
    again = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=cache_dir)
    for layer, array in again.extract(X, LAYERS).items():
        np.testing.assert_array_equal(array, expected[layer])
    assert again._net is None


def test_a_weights_file_is_not_loaded_again_once_a_model_was_saved_from_it(tmp_path, monkeypatch):
    paddle.seed(3)
    path = tmp_path / "mine.pdparams"
    paddle.save(paddle.vision.models.resnet18().state_dict(), str(path))
    first = Backbone("resnet18", weights=str(path), device="cpu", cache_dir=tmp_path / "models")
    expected = first.extract(X, LAYERS)
    monkeypatch.setattr(paddle, "load", refuse)
    monkeypatch.setattr(Backbone, "_build_net", refuse)
    again = Backbone("resnet18", weights=str(path), device="cpu", cache_dir=tmp_path / "models")
    np.testing.assert_array_equal(again.extract(X, LAYERS)["layer2"], expected["layer2"])


@pytest.mark.parametrize("damage", ["truncated params", "garbage graph", "no sizes", "params missing"])
def test_a_damaged_saved_model_is_reported_and_traced_again(saved, damage, capsys):
    cache_dir, expected = saved
    folder = saved_folder(cache_dir)
    graph = next(p for p in folder.iterdir() if p.suffix in (".json", ".pdmodel") and p.stem == "model")
    if damage == "truncated params":
        with open(folder / "model.pdiparams", "r+b") as f:
            f.truncate(100)
    elif damage == "garbage graph":  # same size: only Paddle can tell, and must not crash the run
        graph.write_bytes(b"x" * graph.stat().st_size)
    elif damage == "no sizes":
        (folder / "sizes.json").unlink()
    else:
        (folder / "model.pdiparams").unlink()
    capsys.readouterr()
    again = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=cache_dir)
    features = again.extract(X, LAYERS)
    err = capsys.readouterr().err
    assert "saved inference model" in err and "tracing it again" in err and folder.name in err
    for layer, array in features.items():
        np.testing.assert_allclose(array, expected[layer], rtol=1e-5, atol=1e-6)
    assert saved_model_problem(str(folder)) is None  # whole again, under the same name
    assert [p.name for p in cache_dir.iterdir()] == [folder.name]  # nothing left beside it


def test_a_model_that_cannot_be_loaded_even_when_traced_afresh_is_a_clear_error(saved, monkeypatch, capsys):
    """Not the file's fault (a device, a Paddle install): one re-trace, then an error that says so."""
    cache_dir, _ = saved

    def broken(self, folder):
        raise RuntimeError("no such device")

    monkeypatch.setattr(Backbone, "_load_predictor", broken)
    again = Backbone("resnet18", weights="random", seed=0, device="cpu", cache_dir=cache_dir)
    with pytest.raises(PatchbenchError, match="cannot be loaded either: no such device; check --device"):
        again.extract(X, LAYERS)
    assert capsys.readouterr().err.count("tracing it again") == 1


def test_backbone_without_work_does_not_import_paddle():
    code = textwrap.dedent("""
        import sys
        from bench.backbone import Backbone
        b = Backbone("resnet18", weights="random", device="auto")
        print(b.device, b.weights_id, "paddle" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cpu", "random-seed0", "False"]


SMALL_RUN = ["--category", "weave", "--methods", "padim", "--resize", "40", "--crop", "32",
             "--weights", "random", "--bootstrap", "0", "--quiet"]
WARM = """
import sys
from bench.threads import configure_cpu_env
configure_cpu_env()
from bench.cli import main
code = main(sys.argv[1:])
print("PADDLE", "paddle" in sys.modules)
sys.exit(code)
"""


def test_a_run_on_cached_features_never_imports_paddle_and_logs_its_time(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path / "root"))
    monkeypatch.setattr(units, "_BACKBONES", {})  # a backbone built by an earlier test keeps its cache folder
    args = ["--data-path", str(synthetic_root), *SMALL_RUN]
    assert main([*args, "--output", str(tmp_path / "cold")]) == 0  # fills the caches (Paddle is imported here)
    assert saved_model_problem(str(saved_folder(tmp_path / "root" / "models"))) is None
    done = subprocess.run([sys.executable, "-c", WARM, *args, "--output", str(tmp_path / "warm")], cwd=REPO,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "PADDLE False" in done.stdout
    assert "time:" not in done.stdout + done.stderr  # --quiet: the line is in run.log only
    for name in ("cold", "warm"):
        timing = parse_timing((next((tmp_path / name).iterdir()) / "run.log").read_text())
        assert timing is not None
        assert set(timing.phases) == {"features", "fit", "predict", "statistics", "scoring", "report"}
        assert 0 < timing.phases_s <= timing.wall_s


def test_time_line_round_trip():
    line = format_timing(5.0, {"features": 0.5, "fit": 1.25, "report": 0.75})
    assert line == ("time: 5.00 s in all = 2.50 s in measured phases (features 0.50, fit 1.25, report 0.75) "
                    "+ 2.50 s start-up and overhead")
    timing = parse_timing(f"2026-01-01 INFO something\n2026-01-01 INFO {line}\n")
    assert timing.wall_s == 5.0 and timing.phases == {"features": 0.5, "fit": 1.25, "report": 0.75}
    assert parse_timing("no such line") is None


def test_cache_command_lists_and_clears_saved_models(saved, tmp_path, capsys):
    cache_dir, _ = saved
    with open(saved_folder(cache_dir) / "model.pdiparams", "ab") as f:
        f.write(b"\0")  # one byte more than recorded
    (cache_dir / "my_notes").mkdir()  # not a saved model: left alone
    (cache_dir / "my_notes" / "a.txt").write_text("mine")
    features = tmp_path / "features"
    assert main(["cache", "list", "--cache-dir", str(features), "--models-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 saved models" in out and "resnet18_random-seed0_layer1-layer2_32x32" in out
    assert "damaged or incomplete (model.pdiparams has" in out
    assert main(["cache", "clear", "--cache-dir", str(features), "--models-dir", str(cache_dir)]) == 0
    assert "removed 1 saved models" in capsys.readouterr().out
    assert [p.name for p in cache_dir.iterdir()] == ["my_notes"]


FAKE_BENCH = """
import os, sys
from pathlib import Path
args = sys.argv[1:]
root = Path(os.environ["PATCHBENCH_CACHE"])
state = "warm" if (root / "features").is_dir() else ("warm model" if (root / "models").is_dir() else "cold")
(root / "features").mkdir(parents=True, exist_ok=True)
(root / "models").mkdir(exist_ok=True)
with open(root.parent / "calls.txt", "a") as f:
    f.write(state + " " + args[args.index("--backbone") + 1] + "\\n")
run = Path(args[args.index("--output") + 1]) / "run"
run.mkdir(parents=True)
(run / "run.log").write_text("INFO time: 3.00 s in all = 2.00 s in measured phases (fit 1.50, report 0.50) "
                             "+ 1.00 s start-up and overhead\\n")
"""


def test_measure_start_runs_cold_warm_then_warm_model_per_backbone(tmp_path, monkeypatch):
    fake = tmp_path / "fake_bench.py"
    fake.write_text(FAKE_BENCH)
    seen = []
    real_run = subprocess.run

    def run(cmd, **kwargs):
        done = real_run(cmd, **kwargs)
        calls = Path(kwargs["env"]["PATCHBENCH_CACHE"]).parent / "calls.txt"
        seen[:] = calls.read_text().split("\n")[:-1]
        return done

    monkeypatch.setattr(subprocess, "run", run)
    results = measure_start(("resnet18", "wide_resnet50_2"), rounds=1, data_path=tmp_path, bench_py=fake)
    expected = [(state, b) for b in ("resnet18", "wide_resnet50_2") for state in ("cold", "warm", "warm model")]
    assert [(m.state, m.backbone) for m in results] == expected
    assert seen == [f"{state} {b}" for state, b in expected]  # the process saw the cache state it is named by
    assert all(m.phases == {"fit": 1.5, "report": 0.5} and m.phases_s == 2.0 and m.wall_s > 0 for m in results)


PROGRAM = """
import atexit, sys
from bench.cli import main

class Teardown:
    def __del__(self):
        print("interpreter torn down")

kept = Teardown()
atexit.register(print, "exit handler ran")
sys.argv = ["bench.py", *sys.argv[1:]]
sys.exit(main())
"""


def test_the_program_exits_without_tearing_the_interpreter_down():
    done = subprocess.run([sys.executable, "-c", PROGRAM, "--list-methods"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("padim") and "patchcore" in done.stdout  # piped, so buffered: flushed
    assert lines[-1] == "exit handler ran" and "interpreter torn down" not in done.stdout
    # Called with argv (tests, other code) main returns instead.
    assert main(["--list-methods"]) == 0

"""Paddle's noise lines are gone from what a user sees; anything else written to stderr still shows."""

import os
import subprocess
import sys
from pathlib import Path

from bench.quiet_stderr import drop_lines

REPO = Path(__file__).resolve().parents[1]


def test_drop_lines_keeps_every_other_line_from_python_and_from_the_descriptor(capfd):
    with drop_lines("noise one", "noise two"):
        print("noise one from python", file=sys.stderr)
        print("a real error from python", file=sys.stderr)
        os.write(2, b"W1130 noise two from C++\nE1130 a real error from C++\n")
    err = capfd.readouterr().err
    assert "noise" not in err
    assert "a real error from python" in err and "E1130 a real error from C++" in err


def test_drop_lines_passes_output_through_when_the_block_raises(capfd):
    try:
        with drop_lines("noise"):
            print("said before failing", file=sys.stderr)
            raise KeyError("boom")
    except KeyError:
        pass
    assert "said before failing" in capfd.readouterr().err


def test_importing_paddle_and_tracing_a_model_print_no_noise(tmp_path):
    code = (
        "import numpy as np\n"
        "from bench.backbone import Backbone\n"
        f"b = Backbone('resnet18', weights='random', device='cpu', cache_dir={str(tmp_path)!r})\n"
        "b.extract(np.zeros((1, 3, 64, 64), np.float32), ['layer2', 'avgpool'])\n"
        "print('done')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # what makes Paddle complain
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert "OMP_NUM_THREADS" not in done.stderr
    assert "not support input out tensor" not in done.stderr
    assert list(tmp_path.iterdir()), "the model was traced in this process, so its noise was due"

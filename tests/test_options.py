"""Every numeric flag is checked when parsed: one argparse line naming the flag and its range, exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main, parse

REPO = Path(__file__).resolve().parents[1]

# (flags, what the error line must say); each value is outside the flag's range or not a number.
BAD = [
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["--batch-size", "-3"], "argument --batch-size: must be an integer >= 1, got -3"),
    (["--batch-size", "2.5"], "argument --batch-size: must be an integer >= 1, got '2.5'"),
    (["--resize", "16"], "argument --resize: must be an integer >= 32, got 16"),
    (["--crop", "8"], "argument --crop: must be an integer >= 32, got 8"),
    (["--resize", "200", "--crop", "224"], "argument --crop: must be at most --resize (200), got 224"),
    (["--coreset-ratio", "0"], "argument --coreset-ratio: must be a number > 0 and <= 1, got 0"),
    (["--coreset-ratio", "1.5"], "argument --coreset-ratio: must be a number > 0 and <= 1, got 1.5"),
    (["--coreset-ratio", "nan"], "argument --coreset-ratio: must be a number > 0 and <= 1, got nan"),
    (["--num-neighbors", "0"], "argument --num-neighbors: must be an integer >= 1, got 0"),
    (["--padim-features", "0"], "argument --padim-features: must be an integer >= 1, got 0"),
    (["--padim-features", "449"],
     "argument --padim-features: must be at most 448 (the channels of resnet18's layer1..layer3), got 449"),
    (["--backbone", "wide_resnet50_2", "--padim-features", "1793"],
     "argument --padim-features: must be at most 1792"),
    (["--spade-top-k", "0"], "argument --spade-top-k: must be an integer >= 1, got 0"),
    (["--pro-fpr-limit", "0"], "argument --pro-fpr-limit: must be a number > 0 and <= 1, got 0"),
    (["--pro-fpr-limit", "1.2"], "argument --pro-fpr-limit: must be a number > 0 and <= 1, got 1.2"),
    (["--pro-fpr-limit", "inf"], "argument --pro-fpr-limit: must be a number > 0 and <= 1, got inf"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0 and <= 4294967295, got -1"),
    (["--seed", "4294967296"], "argument --seed: must be an integer >= 0 and <= 4294967295, got 4294967296"),
]


@pytest.mark.parametrize("flags, message", BAD, ids=[" ".join(flags) for flags, _ in BAD])
def test_bad_value_is_one_argparse_line_and_exit_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"bench.py: error: {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags", [
    ["--batch-size", "1", "--resize", "32", "--crop", "32", "--seed", "4294967295"],
    ["--coreset-ratio", "1", "--num-neighbors", "1", "--pro-fpr-limit", "1", "--spade-top-k", "1"],
    ["--padim-features", "448", "--resize", "224", "--crop", "224"],
    ["--backbone", "wide_resnet50_2", "--padim-features", "1792"],
])
def test_values_at_the_ends_of_each_range_are_accepted(flags):
    options, _ = parse(flags)
    assert options.crop <= options.resize


def test_bad_flag_stops_before_paddle_is_imported():
    code = ("import sys\nfrom bench.cli import main\n"
            "try:\n    main(['--batch-size', '-3'])\nexcept SystemExit as e:\n"
            "    print(e.code, 'paddle' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "argument --batch-size: must be an integer >= 1, got -3" in done.stderr

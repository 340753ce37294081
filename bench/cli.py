"""``python bench.py``: parse flags, load plugins, run the benchmark, print the tables."""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
from pathlib import Path

from bench import log
from bench.errors import USER_ERRORS, PatchbenchError
from bench.dataset_choice import choose_dataset, list_datasets
from bench.plugins import available_datasets, available_methods, plugin_manager
from methods.options import float_range, int_range, positive_int

# Paddle seeds its generator with the low 32 bits only: larger seeds would repeat smaller ones.
MAX_SEED = 2**32 - 1
# One layer4 cell: below this the deepest stage has nothing left to pool.
MIN_IMAGE_SIZE = 32

DESCRIPTION = """\
Benchmark patch-based anomaly detection methods on MVTec AD, MVTec AD 2, VisA,
MVTec LOCO, BTAD, MPDD, a folder of good and bad images, or any dataset a plugin
adds (--list-datasets). Each method is fitted on the normal training images of
each category and scored on the test images; tables of accuracy, speed and memory
are printed and written to a new run folder. Without --data-path a synthetic
MVTec-layout data set is built once (seeded) and used.

Other commands (each has --help):
  bench.py compare RUN_A RUN_B          differences between two runs
  bench.py report RUN_DIR...            (re)write report.html of a run folder
  bench.py predict IMAGE... --model M   score images with a model saved by --save-models
  bench.py profile                      time extraction, coreset and search at MVTec scale
  bench.py cache [list|clear]           show or empty the feature cache
  bench.py latency BASE [HEAD]          benchmark suite of two git revisions, interleaved, with intervals"""


def base_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.py", description=DESCRIPTION, add_help=add_help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, default=None,
                        help="root of a data set as its publisher ships it, e.g. the folder holding MVTec AD's "
                             "category folders (default: the built-in synthetic data set, in the MVTec AD layout)")
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="the layout of --data-path: mvtec_ad, mvtec_ad2, visa, mvtec_loco, btad, mpdd, folder, "
                             "or a plugin's (see --list-datasets); default: detected from the folder when exactly "
                             "one layout matches, else mvtec_ad")
    parser.add_argument("--category", default="all",
                        help="a category name, 'all', a group of the dataset ('objects', 'textures' for MVTec AD; "
                             "see --list-datasets), or a comma-separated list of these (default: all)")
    parser.add_argument("--methods", default="all",
                        help="comma-separated method names, or 'all' registered methods (default: all); "
                             "see --list-methods")
    parser.add_argument("--backbone", type=backbone_list, default=["resnet18"], metavar="NAME[,NAME]",
                        help=f"feature extractor(s), comma-separated: {', '.join(BACKBONES)} (default: resnet18); "
                             "every method runs on each, features extracted once per (category, backbone)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (Paddle's download and cache; falls back to a seeded random "
                             "initialisation when it cannot be had), 'random', or the path of a .pdparams file")
    parser.add_argument("--resize", type=int_range(MIN_IMAGE_SIZE), default=256,
                        help=f"images are resized to this square size first (default 256; at least {MIN_IMAGE_SIZE})")
    parser.add_argument("--crop", type=int_range(MIN_IMAGE_SIZE), default=224,
                        help=f"then center-cropped to this size (default 224; {MIN_IMAGE_SIZE} to --resize)")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="images per forward pass (default 8; at least 1)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                        help="where the backbone runs (default: the GPU when Paddle has one)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where extracted features persist between runs "
                             "(default: $PATCHBENCH_CACHE/features, else ~/.cache/patchbench/features)")
    parser.add_argument("--no-cache", action="store_true",
                        help="extract features afresh and keep them in memory only")
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--workers", type=positive_int, default=None, metavar="N",
                      help="run the (category, backbone) units on a local Dask cluster of N worker processes, "
                           "the cores split between them (default: one after the other in this process)")
    grid.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run the units on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786; every worker "
                           "must see --data-path and should share --cache-dir (see README, 'On a cluster')")
    parser.add_argument("--seed", type=int_range(0, MAX_SEED), default=0,
                        help="seed of every random choice: synthetic data, random weights, bootstrap resamples, "
                             "and the methods' coreset start, projections, channel subsets unless --seeds is "
                             f"given (default 0; 0 to {MAX_SEED})")
    parser.add_argument("--seeds", type=seed_list, default=None, metavar="S1,S2,...",
                        help="run every method once per seed, e.g. 0,1,2: tables show mean ± std over seeds. "
                             "Only the methods' random choices change; data, weights and features stay those "
                             "of --seed and are extracted once")
    parser.add_argument("--bootstrap", type=int_range(0), default=1000, metavar="N",
                        help="resamples of the test images for the 95 %% intervals of image AUROC, pixel AUROC "
                             "and AU-PRO, and the paired comparisons in report.html (default 1000; 0: none)")
    parser.add_argument("--pro-fpr-limit", type=float_range(0.0, 1.0, low_open=True), default=0.3,
                        help="AU-PRO integrates up to this false-positive rate "
                             "(default 0.3, the MVTec protocol; > 0 and <= 1)")
    parser.add_argument("--output", type=Path, default=Path("runs"),
                        help="folder under which a new run folder is created (default: runs)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue an interrupted or partly failed run in RUN_DIR with its own settings: "
                             "finished rows are kept, the rest is done")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", type=plugin_spec,
                        help="load a method or dataset plugin: a module name or the path of a .py file (repeatable)")
    parser.add_argument("--save-models", action="store_true",
                        help="keep each fitted method in RUN/models/<category>/<method> (NumPy arrays and a "
                             "JSON header, no pickle) for 'bench.py predict'")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or step messages; tables, warnings and errors still show")
    parser.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    parser.add_argument("--list-datasets", action="store_true",
                        help="list the registered datasets (with --data-path: and which layout it matches) and exit")
    return parser


BACKBONES = ("resnet18", "wide_resnet50_2")


def backbone_list(text: str) -> list[str]:
    """``"resnet18,wide_resnet50_2"`` -> the distinct names, each a known backbone."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in BACKBONES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"invalid choice: {', '.join(map(repr, unknown)) or repr(text)} "
                                         f"(choose from {', '.join(BACKBONES)}, comma-separated)")
    return names


def plugin_spec(text: str) -> str:
    """A ``--plugin`` value as the run records it: a ``.py`` path made absolute, so ``--resume`` from
    another folder and Dask workers find the same file; a module name as given."""
    return str(Path(text).resolve()) if text.endswith(".py") or Path(text).is_file() else text


def recorded_argv(argv: list[str]) -> list[str]:
    """``argv`` with every ``--plugin`` path absolute (``plugin_spec``): what run.json keeps."""
    out, follows = [], False
    for arg in argv:
        if follows:
            arg = plugin_spec(arg)
        elif arg.startswith("--plugin="):
            arg = "--plugin=" + plugin_spec(arg.partition("=")[2])
        follows = arg == "--plugin"
        out.append(arg)
    return out


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``: distinct seeds, each in the range of ``--seed``."""
    seed = int_range(0, MAX_SEED)
    seeds = [seed(part.strip()) for part in text.split(",") if part.strip()]
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2; got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"each seed once, please; got {text!r}")
    return seeds


def parse(argv: list[str]):
    """Two passes, as pytest does: find ``--plugin`` first, then let plugins add their flags.

    Flags that are each in range but do not fit together end in the same
    argparse error (exit 2), from ``check_options`` and the plugins' own checks.
    """
    known, _ = base_parser(add_help=False).parse_known_args(argv)
    manager = plugin_manager(known.plugin)
    parser = base_parser()
    manager.hook.patchbench_add_options(parser=parser)
    options = parser.parse_args(argv)
    try:
        check_options(options)
        manager.hook.patchbench_check_options(options=options)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return options, manager


def check_options(options) -> None:
    """Relations between the harness's flags; raises ``argparse.ArgumentTypeError``."""
    if options.crop > options.resize:
        raise argparse.ArgumentTypeError(
            f"argument --crop: must be at most --resize ({options.resize}), got {options.crop}")


def select_methods(registered: dict[str, type], spec: str) -> dict[str, type]:
    if spec == "all":
        return registered
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise PatchbenchError(
            f"unknown method {', '.join(map(repr, unknown))}; registered: {', '.join(registered)} "
            "(a plugin's methods appear once it is installed or passed with --plugin)"
        )
    return {name: registered[name] for name in names}


def list_methods(registered: dict[str, type]) -> str:
    lines = []
    for name, cls in registered.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0:1]
        lines.append(f"{name:<14} {cls.__module__:<28} layers: {', '.join(cls.layers)}"
                     + (f"  {summary[0]}" if summary else ""))
    return "\n".join(lines)


def run_command(argv: list[str]) -> int:
    return _run_command(argv)[0]


def _run_command(argv: list[str]) -> tuple[int, bool]:
    """The run's exit status, and whether every unit ran in this process (no Dask cluster to shut down)."""
    options, manager = parse(argv)
    folder = None
    if options.resume is not None:
        from reports.runfolder import RunFolder

        folder = RunFolder.open(options.resume)
        options, manager = parse(folder.settings.argv)
    options.argv = recorded_argv(argv) if folder is None else folder.settings.argv
    log.setup(quiet=options.quiet)
    registered = available_methods(manager)
    if options.list_methods:
        print(list_methods(registered))
        return 0, True
    datasets = available_datasets(manager)
    if options.list_datasets:
        print(list_datasets(datasets, options.data_path))
        return 0, True
    methods = select_methods(registered, options.methods)

    from bench.runner import run
    from datasets import ensure_synthetic

    if folder is not None:
        data_root = Path(folder.settings.data)
        options.dataset = options.dataset or folder.settings.dataset
    elif options.data_path is not None:
        data_root = options.data_path.resolve()
    else:
        data_root = None
    dataset_class = choose_dataset(datasets, options.dataset, data_root)  # logs what it detected
    options.dataset = dataset_class.name  # what the workers, run.json and --resume read
    data_root = data_root or ensure_synthetic(seed=options.seed)
    dataset = dataset_class.from_config(data_root, options)
    dataset.resolve(options.category)  # a wrong folder or name fails before Paddle loads
    result = run(options, methods, data_root, folder=folder, dataset=dataset)
    serial = not (options.workers or options.scheduler)
    if result.failed:
        print(f"error: some categories failed; see the Failures table in {result.run_dir / 'results.md'}",
              file=sys.stderr)
        return 1, serial
    return 0, serial


# ``bench.py NAME ...``: other jobs than a run, each a module with ``main(argv) -> int``.
SUBCOMMANDS = {
    "compare": "reports.compare",
    "report": "reports.html",
    "predict": "bench.predict",
    "profile": "bench.profile",
    "cache": "bench.cache_command",
    "latency": "bench.latency",
}


def main(argv: list[str] | None = None) -> int:
    """The command. Called without ``argv`` it is the program (``bench.py``, the ``patchbench`` script):
    a serial run that finished then exits at once (``exit_now``)."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
        code, serial = _run_command(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if as_program and serial:
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process without tearing the interpreter down.

    Freeing every module and object of a run (NumPy, SciPy, pandas, matplotlib,
    Paddle) takes about a second after the last line is written (measured:
    0.6-2.4 s on two loaded cores), work whose only effect is that the process
    ends. The exit handlers still run, and the streams and logs are flushed;
    everything the run wrote was already written atomically.
    """
    atexit._run_exitfuncs()  # weakref finalizers, temporary folders, logging.shutdown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)

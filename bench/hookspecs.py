"""Hook specifications for patchbench plugins: the whole contract between the harness and a plugin.

A plugin is a module (or any object) with functions named after the specs
below and marked ``@hookimpl`` (``from bench import hookimpl``). The built-in
methods (``methods.patchcore``, ``methods.padim``, ``methods.spade``) and data
sets (``bench.builtin_datasets``) use exactly the same hooks as outside plugins, which are loaded from the
``patchbench`` entry-point group or with ``--plugin MODULE_OR_FILE.py``
(see ``bench.plugins``).

Every hook is optional. An implementation may accept fewer parameters than
its spec names (pluggy passes only the ones it asks for), never others. The
harness calls every implementation of a hook, in pluggy's order (the last
registered first); none of them stops the others.

Order of calls in ``python bench.py ...``: ``patchbench_add_options`` (the
command line is then parsed), ``patchbench_check_options``, then
``patchbench_methods`` and ``patchbench_datasets``. ``bench.py predict`` calls
only ``patchbench_methods``, to find the class of a saved model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # for annotations only: a plugin importing ``bench`` loads nothing more
    import argparse

    from datasets.base import Dataset
    from methods.base import AnomalyMethod

hookspec = pluggy.HookspecMarker("patchbench")
hookimpl = pluggy.HookimplMarker("patchbench")


@hookspec
def patchbench_add_options(parser: argparse.ArgumentParser) -> None:
    """Add command-line flags for your methods.

    Called each time ``bench.py``'s command line is parsed (once per run, and
    once more for the saved command line with ``--resume``), after the harness
    has added its own flags and before the parse; ``bench.py --help`` lists
    what it adds. Called for every registered plugin, including those named
    by ``--plugin``.

    :param parser:
        The ``argparse.ArgumentParser`` of ``bench.py``. Add your flags to a
        group of your own: ``parser.add_argument_group("mymethod")``.

    :return: Nothing; the return value is ignored.

    Rules:

    - Every long option name starts with your method's ``name`` and a dash
      (``--padim-features``, ``--spade-top-k``, ``--patchcore-coreset-ratio``),
      so flags of different plugins cannot collide. A flag you rename keeps
      its old spelling working as a hidden second option with the same
      ``dest`` (``help=argparse.SUPPRESS``), so old command lines and
      ``--resume`` of old runs still parse.
    - Give each flag a ``default``: every run parses every plugin's flags,
      whether or not its method is selected.
    - Give each numeric flag a range-checked ``type``
      (``methods.options.int_range``, ``float_range``, ``positive_int``), so a
      bad value stops the command at once with one line naming the flag and
      the range (exit status 2), before any data is read.
    - The parsed values reach ``AnomalyMethod.from_config(options)`` as
      attributes of ``options`` named by each flag's ``dest``.
    """


@hookspec
def patchbench_check_options(options: argparse.Namespace) -> None:
    """Check your flags against each other, and against the harness's, once all are parsed.

    Called right after each parse of ``bench.py``'s command line (see
    ``patchbench_add_options``), once the harness has checked its own flags:
    before plugins are asked for methods and before anything is read or run.
    Not called by ``bench.py predict``.

    :param options:
        Every parsed flag of the harness (``backbone``, ``seed``, ``resize``,
        ...) and of every plugin, by ``dest``. Read it; do not change it.

    :return: Nothing; the return value is ignored.

    Rules: each flag's own range belongs in its ``type`` (see
    ``patchbench_add_options``); this hook is for a value that is in its own
    range but does not fit another flag (say, more features than the chosen
    backbone has). Raise
    ``argparse.ArgumentTypeError("argument --flag: must be ..., got ...")``:
    the command then stops with that line and exit status 2, as for any bad
    flag. Any other exception is a bug in the plugin.
    """


@hookspec
def patchbench_methods() -> list[type[AnomalyMethod]]:
    """Hand the harness your method classes.

    Called once per command that needs methods (a run, ``--list-methods``,
    ``bench.py predict``), after the flags are parsed and checked.

    :return:
        A list of classes (not instances), each a subclass of
        ``methods.base.AnomalyMethod``. An empty list registers nothing.

    Rules for each class (``methods.base.AnomalyMethod`` says more):

    - ``name``: a non-empty string, unique among all loaded plugins (two
      classes with one name stop the command); it is what ``--methods``
      selects, the column and file name in the run folder.
    - ``layers``: the backbone layers ``fit`` and ``predict`` read, from
      ``layer1``..``layer4`` and ``avgpool``.
    - ``from_config(options)`` builds an unfitted instance from the parsed
      flags (``options.seed`` is always there); the harness builds a fresh
      instance for each category.
    - ``fit(features)`` returns the method; ``predict(features)`` returns a
      ``methods.base.Prediction`` (``scores`` ``[N]``, ``maps`` ``[N, H, W]``).
      The features are read-only and shared by every method of the run.
    - ``__init__`` takes the hyper-parameters and stores each under its own
      name (``get_params()`` reads them back): the run header records them,
      and a saved model is rebuilt as ``cls(**params)``.
    - ``fit`` leaves the fitted state in public attributes whose names end
      in ``_`` (``memory_bank_``), each a NumPy array (any dtype but
      ``object``) or a value JSON can hold (None, bool, int, finite float,
      str, and lists, tuples and string-keyed dicts of these).
      ``--save-models`` (``bench.models``) writes the hyper-parameters, which
      follow the same JSON rule, and exactly these attributes, and refuses a
      model with any other value in them. A loaded model is
      ``cls(**params)`` given these attributes back, without ``fit``:
      ``predict`` must need nothing else (private attributes like
      ``_cache`` are not saved). ``model_size_bytes()`` counts the arrays
      among them.
    """


@hookspec
def patchbench_datasets() -> list[type[Dataset]]:
    """Hand the harness your dataset classes.

    Called once per command that needs data sets (a run, ``--list-datasets``),
    after the flags are parsed and checked.

    :return:
        A list of classes (not instances), each a subclass of
        ``datasets.base.Dataset``. An empty list registers nothing.

    Rules for each class (``datasets.base.Dataset`` says more):

    - ``name``: a non-empty string, unique among all loaded plugins; it is
      what ``--dataset`` selects and what run.json records.
    - ``from_config(root, options)`` builds the run's instance (default:
      ``cls(root, seed=options.seed)``); ``root`` is ``--data-path``.
    - ``categories()``, ``train(category)`` and ``test(category)`` list
      ``datasets.base.Sample`` objects: image path, label (0 good, 1
      defective), defect type, mask path (None for good images). Errors a user
      can fix raise ``datasets.errors.DatasetError`` naming the file and what
      to do; the run then records them as that category's failure.
    - ``detect(root)`` (optional) says whether a folder is laid out as this
      data set ships: without ``--dataset`` the one layout that matches is used.
    - ``subsets`` (optional) names defect types scored apart, and
      ``regions(...)`` (optional) gives the defect regions with saturation
      areas for sPRO (``datasets.mvtec_loco`` does both).
    """

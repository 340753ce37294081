"""The hooks a patchbench plugin can implement.

A plugin is a module (or object) with functions named after these specs and
marked ``@hookimpl``. Built-in methods use exactly the same hooks as outside
plugins, loaded from the ``patchbench`` entry-point group or ``--plugin``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("patchbench")
hookimpl = pluggy.HookimplMarker("patchbench")


@hookspec
def patchbench_add_options(parser):
    """Add command-line flags for your methods.

    ``parser`` is the ``argparse.ArgumentParser`` of ``bench.py``; use
    ``parser.add_argument_group(name)`` and long option names prefixed with
    your method's name. The parsed values reach ``AnomalyMethod.from_config``.
    Give each numeric flag a range-checked ``type`` (``methods.options.int_range``,
    ``float_range``), so a bad value stops the command at once.
    """


@hookspec
def patchbench_check_options(options):
    """Check flags against each other once all are parsed (``options``: the ``argparse.Namespace``).

    Raise ``argparse.ArgumentTypeError("argument --flag: must be ..., got ...")``
    for a value that is in its own range but does not fit the others (say, more
    features than the chosen backbone has); the command then stops with that
    line, as for any bad flag, before anything runs.
    """


@hookspec
def patchbench_methods():
    """Return a list of method classes (subclasses of ``methods.base.AnomalyMethod``).

    Each class has a unique ``name`` (what ``--methods`` selects), the backbone
    ``layers`` it needs, ``from_config(options)``, ``fit`` and ``predict``.
    """

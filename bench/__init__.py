"""patchbench harness: plugins, CLI, run configuration, backbone, feature cache, runner.

Plugin authors need only ``from bench import hookimpl``.
"""

from bench.hookspecs import hookimpl

__all__ = ["hookimpl"]

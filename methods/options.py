"""Argument types for command-line flags: numbers checked against their range when parsed.

A bad value ends in argparse's own one-line error, naming the flag and the
range, with exit status 2, before any data is read or Paddle is loaded::

    bench.py: error: argument --batch-size: must be an integer >= 1, got -3

The harness uses these for its own flags; a method plugin may use them for the
flags it adds in ``patchbench_add_options``.
"""

from __future__ import annotations

import argparse
import math


def _describe(low, high, low_open: bool, high_open: bool) -> str:
    """``">= 1 and <= 10"``: floats as ``%g``, integers in full."""

    def show(bound) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {show(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {show(high)}")
    return " and ".join(parts)


def int_range(low: int | None = None, high: int | None = None):
    """An argparse ``type``: an integer with ``low <= value <= high`` (either bound may be None)."""

    def parse(text: str) -> int:
        allowed = _describe(low, high, False, False)
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite float between ``low`` and ``high``, each end closed unless open."""

    def parse(text: str) -> float:
        allowed = f"a number {_describe(low, high, low_open, high_open)}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_range(1)

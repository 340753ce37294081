"""Atomic writes for the harness: the same functions as ``reports.atomic``, which owns them."""

from reports.atomic import write_atomic, write_text_atomic

__all__ = ["write_atomic", "write_text_atomic"]

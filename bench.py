#!/usr/bin/env python
"""``python bench.py --help``: the patchbench command."""

import sys

from bench.threads import configure_cpu_env

# Before Paddle is imported anywhere: its MKL and OpenMP read these at load time.
configure_cpu_env()

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Writes are atomic and leave ordinary files behind."""

import os
import stat

from reports.atomic import write_text_atomic


def test_atomic_writes_leave_an_ordinary_readable_file(tmp_path):
    path = write_text_atomic(tmp_path / "results.md", "table")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "table"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]

"""Checksums of a file's bytes, read once in blocks: CRC-32 for cache entries, SHA-256 and MD5 for weights."""

from __future__ import annotations

import hashlib
import os
import zlib

BLOCK = 1 << 20  # bytes read at a time: a large file never sits in memory whole


class _Crc32:
    """``zlib.crc32`` behind hashlib's ``update``/``hexdigest``."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def file_digests(path: str | os.PathLike, *algorithms: str) -> dict[str, str]:
    """Hex digest of the file at ``path`` for each of ``algorithms``, from one pass over it.

    Names are hashlib's (``"sha256"``, ``"md5"``) or ``"crc32"``.
    """
    hashers = {name: _Crc32() if name == "crc32" else hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def file_crc32(path: str | os.PathLike) -> int:
    """The file's CRC-32 as ``zlib.crc32`` gives it: the int a feature cache manifest records."""
    return int(file_digests(path, "crc32")["crc32"], 16)


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    return file_digests(path, "sha256")["sha256"]

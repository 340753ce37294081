"""bench.filehash: the same digests as hashlib and zlib over the whole file, whatever its size."""

import hashlib
import zlib

import pytest

from bench.filehash import BLOCK, file_crc32, file_digests, file_sha256


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 17])
def test_digests_match_hashlib_and_zlib(tmp_path, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    assert file_digests(path, "sha256", "md5", "crc32") == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "crc32": f"{zlib.crc32(data):08x}",
    }
    assert file_crc32(path) == zlib.crc32(data)
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()

"""File checksums shared by the model weights checks (``models``) and the sample data (``sampledata``).

Example:
    >>> fileSha256("empty.bin")  # an empty file  # doctest: +SKIP
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fileSha256"]

# Hashing a 40 MB weights file or a 100 MB CT on every call is wasteful; a file whose size and
# mtime are unchanged is taken to be unchanged. One entry per file: (size, mtime in ns, sha256).
_checksums: dict[str, tuple[int, int, str]] = {}


def fileSha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, computed once per process while its size and mtime stay the same.

    Args:
        path: the file.

    Returns:
        64 lower-case hex digits.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    filePath = Path(path).resolve()
    stat = filePath.stat()
    cached = _checksums.get(str(filePath))
    if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
        return cached[2]
    digest = hashlib.sha256()
    with open(filePath, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    _checksums[str(filePath)] = (stat.st_size, stat.st_mtime_ns, digest.hexdigest())
    return digest.hexdigest()

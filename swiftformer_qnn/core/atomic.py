"""Atomic file writes (a reader sees the old file or the new one, never half of either) and
file hashes.

Standard library only: `qnn_worker` imports this inside toolchain environments that hold
onnxruntime, onnxruntime-qnn, numpy, onnx and pydantic, and nothing else.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux's /proc);
    `os.umask` must set a value to read one, which a concurrent thread creating a file could
    observe."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` through a uniquely named temporary file in the same directory,
    then rename it over `path` (`os.replace`, atomic on POSIX and Windows).

    Concurrent writers of one path each write their own temporary file, so they never
    collide: the last rename wins, whole. On any error the temporary file is removed and
    `path` keeps its previous content. The file gets the mode a plain `open(path, "w")`
    would give it (0666 minus the umask), not mkstemp's private 0600. The directory must
    exist. Returns `path`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def sha256_file(path: str | os.PathLike[str], _chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in chunks (hashlib releases the GIL on large blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_chunk):
            h.update(block)
    return h.hexdigest()

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


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a file ("does not exist", "is a FIFO (named pipe)", ...), or
    None for a regular file (symbolic links followed). Reading a FIFO blocks until a writer
    comes, a device such as /dev/zero never ends: both are refused before any read."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist" if not os.path.lexists(path) else "is a broken symbolic link"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"  # a symlink loop, a file where a directory should be
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO (named pipe), not a file"),
                       (stat.S_ISCHR, "is a device, not a file"), (stat.S_ISBLK, "is a device, not a file"),
                       (stat.S_ISSOCK, "is a socket, not a file")):
        if test(mode):
            return what
    return "is not a regular file"


_LINK_LOOP = "a symbolic link loop"


def _link_fault(path: Path) -> str | None:
    """What stops `path` resolving when it is a symbolic link (a loop, a missing target); None otherwise."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:
        return _LINK_LOOP
    except OSError:
        return "a symbolic link to a missing place"
    return None


def blocking_component(path: str | os.PathLike[str]) -> str | None:
    """What on the way to `path` is not a directory (`out is a file, not a folder`, `out/x is a
    symbolic link loop`); None when every component up to the last is a folder."""
    try:
        parts = Path(os.path.abspath(os.fsdecode(path))).parts
    except (TypeError, ValueError):
        return None
    current = Path(parts[0]) if parts else Path(".")
    for part in (*parts[1:],):
        fault = _link_fault(current)
        if fault is not None:
            return f"{current} is {fault}"
        if os.path.lexists(current) and not current.is_dir():
            return f"{current} is a file, not a folder"
        current = current / part
    # The last component may be a link to a place not made yet; a loop never resolves.
    return f"{current} is {_LINK_LOOP}" if _link_fault(current) == _LINK_LOOP else None


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why nothing can be created at `path`, as far as can be told before writing it (None: it
    can): a component on the way that is no folder (`blocking_component`), or the nearest folder
    that exists is one this user may not write into."""
    blocked = blocking_component(path)
    if blocked is not None:
        return blocked
    folder = Path(os.path.abspath(os.fsdecode(path))).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return None if os.access(folder, os.W_OK | os.X_OK) else f"{folder} is not writable"


def tree_bytes(root: Path | None) -> int:
    """Bytes of the files below `root` (0 when it is None or does not exist); symbolic links are
    not followed. Cache sizes (`swiftformer-qnn cache`) and what a toolchain install downloaded."""
    if root is None or not root.exists():
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass  # removed while we walked: it no longer takes room
    return total

"""The user cache and the hashes its keys are made of: tool versions, JSON values, the
package's own source tree (`code_version`, part of every cache key)."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

CACHE_ENV = "SWIFTFORMER_QNN_CACHE"

_TOOLS = ("swiftformer-qnn", "torch", "onnx", "onnxruntime", "onnxruntime-qnn", "onnxsim", "numpy")


def tool_versions(names: tuple[str, ...] = _TOOLS) -> dict[str, str]:
    """Installed versions from package metadata (no heavy imports)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def source_tree_hash(root: Path, salt: str = "") -> str:
    """Hash of every `.py` file below `root`, by relative path and content."""
    h = hashlib.sha256(salt.encode())
    for path in sorted(Path(root).rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_CODE_VERSION: str | None = None


def code_version() -> str:
    """The package's version and the hash of its whole source tree: part of every cache key
    (stages and toolchain workers alike), so no result made by other code is reused. A
    hand-kept list of the files each stage depends on would miss one sooner or later."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        from .. import __version__

        _CODE_VERSION = source_tree_hash(Path(__file__).resolve().parent.parent, salt=__version__)
    return _CODE_VERSION


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swiftformer-qnn"))

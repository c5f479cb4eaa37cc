"""What the tool keeps on disk besides its outputs, and cleaning it: `swiftformer-qnn cache`.

The stage cache (`<cache>/stages/<stage>/<key>/`, each entry with its `stage.json`), crash
tracebacks (`<cache>/logs/`), AI Hub job journals (`<cache>/aihub-jobs/`: kept by a clean, they
let a rerun resume paid jobs) and the QNN toolchains (`<toolchains root>/qnn-*`, one environment
per QNN version, and the installers' download cache). Output folders are never touched: they live
outside the cache and hold copies of the cached files (or copy-on-write reflinks, never hard
links), so removing a cache entry cannot change an export.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import tree_bytes
from ..core.cache import cache_root
from ..toolchains import (
    CACHE_DIR,
    TOOLCHAINS,
    ToolchainState,
    inspect_toolchain,
    main_environment_spec,
    remove_toolchain,
    toolchain_dir,
    toolchains_root,
)

STAGE_RECORD = "stage.json"


@dataclass(frozen=True)
class Area:
    """One thing the tool keeps: what it is, where, how big, how many entries."""

    what: str
    path: Path
    bytes: int
    entries: int
    cleaned_by: str  # the command that empties it ("" when nothing should)



def _stage_entries(root: Path) -> list[Path]:
    """The stage cache's entries: `<stages>/<stage>/<key>/` directories holding a stage.json."""
    stages = root / "stages"
    if not stages.is_dir():
        return []
    return sorted(entry for stage in stages.iterdir() if stage.is_dir() and not stage.is_symlink()
                  for entry in stage.iterdir()
                  if entry.is_dir() and not entry.is_symlink() and (entry / STAGE_RECORD).is_file())


def usage() -> list[Area]:
    root, tc_root = cache_root(), toolchains_root()
    main = main_environment_spec()
    installed = [s for s in TOOLCHAINS if s != main and inspect_toolchain(s).state is not ToolchainState.NOT_INSTALLED]
    logs = root / "logs"
    journals = root / "aihub-jobs"
    return [
        Area("stage cache", root / "stages", tree_bytes(root / "stages"), len(_stage_entries(root)),
             "swiftformer-qnn cache clean"),
        Area("crash tracebacks", logs, tree_bytes(logs), len(list(logs.glob("crash-*.txt"))) if logs.is_dir() else 0,
             "swiftformer-qnn cache clean"),
        Area("QNN toolchains", tc_root, sum(tree_bytes(toolchain_dir(s)) for s in installed)
             if tc_root.is_dir() else 0, len(installed), "swiftformer-qnn cache clean --toolchains"),
        Area("toolchain downloads", tc_root / CACHE_DIR, tree_bytes(tc_root / CACHE_DIR), 0,
             "swiftformer-qnn cache clean --toolchains"),
        Area("AI Hub job journals", journals, tree_bytes(journals),
             len(list(journals.glob("*.json"))) if journals.is_dir() else 0, ""),
    ]


@dataclass(frozen=True)
class Cleaned:
    what: str
    path: Path
    bytes: int


def clean(*, toolchains: bool = False) -> list[Cleaned]:
    """Remove the stage cache's entries and the crash tracebacks (and with `toolchains`, every
    installed QNN toolchain but the main environment's, and their download cache). Only what the
    tool wrote is removed: stage entries with their stage.json, crash-*.txt files, toolchain
    directories the toolchain registry knows; a folder of the user's that happens to be inside
    the cache location stays."""
    root = cache_root()
    done: list[Cleaned] = []
    for entry in _stage_entries(root):
        size = tree_bytes(entry)
        shutil.rmtree(entry)
        done.append(Cleaned("stage cache entry", entry, size))
    stages = root / "stages"
    if stages.is_dir():
        for stage in stages.iterdir():
            if stage.is_dir() and not stage.is_symlink() and not any(stage.iterdir()):
                stage.rmdir()
    logs = root / "logs"
    if logs.is_dir():
        for crash in sorted(logs.glob("crash-*.txt")):
            size = crash.stat().st_size
            crash.unlink()
            done.append(Cleaned("crash traceback", crash, size))
    if toolchains:
        tc_root = toolchains_root()
        main = main_environment_spec()
        for spec in TOOLCHAINS:
            if spec == main:
                continue
            directory = toolchain_dir(spec)
            size = tree_bytes(directory)
            if remove_toolchain(spec) is not None:
                done.append(Cleaned(f"QNN {spec.qnn_version} toolchain", directory, size))
        downloads = tc_root / CACHE_DIR
        if downloads.is_dir():
            size = tree_bytes(downloads)
            shutil.rmtree(downloads)
            done.append(Cleaned("toolchain downloads", downloads, size))
    return done

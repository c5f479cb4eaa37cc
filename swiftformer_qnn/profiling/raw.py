"""A profile's raw folder (`<profile stem>.raw/`): the files QNN itself wrote for one run (the
emulator's CSV and op trace, the estimator's log and schematic, qnn-net-run's outputs), kept
beside the profile made from them.

Each folder carries `made_by.json`, which says which run wrote it. Two readers need it: the
importers, because QNN's CSV has the same header whether a phone or the x86 emulator wrote it, and
the next run into the same `--out`, which replaces an earlier run's folder but never a folder of
the same name the tool did not write (the user's own files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..core.errors import OutputDirError

MADE_BY = "made_by.json"
KIND_PREFIX = "swiftformer-qnn."


def write_marker(directory: Path, kind: str, made_by: str, **fields) -> Path:
    """Say in `directory` which run of this tool wrote it (`kind`: e.g. "emulator-raw")."""
    return write_text_atomic(Path(directory) / MADE_BY, json.dumps(
        {"kind": KIND_PREFIX + kind, "made_by": made_by, **fields}, indent=2) + "\n")


def marker_kind(directory: Path) -> str | None:
    """The kind `write_marker` recorded in `directory` ("swiftformer-qnn.<kind>"), else None."""
    try:
        kind = json.loads((Path(directory) / MADE_BY).read_text()).get("kind")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return kind if isinstance(kind, str) else None


def keep_raw(staging: Path, final: Path) -> Path:
    """Move a finished run's raw folder `staging` to `final`, replacing an earlier run's folder
    there; a `final` this tool did not write is refused by name and left as it is."""
    if final.exists() or final.is_symlink():
        kind = marker_kind(final) if final.is_dir() and not final.is_symlink() else None
        if not (kind or "").startswith(KIND_PREFIX):
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputDirError(
                f"{final} exists and is not a raw folder this tool wrote (no {MADE_BY}): not replaced.",
                hint="Move it away, or write the profiles elsewhere with --out.")
        shutil.rmtree(final)
    staging.rename(final)
    return final

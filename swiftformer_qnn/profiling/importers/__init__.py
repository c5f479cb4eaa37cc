"""Profiles users already have, in our schema: `swiftformer-qnn profile import FILE --from EXPORT_DIR`.

Each importer is a module here with `NAME: str`, `sniff(path) -> bool` (cheap: is this file
mine?) and `load(path, ctx) -> Profile` (convert, attributing ops to blocks through the export
in `ctx`). A new format joins by adding its module name to `IMPORTERS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ...core.errors import ProfileError, UsageError
from ...measure.schema import ModelInfo, Profile
from ...pipeline.artifacts import ExportManifest

# Module names under swiftformer_qnn.profiling.importers, tried in this order.
IMPORTERS: tuple[str, ...] = ("aihub", "qnn_viewer_json", "qnn_viewer_csv", "qnn_viewer_text")


@dataclass(frozen=True)
class ImportContext:
    """What the file alone may not say: the export it measured, and where and with what it ran."""

    export_dir: Path
    model: ModelInfo  # from the export's manifest
    model_path: Path  # the graph the profile's ops came from (QDQ, or the float graph for fp16)
    label: str  # the model part of file names (`xs-r64-w8a8`)
    manifest: ExportManifest | None = None  # the export's manifest (its request, stages and files)
    device: str | None = None  # --device
    qnn: str | None = None  # --qnn, as written


def importers() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in IMPORTERS]


def find_importer(path: Path) -> ModuleType:
    """The importer that recognises `path`; a ProfileError naming the formats tried otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file.", hint="Pass the profile file you downloaded.")
    for module in importers():
        if module.sniff(path):
            return module
    names = ", ".join(m.NAME for m in importers())
    raise ProfileError(f"{path}: not a profile format this tool imports (tried: {names}).",
                       hint="Pass the file as the tool that made it wrote it (e.g. AI Hub's download_profile() JSON).")


def load(path: Path, ctx: ImportContext) -> tuple[str, Profile]:
    """(importer name, profile) for `path`."""
    module = find_importer(path)
    return module.NAME, module.load(Path(path), ctx)

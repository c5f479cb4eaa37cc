"""Importers of profiles other tools wrote: one module per file format, one schema out.

Each importer is a module with `NAME: str`, `sniff(path) -> bool` (cheap: does this file look
like my format?) and `load(path, ctx) -> Profile`. `ImportContext` carries what attribution
needs from the export directory the file was measured from (variant, QNN's op trace, the
ONNX graph) and what the file itself may not say (device, QNN version).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ...errors import ProfileError
from ...variants import Variant
from ..attribution import NodeTensors
from ..schema import ModelInfo, Profile


@dataclass(frozen=True)
class ImportContext:
    variant: Variant
    model_info: ModelInfo
    op_trace: Path | None = None  # QNN's framework op trace of the compiled model (HTP op -> ONNX nodes)
    graph: Mapping[str, NodeTensors] | None = None  # ONNX node -> its tensors, for renamed nodes
    device: str | None = None
    qnn_version: str | None = None
    export_dir: Path | None = None

    @classmethod
    def from_export(cls, directory: Path, *, device: str | None = None, qnn_version: str | None = None) -> ImportContext:
        """Read an export directory: its variant, its compile stage's op trace and its model graph."""
        from ..emulator import onnx_node_tensors
        from ..orchestrate import read_export

        source = read_export(directory)
        compiled = source.manifest.stage("compile")
        trace = None
        if compiled is not None and "qnn_op_trace.json" in compiled.outputs:
            trace = source.manifest.artifact(source.directory, "compile", "qnn_op_trace.json")
        return cls(
            variant=source.variant,
            model_info=source.model_info,
            op_trace=trace if trace is not None and trace.is_file() else None,
            graph=onnx_node_tensors(source.model_path),
            device=device,
            qnn_version=qnn_version or (compiled.results.get("qnn_sdk_version") if compiled else None),
            export_dir=source.directory,
        )


def _importers() -> tuple[ModuleType, ...]:
    from . import qnn_viewer_csv, qnn_viewer_json, qnn_viewer_text

    return (qnn_viewer_json, qnn_viewer_csv, qnn_viewer_text)


def importer_names() -> list[str]:
    return [m.NAME for m in _importers()]


def find_importer(path: Path) -> ModuleType:
    """The importer whose format `path` is in; a ProfileError naming the known formats if none."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file.")
    for module in _importers():
        if module.sniff(path):
            return module
    raise ProfileError(
        f"{path}: not a profile format this tool reads.", hint=f"Known formats: {', '.join(importer_names())}."
    )


def import_profile(path: Path, ctx: ImportContext) -> Profile:
    return find_importer(path).load(Path(path), ctx)

"""The export pipeline: one orchestrator over stages that each read and write artifacts."""

from .orchestrator import (
    STAGE_TITLES,
    CompileRequest,
    ExportRequest,
    ExportResult,
    StageEvent,
    Until,
    compile_export_across_versions,
    run_compile,
    run_export,
)

__all__ = ["STAGE_TITLES", "CompileRequest", "ExportRequest", "ExportResult", "StageEvent", "Until", "compile_export_across_versions", "run_compile", "run_export"]

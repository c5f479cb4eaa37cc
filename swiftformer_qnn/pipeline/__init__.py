"""The export pipeline: one orchestrator over stages that each read and write artifacts."""

from .orchestrator import (
    STAGE_TITLES,
    CompileRequest,
    ExportRequest,
    ExportResult,
    StageEvent,
    Until,
    run_compile,
    run_export,
)

__all__ = ["STAGE_TITLES", "CompileRequest", "ExportRequest", "ExportResult", "StageEvent", "Until", "run_compile", "run_export"]

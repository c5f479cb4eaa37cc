"""The export pipeline: one orchestrator over stages that each read and write artifacts."""

from .orchestrator import STAGE_TITLES, ExportRequest, ExportResult, StageEvent, Until, run_export

__all__ = ["STAGE_TITLES", "ExportRequest", "ExportResult", "StageEvent", "Until", "run_export"]

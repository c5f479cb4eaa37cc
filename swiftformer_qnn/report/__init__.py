"""Reports across QNN versions: profiles in, typed Report out, rendered as Markdown, JSON, HTML,
PNG charts and rich tables.

`make_report` / `make_comparison` are what the CLI calls; `build_report` / `compare_profiles`
are the pure core (profiles in, typed data out).
"""

from __future__ import annotations

from .analysis import LoadedProfile, build_report, compare_profiles
from .build import ComparisonResult, ReportResult, load_inputs, make_comparison, make_report, write_report
from .model import Comparison, Report

__all__ = [
    "Comparison",
    "ComparisonResult",
    "LoadedProfile",
    "Report",
    "ReportResult",
    "build_report",
    "compare_profiles",
    "load_inputs",
    "make_comparison",
    "make_report",
    "write_report",
]

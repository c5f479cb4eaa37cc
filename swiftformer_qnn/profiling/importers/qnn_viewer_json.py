"""`qnn-profile-viewer --reader libQnnJsonProfilingReader.so --standardized_json_output`."""

from __future__ import annotations

from pathlib import Path

from ...measure.schema import Profile
from ..qnn_viewer import parse_viewer_json_text
from . import ImportContext
from .qnn_profile_viewer import head, read_text, viewer_profile

NAME = "qnn-profile-viewer standardized JSON"


def sniff(path: Path) -> bool:
    start = head(path).lstrip()
    return start.startswith("{") and '"messages"' in start and ('"profilingEvents"' in start or '"method"' in start)


def load(path: Path, ctx: ImportContext) -> Profile:
    report = parse_viewer_json_text(read_text(path), source=str(path))
    return viewer_profile(report, None, ctx, where=str(path), files=[Path(path)])

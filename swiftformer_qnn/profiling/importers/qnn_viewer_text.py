"""`qnn-profile-viewer --input_log X.log` (its stdout, saved to a file): the text summary."""

from __future__ import annotations

from pathlib import Path

from ...measure.schema import Profile
from ..qnn_viewer import parse_viewer_text
from . import ImportContext
from .qnn_profile_viewer import head, read_text, viewer_profile

NAME = "qnn-profile-viewer text summary"


def sniff(path: Path) -> bool:
    return "Execute Stats (" in head(path)


def load(path: Path, ctx: ImportContext) -> Profile:
    report = parse_viewer_text(read_text(path), source=str(path))
    return viewer_profile(report, None, ctx, where=str(path), files=[Path(path)])

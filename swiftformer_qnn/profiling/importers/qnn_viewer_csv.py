"""`qnn-profile-viewer --input_log X.log --output X.csv`: one EXECUTE group per inference."""

from __future__ import annotations

from pathlib import Path

from ...measure.schema import Profile
from ..qnn_viewer import csv_flavour, parse_viewer_csv
from . import ImportContext
from .qnn_profile_viewer import head, read_text, viewer_profile

NAME = "qnn-profile-viewer CSV"


def sniff(path: Path) -> bool:
    # onnxruntime-qnn's own CSV has the same header: the rows tell them apart (qnn_viewer.csv_flavour).
    return csv_flavour(head(path)) == "viewer"


def load(path: Path, ctx: ImportContext) -> Profile:
    report = parse_viewer_csv(read_text(path), source=str(path))
    return viewer_profile(report, None, ctx, where=str(path), files=[Path(path)])

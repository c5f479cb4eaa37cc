"""`swiftformer-qnn`: a thin CLI. Each module here parses options, calls one library function
and renders its typed result; all logic lives in the library."""

from __future__ import annotations

from . import cache as _cache  # noqa: F401
from . import diagnose as _diagnose  # noqa: F401
from . import export as _export  # noqa: F401  (registers export, compile, variants)
from . import gate as _gate  # noqa: F401
from . import profile as _profile  # noqa: F401
from . import report as _report  # noqa: F401
from . import toolchains as _toolchains  # noqa: F401
from ._app import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    run_app()

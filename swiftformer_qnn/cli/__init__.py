"""`swiftformer-qnn`: a thin CLI. Each module here parses options, calls one library function
and renders its typed result; all logic lives in the library."""

from __future__ import annotations

from typing import NoReturn

from . import cache as _cache  # noqa: F401
from . import diagnose as _diagnose  # noqa: F401
from . import export as _export  # noqa: F401  (registers export, compile, variants)
from . import gate as _gate  # noqa: F401
from . import profile as _profile  # noqa: F401
from . import report as _report  # noqa: F401
from . import toolchains as _toolchains  # noqa: F401
from ._app import app, run_app

__all__ = ["app", "main"]


def main() -> NoReturn:
    """The console script: the command, then the end of the process without the interpreter's
    teardown (`core.teardown`), with the command's exit code."""
    from ..core.teardown import exit_without_teardown

    try:
        run_app()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):  # a message: Python prints it
            raise
        exit_without_teardown(exc.code or 0)
    exit_without_teardown(0)

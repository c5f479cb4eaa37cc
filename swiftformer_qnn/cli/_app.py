"""The typer application and the one place where known errors become one line and an exit code."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from ..errors import SwiftFormerQnnError

app = typer.Typer(
    name="swiftformer-qnn",
    help="SwiftFormer from PyTorch to the Snapdragon 8 Gen 2 NPU (QNN HTP v73), profiled block by block.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """SwiftFormer from PyTorch to the Snapdragon 8 Gen 2 NPU (QNN HTP v73), profiled block by block."""


# Results go to stdout; progress, warnings and errors to stderr.
console = Console()
err_console = Console(stderr=True)


def fail(exc: SwiftFormerQnnError) -> typer.Exit:
    """Print a known error as one line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


F = TypeVar("F", bound=Callable)


def guarded(fn: F) -> F:
    """Wrap a command body: a known error becomes one line on stderr and its exit code.

    Put it under `@app.command()` so typer's CliRunner (tests) sees the same exit codes a
    user's shell does.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SwiftFormerQnnError as exc:
            raise fail(exc) from None

    return wrapper  # type: ignore[return-value]


def run_app() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C is click's: "Aborted!" and exit 1. Outputs are assembled beside their final place
    # and renamed at the end, so an interrupted run leaves nothing that looks complete.
    try:
        app()
    except SwiftFormerQnnError as exc:  # raised outside a command body (e.g. in a callback)
        err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)

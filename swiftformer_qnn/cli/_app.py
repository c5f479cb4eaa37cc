"""The typer application and the one place where known errors become one line and an exit code."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, get_args

import typer
from rich.console import Console

from ..errors import SwiftFormerQnnError

# Help names what a value is in words (PATH, TEXT, INTEGER) and nothing for a flag, where typer's
# default shows Python types (`<bool>`, `<list[Path]>`).
_VALUE_WORDS = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _value_word(param) -> str | None:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or desc.is_choice:  # typer before 0.29 shows click's words; choices are listed
        return None
    if desc.is_path:
        return "PATH"
    (kind,) = get_args(desc.annotation) if desc.is_list else (desc.annotation,)
    return _VALUE_WORDS.get(kind, "VALUE")


def _plain_metavars(command) -> None:
    for param in command.params:
        if isinstance(param, typer.core.TyperArgument):
            # Its rich help row would print the Python type beside the name.
            param.display_type_rich = lambda ctx: None
            param.metavar = param.metavar or param.name.upper()
        elif param.metavar is not None:
            continue
        elif getattr(param, "is_bool_flag", False):
            param.metavar = ""
        else:
            param.metavar = _value_word(param)
    # --help is made on demand (and then cached by the command): mark it a flag when it is.
    make_help_option = command.get_help_option

    def get_help_option(ctx):
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


class _Group(typer.core.TyperGroup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _plain_metavars(self)


app = typer.Typer(
    cls=_Group,
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

"""The typer application and the one place where known errors become one line and an exit code."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar, get_args

import typer
from rich.console import Console
from rich.text import Text

from ..core.atomic import blocking_component
from ..core.errors import SwiftFormerQnnError
from ..core.heap import cap_malloc_arenas
from ..core.interrupt import STOP_SIGNALS, STOPPING
from ..core.text import terminal_safe

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


def _usage_errors_name_their_command(command) -> None:
    """Some of click's parse errors carry no context (an option given without its value): the
    command being parsed is added, so the line points at its --help, not the root's."""
    parse = command.parse_args

    def parse_args(ctx, args):
        try:
            return parse(ctx, args)
        except _CLICK_USAGE_ERROR as exc:
            if exc.ctx is None:
                exc.ctx, exc.cmd = ctx, ctx.command
            raise

    command.parse_args = parse_args


def _commands(command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


class _Group(typer.core.TyperGroup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command in _commands(self):
            _plain_metavars(command)
            _usage_errors_name_their_command(command)

    # Click's usage errors arise while parsing: the root's options here, every subcommand's in
    # the group's invoke (which parses them before it runs them).
    def make_context(self, info_name, args, parent=None, **extra):
        with _usage_in_one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _usage_in_one_line():
            return super().invoke(ctx)


# The click that typer runs on (its own copy in recent releases, the click package in older ones):
# its UsageError, which typer's public BadParameter derives from in both.
_CLICK_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@contextlib.contextmanager
def _usage_in_one_line():
    """Click's usage errors (an unknown option, a value that does not parse, a missing argument)
    in one line like every other error (`_say`), with click's exit code, 2; typer would draw the
    usage, a hint and a boxed panel, five lines or more. A bare group's help (no arguments)
    passes through."""
    try:
        yield
    except _CLICK_USAGE_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # as typer tells it (it vendors click since 0.23)
            raise
        message = " ".join(exc.format_message().split())
        if not message.endswith((".", "?", "!")):
            message += "."
        _say(f"{message} See '{exc.ctx.command_path} --help'." if exc.ctx is not None else message)
        raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="swiftformer-qnn",
    help="SwiftFormer from PyTorch to the Snapdragon 8 Gen 2 NPU (QNN HTP v73), profiled block by block.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Results go to stdout; progress, warnings and errors to stderr.
console = Console()
err_console = Console(stderr=True)


def version_line() -> str:
    """This package's version and the QNN the main environment compiles with."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__
    from ..toolchains.registry import main_environment_spec

    try:
        ort_qnn = version("onnxruntime-qnn")
    except PackageNotFoundError:
        return f"swiftformer-qnn {__version__} (onnxruntime-qnn not installed)"
    spec = main_environment_spec()
    qnn = f", QNN {spec.qnn_version}" if spec is not None else ""
    return f"swiftformer-qnn {__version__} (onnxruntime-qnn {ort_qnn}{qnn})"


def _print_version(value: bool) -> None:
    if value:
        console.print(version_line(), highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version (and the bundled QNN's) and exit.")] = False,
) -> None:
    """SwiftFormer from PyTorch to the Snapdragon 8 Gen 2 NPU (QNN HTP v73), profiled block by block."""


def next_step(out: Console, command: str, *, why: str | None = None, open_file: Path | str | None = None) -> None:
    """The line every command ends with: the command that usually follows (on a line of its own,
    never folded, so it can be copied), and the file to open."""
    out.print(Text.assemble(("Next: ", "bold"), why or ""), highlight=False)
    out.print(Text("  " + command), soft_wrap=True, highlight=False)
    if open_file is not None:
        out.print(Text.assemble("  open ", str(open_file)), soft_wrap=True, highlight=False)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary (JSON) on stdout "
                                       "instead of the tables; progress stays on stderr.")]


def print_json(data: object) -> None:
    """`--json`: the command's summary as one JSON document on stdout (and nothing else there)."""
    import json

    print(json.dumps(data, indent=2, default=str))


def _say(text: str) -> None:
    """One line on stderr. The text is printed as is: a path or a server's message holding
    `[...]` must not be read as rich markup."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", terminal_safe(redact(text), one_line=True)),
                      soft_wrap=True)


def redact(text: str) -> str:
    """Text (maybe from a server or a subprocess) on its way to the terminal or the traceback
    file, without the AI Hub token or anything shaped like a credential."""
    from ..core.redact import scrub

    return scrub(text)


def fail(exc: SwiftFormerQnnError) -> typer.Exit:
    """Print a known error as one line on stderr and return the Exit to raise."""
    _say(exc.one_line())
    return typer.Exit(exc.exit_code)


F = TypeVar("F", bound=Callable)


def guarded(fn: F) -> F:
    """Wrap a command body in the error boundary (see `boundary`).

    Put it under `@app.command()` so typer's CliRunner (tests) sees the same exit codes a
    user's shell does.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors
        except BaseException as exc:  # noqa: BLE001  (the one boundary)
            code = boundary(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


# errno values that say "the environment is not as needed", not "the tool has a bug".
_ENVIRONMENT = {
    errno.ENOSPC: "No space left on the device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
    errno.ENOTDIR: "Not a directory",
    errno.EISDIR: "Is a directory",
    errno.EEXIST: "Already exists",
    errno.ENOENT: "No such file or directory",
    errno.ENAMETOOLONG: "File name too long",
    errno.ELOOP: "Too many levels of symbolic links",
    errno.EMFILE: "Too many open files",
    errno.EIO: "Input/output error",
    errno.EFBIG: "File too large (a file size limit: ulimit -f)",
    errno.ENOMEM: "Cannot allocate memory",
}

# How a memory limit (ulimit -v, a cgroup) surfaces from native code: a library that cannot be
# mapped, or an allocator's own message, rather than Python's MemoryError.
_OUT_OF_MEMORY = ("failed to map segment from shared object", "cannot allocate memory", "can't allocate memory",
                  "std::bad_alloc", "unable to allocate", "out of memory")


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        return True
    if isinstance(exc, (ImportError, RuntimeError)):
        text = str(exc).lower()
        return any(words in text for words in _OUT_OF_MEMORY)
    return False


def boundary(exc: BaseException) -> int | None:
    """The one place a failure becomes one line on stderr and an exit code.

    Known errors: their line and code (2 bad input or environment, 1 a failed check).
    Interrupts: one line, 130 (Ctrl-C) or 143 (SIGTERM); the `finally`/`except` blocks on the
    way here have already removed partial outputs. The environment failing (disk full, a
    read-only or misplaced cache, a file where a directory should be): one line saying what
    and where, 2. Anything else is a bug: one line naming the file holding the traceback, 3.
    Returns None for what is not ours to handle (SystemExit).
    """
    from ..core.errors import SwiftFormerQnnError

    if isinstance(exc, SwiftFormerQnnError):
        _say(exc.one_line())
        return exc.exit_code
    if isinstance(exc, Terminated):
        _say(f"Stopped by {exc.signame}; partial outputs were removed, nothing that looks complete was left.")
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        _say("Interrupted (Ctrl-C); partial outputs were removed, nothing that looks complete was left.")
        return 130
    if _out_of_memory(exc):
        _say("Ran out of memory (a memory limit such as ulimit -v, or the machine's). Raise the limit, or use fewer "
             "or smaller inputs (--calibration-count, --resolution).")
        return 2
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        _say(f"File too large{': ' + str(exc.filename) if exc.filename else ''}: a file size limit (ulimit -f) stopped "
             "the write. Raise the limit (ulimit -f unlimited), or write elsewhere.")
        return 2
    blocked = blocking_component(exc.filename) if isinstance(exc, OSError) and exc.errno in (
        errno.EEXIST, errno.ENOTDIR, errno.ELOOP) and exc.filename else None
    if blocked:  # "File exists" said of a path that goes through a file or a symlink loop
        _say(f"Cannot use {exc.filename}: {blocked}. {_environment_hint(exc)}")
        return 2
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT and not _missing_in_cache(exc):
        where = exc.filename or ""
        if exc.filename2:
            where = f"{where} -> {exc.filename2}"
        _say(f"{exc.strerror or _ENVIRONMENT[exc.errno]}{': ' + str(where) if where else ''}. "
             f"{_environment_hint(exc)}")
        return 2
    if isinstance(exc, (SystemExit, GeneratorExit)):
        return None
    where = write_traceback(exc)
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    _say(f"Unexpected failure ({summary}). This is a bug in swiftformer-qnn; "
         f"the full traceback is in {where}: please report it with that file.")
    return INTERNAL_ERROR


INTERNAL_ERROR = 3  # neither 1 (a failed check, which a CI gate reads as a regression) nor 2 (bad input)


def _in_cache(path: str) -> bool:
    from ..core.cache import cache_root

    try:
        return bool(path) and Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(cache_root())))
    except (OSError, ValueError):
        return False


def _missing_in_cache(exc: OSError) -> bool:
    """A file the tool itself should have written into its cache is missing: a bug, not the environment."""
    return exc.errno == errno.ENOENT and _in_cache(str(exc.filename or ""))


def _environment_hint(exc: OSError) -> str:
    from ..core.cache import CACHE_ENV

    in_cache = _in_cache(str(exc.filename or ""))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # A failed write() names no file: then the free space says which disk is full. A file
        # named in the cache may be the source of a copy into the output, so that is checked too.
        cache_full = _nearly_full(_cache_dir())
        if (in_cache or exc.filename is None) and cache_full:
            return f"Free some space on the stage cache's disk, or set {CACHE_ENV} to move the cache."
        if exc.filename is None and not cache_full:
            return "Free some space where the output goes, or write elsewhere (--output-dir / --out)."
        if in_cache:  # the cache's disk has room: the write may have been the copy into the output
            return (f"Free some space on the disk of the output or of the stage cache (write elsewhere with "
                    f"--output-dir / --out, or set {CACHE_ENV} to move the cache).")
        return "Free some space, or write elsewhere (--output-dir / --out)."
    if in_cache:
        return f"The stage cache must be a writable directory: fix it, or set {CACHE_ENV} to another place."
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return "Check the path: a file where a directory is expected, or the reverse."
    return "Check the path and its permissions, or choose another place."


_NEARLY_FULL_BYTES = 64 << 20  # less than a stage's output of the smallest model


def _cache_dir() -> Path:
    from ..core.cache import cache_root

    return cache_root()


def _free_bytes(path: Path) -> int | None:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _nearly_full(path: Path) -> bool:
    free = _free_bytes(path)
    return free is not None and free < _NEARLY_FULL_BYTES


def write_traceback(exc: BaseException) -> Path | str:
    """The full traceback, in a file under the cache's `logs/` (or the temp dir when the cache
    cannot be written); the terminal gets one line."""
    import tempfile
    import time
    import traceback

    from .. import __version__
    from ..core.cache import cache_root

    text = (f"swiftformer-qnn {__version__}\n{' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    for place in (lambda: cache_root() / "logs", lambda: Path(tempfile.gettempdir())):
        try:
            directory = place()
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name
            path.write_text(redact(text))
            return path
        except OSError:
            continue
    return "nowhere (no writable cache or temp directory)"


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: unwinds like Ctrl-C so every cleanup on the way runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signame = signal.Signals(signum).name


def _on_signal(signum, _frame):
    # Once: the cleanup runs on the way out; a second signal stops the process at once (what a
    # killed run leaves beside its outputs and in the cache, the next run removes).
    STOPPING.set()  # stage threads waiting on a worker process (a compile) kill it and unwind too
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


class _ReaderGoneSafe:
    """stdout that a reader closing the pipe (`swiftformer-qnn ... | head -1`) cannot fail:
    the rest of the output is dropped and the command ends with its own exit code (0 when it
    passed, 1 for a failed check), never 1 for the lost output. Python ignores SIGPIPE, so a
    write to the closed pipe raises BrokenPipeError here."""

    def __init__(self, stream):
        self._stream = stream
        self.reader_gone = False

    def _gone(self) -> None:
        self.reader_gone = True
        try:  # the interpreter flushes stdout at exit: give that flush somewhere to go
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _TerminalSafeFormatter(logging.Formatter):
    """Warnings quote servers and phones: no escape sequence or binary byte of theirs reaches the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(redact(super().format(record)))


def run_app() -> None:
    # Before the stages' threads start: each would keep an arena of freed memory (core.heap).
    cap_malloc_arenas()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_TerminalSafeFormatter(handler.formatter._fmt if handler.formatter else None))
    if not isinstance(sys.stdout, _ReaderGoneSafe) and sys.stdout is not None:
        sys.stdout = _ReaderGoneSafe(sys.stdout)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        app()
    except BaseException as exc:  # noqa: BLE001  (raised outside a command body, e.g. in a callback)
        code = boundary(exc)
        if code is None:
            raise
        sys.exit(code)

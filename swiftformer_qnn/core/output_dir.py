"""Output directories: the tool replaces only what it made, atomically, one run at a time.

The ownership rule: a directory at an output path is replaced only when it is empty or
holds an output of this tool (its manifest says so). Such an output made for another
request needs `--force`; anything else (a data folder, a file, the current directory) is
never replaced, whatever the options. The decision is taken before the work and taken
again, under a lock on the parent directory, at the moment of the rename: a directory
that appeared meanwhile is judged like one that was there from the start.

A directory the tool made is its own only for the files its manifest lists (`Found.owned`):
a replace carries every other file (a profile written there with `--out`, the user's notes,
`diagnose/` output) into the new directory by hard link before the swap, so a crash at any
point leaves them in the old or the new directory; a file of the user's at a path the new
output writes makes the replace refuse, naming it.

Crash safety: the new directory is built in `.NAME.partial-PID-*` beside the target and
swapped in with one `renameat2(RENAME_EXCHANGE)` where the filesystem offers it, so at
every instant either the old or the new directory is at the path. Elsewhere the old one
is first renamed to `.NAME.old-PID`. Leftovers of a run that died (its PID is gone) are
removed, or for an `.old-PID` whose target is missing, restored, by the next run.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .atomic import _umask, blocking_component
from .errors import OutputDirError
from .interrupt import STOP_SIGNALS

log = logging.getLogger(__name__)


class Occupant(Enum):
    """What is at an output path."""

    ABSENT = "absent"
    EMPTY = "empty"  # an empty directory: replaced freely
    SAME = "same"  # this tool's output for this very request: replaced freely
    OURS = "ours"  # this tool's output for another request: replaced only with force
    FOREIGN = "foreign"  # anything else: never replaced


@dataclass(frozen=True)
class Found:
    occupant: Occupant
    what: str = ""  # what is there, said in a refusal: OURS "an export of ...", FOREIGN "holds ..." / "is ..."
    # SAME / OURS: the files (relative POSIX paths) this tool made there, as its manifest lists
    # them; everything else in the directory is the user's and survives a replace. None: the
    # output has no such list, and the whole directory is the tool's.
    owned: frozenset[str] | None = None


# Judges a non-empty directory at the output path (never called for a file or a symlink).
Inspector = Callable[[Path], Found]


def holds_marker(markers: dict[str, tuple[str, ...]], noun: str) -> Inspector:
    """An inspector for outputs recognised by a JSON file whose `kind` is one of ours
    (`{"report.json": ("swiftformer-qnn.report",)}`); any such output counts as OURS."""
    import json

    def inspect(directory: Path) -> Found:
        for name, kinds in markers.items():
            try:
                kind = json.loads((directory / name).read_text()).get("kind")
            except (OSError, ValueError, AttributeError, RecursionError):
                continue
            if kind in kinds:
                return Found(Occupant.OURS, f"{noun} made by this tool")
        return Found(Occupant.FOREIGN, holds(directory))

    return inspect


def holds(directory: Path, shown: int = 3) -> str:
    """`holds 3 entries (a.txt, data/, notes.md)`: what a refused directory holds."""
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    names = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in entries[:shown]]
    more = ", ..." if len(entries) > shown else ""
    return f"holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({', '.join(names)}{more})"


def _absolute(target: Path) -> Path:
    # abspath, not resolve: a symlink at the target must be judged as itself, not followed.
    return Path(os.path.abspath(target))


def judge(target: Path, inspect: Inspector | None) -> Found:
    """What is at `target` (absolute)."""
    if not os.path.lexists(target):
        return Found(Occupant.ABSENT)
    if target.is_symlink():
        return Found(Occupant.FOREIGN, f"is a symbolic link (to {os.readlink(target)})")
    if not target.is_dir():
        return Found(Occupant.FOREIGN, "is a file")
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:
        return Found(Occupant.FOREIGN, "is the current directory" if target == cwd else "holds the current directory")
    try:
        empty = next(target.iterdir(), None) is None
    except OSError as exc:
        return Found(Occupant.FOREIGN, f"cannot be read ({exc.strerror or exc})")
    if empty:
        return Found(Occupant.EMPTY)
    return inspect(target) if inspect else Found(Occupant.FOREIGN, holds(target))


def check_replaceable(
    target: Path, *, force: bool, inspect: Inspector | None = None, meanwhile: bool = False,
    option: str = "--output-dir",
) -> Found:
    """Raise OutputDirError unless the ownership rule lets this run write `target`; the hints
    name `option`, the caller's own option for the place (`--out`, `--baseline`)."""
    target = _absolute(target)
    found = judge(target, inspect)
    if found.occupant is Occupant.FOREIGN:
        raise OutputDirError(
            f"{target} {'now ' if meanwhile else ''}{found.what}: this tool replaces only what it made, so it "
            "leaves it alone.",
            hint=f"Choose another {option} (an empty or new directory).",
        )
    if found.occupant is Occupant.OURS and not force:
        said = f"meanwhile another run wrote {found.what} there" if meanwhile else f"holds {found.what}"
        raise OutputDirError(f"{target} {said}.", hint=f"Pass --force to replace it, or choose another {option}.")
    return found


# --- leftovers of interrupted runs -----------------------------------------------------------

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<what>partial|old|tmp|stale|removing)-(?P<pid>\d+)(?:-.*)?$")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temp_dir(parent: Path, name: str, what: str = "partial") -> Path:
    """A fresh `.NAME.WHAT-PID-xxxx` directory in `parent`: a later run can tell whether its maker
    is alive. The one way any directory of this tool is built before it is put in place (output
    directories, stage cache entries, toolchains).

    Create it under `signals_held()` inside the `try` that removes it, so that no Ctrl-C can
    land between its creation and that guard."""
    return Path(tempfile.mkdtemp(prefix=f".{name}.{what}-{os.getpid()}-", dir=parent))


_HELD = set(STOP_SIGNALS)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for a few system calls that must not be split (create a temp dir
    and note it; swap a directory in); they are delivered when the block ends. Main thread only
    (signals are handled there).

    Held twice: blocked for this thread (and the processes it starts inherit the mask), and
    deferred at Python's level. A signal sent to the process is taken by any other thread that
    does not block it (onnxruntime's, numpy's), and Python then runs its handler in this thread
    at once: a worker process could be started and its Popen lost to the exception."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    replaced = {}
    for sig in _HELD:
        handler = signal.getsignal(sig)
        if handler is not None and handler != signal.SIG_IGN:  # None: set outside Python, left alone
            replaced[sig] = signal.signal(sig, lambda signum, _frame: arrived.append(signum))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # one blocked until now is recorded here
        for sig, handler in replaced.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):  # each once, to the handler the caller had
            signal.raise_signal(sig)


def tidy(target: Path) -> list[str]:
    """`recover_leftovers` for one output, under the lock: for a run that finds its output up
    to date and so never stages a new one."""
    target = _absolute(Path(target))
    try:
        with locked(target.parent):
            return recover_leftovers(target.parent, target.name)
    except OSError:
        return []


def recover_leftovers(parent: Path, name: str | None = None) -> list[str]:
    """Remove the leftovers of dead runs in `parent` (for the output `name`, or all), and put
    back an old directory a crashed forced replace left hidden while its target is missing.
    Returns what was done, one sentence each."""
    done: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return done
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if not m or (name is not None and m["name"] != name) or pid_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        target = Path(parent) / m["name"]
        try:
            if m["what"] == "old" and not os.path.lexists(target):
                os.rename(path, target)
                done.append(f"Restored {target} from an interrupted replace ({path.name}).")
            else:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                done.append(f"Removed {path}, left by an interrupted run.")
        except OSError:
            continue  # another run got there first, or it is not ours to touch: leave it
    for line in done:
        log.warning(line)
    return done


# --- the lock and the swap -----------------------------------------------------------------


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a directory (flock on its descriptor; the kernel releases it when
    the process dies). Held only for a decision and a rename, so waiting is brief."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("Waiting for another swiftformer-qnn run writing into %s ...", directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the OS or filesystem cannot."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _entries(root: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(relative POSIX path, entry) of everything below `root`, directories before their
    contents; symbolic links are entries, never followed."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        yield path, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(root, path)


def users_files(directory: Path, owned: frozenset[str]) -> list[str]:
    """What in `directory` the tool did not make: every file, link or empty folder whose path
    is not in `owned` (folders only as the paths of what they hold)."""
    found: list[str] = []
    holding: set[str] = set()
    entries = list(_entries(directory))
    for rel, entry in reversed(entries):  # contents before their folder
        if entry.is_dir(follow_symlinks=False):
            if rel in holding:
                continue
            found.append(rel + "/")  # an empty folder of the user's: kept too
        elif rel not in owned:
            found.append(rel)
        parent = rel.rpartition("/")[0]
        while parent and parent not in holding:
            holding.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(found)


def carry_over(old: Path, work: Path, owned: frozenset[str]) -> list[str]:
    """Put the user's files of `old` (all but `owned`) into `work` at the same paths, as hard
    links (a copy where the filesystem has none), before `work` replaces `old`: both
    directories then hold them until the swap, so no crash can lose them. Raises
    OutputDirError, naming them, when the new output writes a path the user's files hold.
    Returns the paths carried over."""
    keep = users_files(old, owned)
    clash = [rel for rel in keep if os.path.lexists(work / rel.rstrip("/"))
             and not (rel.endswith("/") and (work / rel).is_dir())]
    if clash:
        shown = ", ".join(clash[:3]) + (", ..." if len(clash) > 3 else "")
        raise OutputDirError(
            f"{old} holds {len(clash)} file{'s' if len(clash) != 1 else ''} this tool did not make at "
            f"paths its new output writes ({shown}): replacing the directory would lose "
            f"{'them' if len(clash) != 1 else 'it'}.",
            hint="Move them out of the directory and run again.",
        )
    for rel in keep:
        src, dst = old / rel.rstrip("/"), work / rel.rstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            dst.mkdir(exist_ok=True)
            shutil.copystat(src, dst)
            continue
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:  # no hard links here (or across): a copy, links kept as links
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
    return keep


def swap_in(work: Path, target: Path) -> None:
    """Put `work` at `target` (a directory this run may replace), leaving no moment with neither."""
    with signals_held():
        if not os.path.lexists(target):
            os.rename(work, target)
            return
        if _exchange(work, target):
            old = work  # now the old directory; a crash before it is removed leaves a dead partial
        else:
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)  # a crash between these two renames: the next run restores `old`
            os.rename(work, target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_output_dir(
    target: Path, *, force: bool, inspect: Inspector | None = None, kept: list[str] | None = None,
    option: str = "--output-dir",
) -> Iterator[Path]:
    """Build an output directory in a temporary sibling and move it into place on success.

    `target` is replaced only under the ownership rule (see the module docstring), checked
    before the work and again under the lock at the rename; the files of the user's in it
    (all but `Found.owned`) are carried into the new directory, and their paths appended to
    `kept`. On any error, Ctrl-C or SIGTERM the temporary directory is removed and `target`
    is left as it was.
    """
    target = _absolute(Path(target))
    parent = target.parent
    check_replaceable(target, force=force, inspect=inspect, option=option)
    work: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with locked(parent):
            recover_leftovers(parent, target.name)
        with signals_held():
            work = temp_dir(parent, target.name)
        os.chmod(work, 0o777 & ~_umask())  # mkdtemp's 0700 would make the output private
    except BaseException as exc:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputDirError(
                f"Cannot write the output directory {target}: {blocking_component(target) or exc.strerror or exc}.",
                hint=f"Choose a writable place with {option}.",
            ) from None
        raise
    try:
        yield work
        with locked(parent):
            found = check_replaceable(target, force=force, inspect=inspect, meanwhile=True, option=option)
            if found.owned is not None:
                carried = carry_over(target, work, found.owned)
                if kept is not None:
                    kept.extend(carried)
            swap_in(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def place(src: Path, dst: Path) -> None:
    """Put a cached file into an output directory as a file of its own: a reflink (a
    copy-on-write clone) where the filesystem offers one, else a copy. Never a hard link:
    an edit in an output must reach neither the cache nor another output."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        dst.unlink()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


_FICLONE = 0x40049409  # FICLONE from linux/fs.h: share the blocks until either file is written

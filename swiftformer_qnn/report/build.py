"""Load profiles, build the report, write its directory atomically: what `report` runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import OutputDirError, ProfileError, UsageError
from ..core.output_dir import holds_marker, staged_output_dir
from ..htp.estimate import ESTIMATE_JSON, Estimate
from ..htp.record import COMPILE_FAILURE, COMPILE_RECORD
from ..measure.schema import find_profiles, load_profile
from ..pipeline.artifacts import read_compile_structure
from .analysis import LoadedProfile, build_report, compare_profiles
from .charts import Chart, render_charts
from .html import report_html
from .markdown import comparison_md, report_md, structure_md
from .model import (
    COMPARISON_KIND,
    REPORT_KIND,
    STRUCTURE_COMPARISON_KIND,
    Comparison,
    Report,
    SkippedInput,
    StructureComparison,
)
from .structure import compare_structures

REPORTS_DIR = Path("build") / "reports"  # ignored by git, like exports and profile runs
PROFILE_SUFFIX = ".profile.json"


@dataclass(frozen=True)
class LoadResult:
    profiles: list[LoadedProfile]
    skipped: list[SkippedInput]


@dataclass(frozen=True)
class ReportResult:
    report: Report
    out_dir: Path
    charts: list[Chart]


@dataclass(frozen=True)
class ComparisonResult:
    comparison: Comparison | StructureComparison
    out_dir: Path


def input_label(path: Path) -> str:
    """The path as the report names it: relative to the working directory when below it."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_inputs(paths: Sequence[Path], *, skip_invalid: bool = False) -> LoadResult:
    """Expand directories, read and validate every profile.

    An invalid file stops everything unless `skip_invalid`, in which case it is listed in
    `skipped`. A directory with no profile is an error either way: it is almost always a
    wrong path.
    """
    if not paths:
        raise UsageError(
            "No profile given.", hint="Pass profile files or directories, e.g. `report profiles/reference`."
        )
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = find_profiles([p])
            if not found:
                raise ProfileError(f"{p}: no *{PROFILE_SUFFIX} files in this directory.")
            files.extend(found)
        else:
            files.append(p)
    seen: set[Path] = set()
    loaded: list[LoadedProfile] = []
    skipped: list[SkippedInput] = []
    for f in files:
        key = f.resolve()
        if key in seen:  # the same file through a directory and by name
            continue
        seen.add(key)
        try:
            loaded.append(LoadedProfile(label=input_label(f), profile=load_profile(f)))
        except ProfileError as exc:
            if not skip_invalid:
                raise ProfileError(
                    exc.message, hint="Fix or remove it, or pass --skip-invalid to report on the rest."
                ) from None
            skipped.append(SkippedInput(path=input_label(f), reason=exc.message))
    if not loaded:
        raise ProfileError(f"None of the {len(seen)} file(s) given is a valid profile.",
                           hint="Pass *.profile.json files that `swiftformer-qnn profile` wrote (the skipped ones say why).")
    return LoadResult(loaded, skipped)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "report"


def default_name(paths: Sequence[Path]) -> str:
    """`profiles/reference` -> `reference`; several inputs -> their names joined by `+`."""
    stems = []
    for p in map(Path, paths):
        name = p.resolve().name if p.is_dir() else p.resolve().parent.name if p.name == COMPILE_RECORD else p.name
        stems.append(name.removesuffix(PROFILE_SUFFIX).removesuffix(".json"))
    slug = _slug("+".join(stems))
    if len(slug) > 60:  # keep it short and still unique to these inputs
        digest = hashlib.sha256("\0".join(sorted(stems)).encode()).hexdigest()[:8]
        slug = f"{slug[:48].rstrip('+-.')}-{digest}"
    return slug


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise UsageError(f"--name {name!r} is not a plain directory name.", hint="Use --out for a path.")
    return name


def _prepare_out_dir(out_dir: Path, kinds: tuple[str, ...]) -> None:
    """Refuse to replace a directory that is not an earlier report (an `--out` typo must not delete data)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputDirError(f"{out_dir} exists and is not a directory.", hint="Choose another --out.")
        entries = list(out_dir.iterdir())
        if entries and not any(_is_our_json(out_dir / f, kinds) for f in ("report.json", "compare.json")):
            raise OutputDirError(
                f"{out_dir} exists and is not a report directory; not replacing it.",
                hint="Choose another --out or --name.",
            )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(
            f"Cannot create {out_dir.parent}: {exc.strerror or exc}.", hint="Choose another --out."
        ) from None
    if not os.access(out_dir.parent, os.W_OK):
        raise OutputDirError(f"{out_dir.parent} is not writable.", hint="Choose another --out.")


# A report directory this tool wrote (replaced by the next report of the same name); nothing else is.
_KINDS = (REPORT_KIND, COMPARISON_KIND, STRUCTURE_COMPARISON_KIND)
_REPORT_OWNER = holds_marker({f: _KINDS for f in ("report.json", "compare.json")}, "a report")


def _is_our_json(path: Path, kinds: tuple[str, ...]) -> bool:
    try:
        return json.loads(path.read_text()).get("kind") in kinds
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def write_report(report: Report, out_dir: Path) -> list[Chart]:
    """report.json, report.md, report.html and the PNGs, built in a temporary sibling and renamed into place."""
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, _KINDS)
    with staged_output_dir(out_dir, force=True, inspect=_REPORT_OWNER, option="--out") as work:
        (work / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
        charts = render_charts(report, work)
        (work / "report.md").write_text(report_md(report, charts))
        (work / "report.html").write_text(report_html(report, charts, work))
    return charts


def make_report(
    paths: Sequence[Path],
    *,
    out: Path | None = None,
    name: str | None = None,
    skip_invalid: bool = False,
    reports_dir: Path = REPORTS_DIR,
) -> ReportResult:
    """`swiftformer-qnn report PATHS...`: everything but printing."""
    loaded = load_inputs(paths, skip_invalid=skip_invalid)
    name = _check_name(name) if name else default_name(paths)
    report = build_report(loaded.profiles, name=name, skipped=loaded.skipped)
    out_dir = Path(out) if out else Path(reports_dir) / name
    charts = write_report(report, out_dir)
    return ReportResult(report=report, out_dir=out_dir, charts=charts)


def _is_compile(path: Path) -> bool:
    """A compile to compare: a `compile.json` (or the `compile_failed.json` a version left), or a
    directory (an export, a `qnn-<version>/`) with no profiles in it: one holding
    `*.profile.json` is a profile directory, and its error should say so."""
    if path.is_dir():
        return next(path.rglob(f"*{PROFILE_SUFFIX}"), None) is None
    return path.name in (COMPILE_RECORD, COMPILE_FAILURE)


def _estimate_beside(compile_json: Path) -> Estimate | None:
    """The export's estimate (its estimate stage's `estimate.json`, beside `compile.json`), if any."""
    path = Path(compile_json).parent / ESTIMATE_JSON
    if not path.is_file():
        return None
    try:
        return Estimate.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: not an estimate this tool reads ({str(exc).splitlines()[0][:200]}).") from None


def make_comparison(
    a: Path, b: Path, *, out: Path | None = None, name: str | None = None, reports_dir: Path = REPORTS_DIR
) -> ComparisonResult:
    """`swiftformer-qnn report --compare A B`: B against A, written as compare.md / compare.json.

    Two profiles compare latency per block; two compiles (export directories or compile.json)
    compare the graphs QNN built."""
    a, b = Path(a), Path(b)
    kinds = {_is_compile(a), _is_compile(b)}
    if kinds == {True, False}:
        raise UsageError(
            "--compare takes two profiles or two compiles, not one of each.",
            hint="Profiles: *.profile.json files; compiles: export directories or their compile.json.",
        )
    cmp: Comparison | StructureComparison
    if True in kinds:
        found = [read_compile_structure(p, side="compile") for p in (a, b)]
        cmp = compare_structures(input_label(a), found[0].record, input_label(b), found[1].record,
                                 estimates=(_estimate_beside(found[0].path), _estimate_beside(found[1].path)))
        markdown = structure_md(cmp)
    else:
        cmp = compare_profiles(*(LoadedProfile(label=input_label(p), profile=load_profile(p)) for p in (a, b)))
        markdown = comparison_md(cmp)
    name = _check_name(name) if name else f"compare-{default_name([a])}-vs-{default_name([b])}"
    out_dir = Path(out) if out else Path(reports_dir) / name
    _prepare_out_dir(out_dir, _KINDS)
    with staged_output_dir(out_dir, force=True, inspect=_REPORT_OWNER, option="--out") as work:
        (work / "compare.json").write_text(cmp.model_dump_json(indent=2) + "\n")
        (work / "compare.md").write_text(markdown)
    return ComparisonResult(comparison=cmp, out_dir=out_dir)

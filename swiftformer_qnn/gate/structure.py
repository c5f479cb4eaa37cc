"""The device-free gate: compile structure across QNN versions, from the compiles' records.

What can be checked without a phone: every QNN version still compiles (with CPU fallback
disabled, so every node is on the HTP), and the number of HTP ops and the context binary do
not grow beyond a threshold. These figures are deterministic, so there is no noise to model:
a change is a change.

The gate reads one format: `compile.json` (`compile_record.CompileRecord`), which every
compile writes (an export, `compile`, each QNN version of `export --qnn` / `compile --qnn` /
`toolchains compare`, and a committed structural baseline holds one), plus the
`compile_failed.json` a version that did not compile leaves instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import OutputDirError, ProfileError, UsageError
from ..htp.record import (
    COMPILE_FAILURE,
    COMPILE_RECORD,
    ON_THE_HTP,
    CompileFailure,
    CompileRecord,
    disagreements,
    read_compile_failure,
    read_compile_record,
)
from ..pipeline.artifacts import read_manifest
from .rules import GateRules
from .verdict import GateVerdict, Method, MetricResult, MetricStatus, SideInfo, make_verdict

_IDENTITY = ("variant", "precision", "soc", "input_shape")


@dataclass(frozen=True)
class FoundCompile:
    """One compile record and the file it was read from."""

    record: CompileRecord
    path: Path

    @property
    def qnn_version(self) -> str:
        return self.record.qnn_version

    def identity(self, key: str) -> Any:
        return self.record.soc if key == "soc" else getattr(self.record.model, key)


@dataclass(frozen=True)
class FoundFailure:
    """A QNN version that did not compile, and where it says so."""

    failure: CompileFailure
    path: Path

    @property
    def qnn_version(self) -> str:
        return self.failure.qnn_version

    @property
    def error(self) -> str:
        return f"{self.failure.status}: {self.failure.error}"

    def identity(self, key: str) -> Any:
        return None if key == "soc" else getattr(self.failure.model, key)


@dataclass
class CompileSide:
    """Every compile found under the paths of one side."""

    compiles: list[FoundCompile] = field(default_factory=list)
    failures: list[FoundFailure] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [c.path for c in self.compiles] + [f.path for f in self.failures]

    def extend(self, other: CompileSide) -> None:
        self.compiles += other.compiles
        self.failures += other.failures


# --------------------------------------------------------------------------- reading


def read_compile_file(path: Path) -> CompileSide:
    """The compile (or the failure) one `compile.json` / `compile_failed.json` records."""
    path = Path(path)
    if path.name == COMPILE_FAILURE:
        return CompileSide(failures=[FoundFailure(read_compile_failure(path), path)])
    record = read_compile_record(path)
    # An export's compile.json is vouched for by the export's manifest; any record by the
    # binary and op trace beside it. An edited record is never gated as the compile.
    manifest = read_manifest(path.parent)
    stage = manifest.stage("compile") if manifest else None
    if stage is not None and COMPILE_RECORD in stage.outputs:
        try:
            manifest.artifact(path.parent, "compile", COMPILE_RECORD)
        except OutputDirError as exc:
            raise ProfileError(exc.message, hint=exc.hint) from None
    wrong = disagreements(path.parent, record)
    if wrong:
        raise ProfileError(f"{path}: the files beside it disagree with it ({'; '.join(wrong)}).",
                           hint="Compile again (the same export or compile command rebuilds what no longer matches).")
    return CompileSide(compiles=[FoundCompile(record, path)])


def _records_in(directory: Path) -> list[Path]:
    """The compile records of a directory: its own `compile.json` (or `compile_failed.json`)
    stands for it (an export's `qnn-versions/` beside it is gated by naming it); a directory
    with neither is searched below (`build/` with several exports, a `qnn-versions/`)."""
    for name in (COMPILE_RECORD, COMPILE_FAILURE):
        if (directory / name).is_file():
            return [directory / name]
    found = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += _records_in(sub)
    return found


def read_compile_side(paths: Sequence[Path], *, side: str = "candidate") -> CompileSide:
    """Every compile under `paths`: files as given, directories searched (see `_records_in`)."""
    if not paths:
        raise ProfileError(f"No {side} given.", hint=f"Pass --{side} FILE_OR_DIR.")
    out = CompileSide()
    for p in map(Path, paths):
        if p.is_dir():
            files = _records_in(p)
            if not files:
                raise ProfileError(
                    f"{p}: no {COMPILE_RECORD} below this {side} directory.",
                    hint="Export or compile first (swiftformer-qnn export, or export --qnn for several QNN versions).",
                )
            for f in files:
                out.extend(read_compile_file(f))
        elif p.is_file():
            out.extend(read_compile_file(p))
        else:
            raise ProfileError(f"{p}: no such compile record or directory.")
    return out


def read_compile_structure(path: Path, *, side: str = "candidate") -> FoundCompile:
    """The one compile a file or directory holds (an error if it holds several or a failure)."""
    side = read_compile_side([Path(path)], side=side)
    return only_compile(side, str(path), hint="Point at one of them, e.g. its qnn-<version>/ directory.")


# --------------------------------------------------------------------------- gating


def _type_changes(b: CompileRecord, c: CompileRecord, limit: int = 4) -> str:
    if b.htp_op_types is None or c.htp_op_types is None:
        return ""
    changed = sorted(
        ((t, b.htp_op_types.get(t, 0), c.htp_op_types.get(t, 0)) for t in set(b.htp_op_types) | set(c.htp_op_types)
         if b.htp_op_types.get(t, 0) != c.htp_op_types.get(t, 0)),
        key=lambda x: (-abs(x[2] - x[1]), x[0]),
    )
    if not changed:
        return ""
    shown = ", ".join(f"{t} {x} -> {y}" for t, x, y in changed[:limit])
    return f" Op types: {shown}" + (f", +{len(changed) - limit} more" if len(changed) > limit else "") + "."


def _growth(metric: str, unit: str, b: int | None, c: int | None, limit: float, extra: str = "") -> MetricResult:
    if b is None or c is None:
        status = MetricStatus.MISSING_IN_BASELINE if b is None else MetricStatus.MISSING_IN_CANDIDATE
        side = "baseline" if b is None else "candidate"
        return MetricResult(
            metric=metric, kind="structure", unit=unit, baseline=b, candidate=c, method=Method.NONE, status=status,
            fails=False,
            reason=f"{metric}: the {side} compile's QNN release wrote no op trace, so its HTP ops are not counted.",
        )
    change = c - b
    rel = change / b if b else None
    grew = change > 0 and (rel is None or rel > limit)
    if grew:
        status, verb = MetricStatus.REGRESSION, f"grew beyond the {limit * 100:g}% limit"
    elif change < 0:
        status, verb = MetricStatus.IMPROVEMENT, "shrank"
    else:
        status, verb = MetricStatus.UNCHANGED, f"within the {limit * 100:g}% limit"
    size = f"{b:,} -> {c:,} {unit} ({change:+,d}" + (f", {rel * 100:+.1f}%)" if rel is not None else ")")
    return MetricResult(
        metric=metric, kind="structure", unit=unit, baseline=b, candidate=c, change=change,
        relative_change=rel, n_baseline=1, n_candidate=1, relative_threshold=limit,
        method=Method.STRUCTURE, status=status, fails=grew, reason=f"{metric} {verb}: {size}.{extra}",
    )


def _did_not_compile(metric: str, failure: FoundFailure) -> MetricResult:
    return MetricResult(
        metric=metric, kind="structure", unit="compile", method=Method.STRUCTURE, status=MetricStatus.REGRESSION,
        fails=True, n_baseline=1, reason=f"QNN {failure.qnn_version} did not compile: {failure.error}",
    )


def structure_mismatches(baseline: FoundCompile, candidate: FoundCompile | FoundFailure) -> list[str]:
    """What differs between two compiles' subjects, where both records say."""
    out = []
    for k in _IDENTITY:
        b, c = baseline.identity(k), candidate.identity(k)
        if b is not None and c is not None and b != c:
            out.append(f"{k}: {b} -> {c}")
    return out


def _metric_tags(candidates: Sequence[FoundCompile | FoundFailure]) -> list[str]:
    """`@<qnn version>` per candidate when several are gated, numbered when a version repeats."""
    if len(candidates) <= 1:
        return [""] * len(candidates)
    seen: dict[str, int] = {}
    tags = []
    for cand in candidates:
        seen[cand.qnn_version] = seen.get(cand.qnn_version, 0) + 1
        n = seen[cand.qnn_version]
        tags.append(f"@{cand.qnn_version}" + (f"#{n}" if n > 1 else ""))
    return tags


def _identity_of(items: Sequence[FoundCompile]) -> dict[str, Any]:
    """The identity fields all `items` share (None where they differ or nobody says)."""
    out: dict[str, Any] = {}
    for k in ("variant", "precision", "input_shape"):
        values = {json.dumps(c.identity(k)) for c in items}
        out[k] = items[0].identity(k) if len(values) == 1 and items else None
    return out


def _graph_cost_results(b: CompileRecord, c: CompileRecord, tag: str) -> list[MetricResult]:
    """Layout ops and float islands (graph_cost.py): each should only ever go down, so any
    growth is a regression. Records without an op trace (QNN 2.47) have neither."""
    if b.graph_cost is None or c.graph_cost is None:
        return []
    bc, cc = b.graph_cost, c.graph_cost
    return [
        _growth(f"layout_ops{tag}", "Reshape/Transpose ops", bc.layout_ops, cc.layout_ops, 0.0),
        _growth(f"float_islands{tag}", "float islands", bc.float_islands, cc.float_islands, 0.0),
    ]


def gate_structure(
    baseline: FoundCompile,
    candidates: Sequence[FoundCompile],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
    failures: Sequence[FoundFailure] = (),
) -> GateVerdict:
    """Each candidate compile (one per QNN version, say) against the baseline compile; a
    candidate version that did not compile fails the gate."""
    if not candidates and not failures:
        raise ProfileError("No candidate compile.")
    diffs = []
    for cand in candidates:
        diff = structure_mismatches(baseline, cand)
        if diff and not allow_mismatch:
            raise ProfileError(
                f"{cand.path} compiles something else than the baseline ({'; '.join(diff)}).",
                hint="Compare like with like, or pass --allow-mismatch to gate them anyway.",
            )
        diffs += [f"{cand.qnn_version}: {d}" for d in diff]
    s = rules.structure
    results: list[MetricResult] = []
    everything: list[FoundCompile | FoundFailure] = [*candidates, *failures]
    b = baseline.record
    for cand, tag in zip(everything, _metric_tags(everything), strict=True):
        if isinstance(cand, FoundFailure):
            results.append(_did_not_compile(f"compile{tag}", cand))
            continue
        c = cand.record
        results.append(_growth(f"htp_op_count{tag}", "ops", b.htp_op_count, c.htp_op_count,
                               s.max_op_count_growth, _type_changes(b, c)))
        results += _graph_cost_results(b, c, tag)
        results.append(_growth(f"context_binary_bytes{tag}", "bytes", b.context_binary_bytes,
                               c.context_binary_bytes, s.max_context_growth))
    return make_verdict(
        mode="structure",
        baseline=SideInfo(paths=[str(baseline.path)], qnn_versions=[baseline.qnn_version], profiles=1,
                          **_identity_of([baseline])),
        candidate=SideInfo(
            paths=[str(c.path) for c in everything],
            qnn_versions=sorted({c.qnn_version for c in everything}),
            profiles=len(everything),
            **(_identity_of(list(candidates)) if candidates else {}),
        ),
        rules=rules,
        mismatches=diffs,
        notes=["Structure only (no device): HTP op count, layout ops (Reshape/Transpose) and float islands "
               "(Dequantize..Quantize inside the graph), all from QNN's op trace, and context binary size of each "
               f"compile; every compile that succeeded was {ON_THE_HTP}."]
        + ([f"Compared despite differences ({'; '.join(diffs)}): --allow-mismatch was given."] if diffs else []),
        results=results,
    )


def check_disjoint(baseline_files: Sequence[Path], candidate_files: Sequence[Path]) -> None:
    """Refuse a gate whose sides share a file: a measurement compared with itself passes trivially."""
    def resolved(files: Sequence[Path]) -> dict[Path, Path]:
        return {Path(f).resolve(): Path(f) for f in files}

    shared = sorted(resolved(baseline_files).keys() & resolved(candidate_files).keys())
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise UsageError(
            f"--baseline and --candidate share {shared[0]}{more}: a gate of something against itself passes trivially.",
            hint="Point --candidate at the new measurements.",
        )


def only_compile(side: CompileSide, what: str, *, hint: str) -> FoundCompile:
    """The one successful compile a baseline must be; anything else is an input error naming `what`."""
    if side.failures:
        f = side.failures[0]
        raise ProfileError(f"{what}: QNN {f.qnn_version} did not compile ({f.error}) at {f.path}.")
    if len(side.compiles) != 1:
        raise UsageError(
            f"{what} holds {len(side.compiles)} compiles (QNN "
            f"{', '.join(c.qnn_version for c in side.compiles)}); one is needed here.",
            hint=hint,
        )
    return side.compiles[0]


def pick_variant(side: CompileSide, variant: str, what: str) -> CompileSide:
    unknown = [c.path for c in [*side.compiles, *side.failures] if c.identity("variant") is None]
    if unknown:
        raise UsageError(
            f"--variant {variant}: the {what} compile {unknown[0]} does not say which variant it is.",
            hint="Point at export directories (their compile.json names the variant), or drop --variant.",
        )
    kept = CompileSide([c for c in side.compiles if c.identity("variant") == variant],
                       [f for f in side.failures if f.identity("variant") == variant])
    if not kept.compiles and not kept.failures:
        found = sorted({c.identity("variant") for c in [*side.compiles, *side.failures]})
        raise ProfileError(f"No {variant} compiles in the {what} (found: {', '.join(found)}).")
    return kept


def gate_manifests(
    baseline: Sequence[Path],
    candidate: Sequence[Path],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
    variant: str | None = None,
) -> GateVerdict:
    """`gate_structure` on files or directories (see `read_compile_side`); the baseline is one compile.

    `variant` keeps only that variant's compiles on each side (a build directory holds the
    model's export and the standalone block's).
    """
    base = read_compile_side(baseline, side="baseline")
    cand = read_compile_side(candidate, side="candidate")
    check_disjoint(base.files, cand.files)
    if variant is not None:
        base = pick_variant(base, variant, "baseline")
        cand = pick_variant(cand, variant, "candidate")
    baseline_compile = only_compile(
        base, f"The structural baseline ({', '.join(map(str, baseline))})",
        hint="Point --baseline at one compile: a committed baseline directory, one export, or one "
        "qnn-versions/qnn-<version>/ directory (or pick with --variant).",
    )
    return gate_structure(baseline_compile, cand.compiles, rules, allow_mismatch=allow_mismatch,
                          failures=cand.failures)

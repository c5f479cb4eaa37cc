"""The device-free gate: compile structure across QNN versions, from the compiles' records.

What can be checked without a phone: every QNN version still compiles (with CPU fallback
disabled, so every node is on the HTP), and the number of HTP ops and the context binary do
not grow beyond a threshold. These figures are deterministic, so there is no noise to model:
a change is a change.

The gate reads one format: `compile.json` (`htp.record.CompileRecord`), which every
compile writes (an export, `compile`, each QNN version of `export --qnn` / `compile --qnn` /
`toolchains compare`, and a committed structural baseline holds one), plus the
`compile_failed.json` a version that did not compile leaves instead (found under paths by
`pipeline.artifacts.read_compile_side`), and compares two by `htp.diff`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import ProfileError, UsageError
from ..htp.diff import diff_compiles
from ..htp.record import (
    ON_THE_HTP,
)
from ..pipeline.artifacts import CompileSide, FoundCompile, FoundFailure, only_compile, read_compile_side
from .rules import GateRules
from .verdict import GateVerdict, Method, MetricResult, MetricStatus, SideInfo, make_verdict

# --------------------------------------------------------------------------- gating


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


def structure_mismatches(baseline: FoundCompile, candidate: FoundCompile) -> list[str]:
    """What differs between two compiles' subjects, where both records say."""
    return [f"{k}: {b} -> {c}" for k, b, c in diff_compiles(baseline.record, candidate.record).differ]


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
        diff = diff_compiles(b, cand.record)
        for figure, d in diff.figures:
            if figure.gate is None or (figure.optional and None in (d.a, d.b)):
                continue
            limit = getattr(s, figure.gate) if isinstance(figure.gate, str) else figure.gate
            types = diff.describe_op_types() if figure.name == "htp_op_count" else ""
            results.append(_growth(f"{figure.name}{tag}", figure.unit, d.a, d.b, limit,
                                   f" Op types: {types}." if types else ""))
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
        notes=["Structure only (no device): HTP op count, layout ops (Reshape/Transpose), float islands "
               "(Dequantize..Quantize inside the graph) and Convert ops, all from QNN's op trace, and context binary size of each "
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

"""The device-free gate: compile structure across QNN versions, from compile manifests.

What can be checked without a phone: every op stays on the HTP, the HTP op count and the
context binary do not grow beyond a threshold. These figures are deterministic, so there is
no noise to model: a change is a change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..artifacts import MANIFEST_KIND, MANIFEST_NAME
from ..errors import ProfileError, UsageError
from .rules import GateRules
from .verdict import GateVerdict, Method, MetricResult, MetricStatus, SideInfo, make_verdict

# Where the figures are read from in a compile manifest. The compile pipeline writes them
# as the results of its `compile` stage (artifacts.StageRecord.results, see
# pipeline/compile.py); a plain JSON with a top-level `compile` object carrying the same keys
# is read the same way. For each field, the first key present wins: today's compile stage
# records `htp_nodes` (ONNX nodes placed in the QNN graph), the brief's `htp_op_count` is
# preferred when a later compile stage writes it.
COMPILE_STAGE = "compile"
MANIFEST_KEYS: dict[str, tuple[str, ...]] = {
    "qnn_version": ("qnn_sdk_version",),
    "htp_fraction": ("htp_fraction",),
    "htp_op_count": ("htp_op_count", "htp_nodes"),
    "context_binary_bytes": ("context_binary_bytes",),
}


class CompileStructure(BaseModel):
    """What one compile produced, as far as the structural gate cares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qnn_version: str
    htp_fraction: float = Field(ge=0, le=1)  # share of the graph's ops placed on the HTP
    htp_op_count: int = Field(ge=0)
    context_binary_bytes: int = Field(ge=0)
    path: str | None = None  # the manifest it was read from
    # What was compiled, when the manifest says (an export manifest's `request`): compiles
    # of different things are not compared unless allowed.
    variant: str | None = None
    precision: str | None = None
    soc: str | None = None
    input_shape: list[int] | None = None


_IDENTITY = ("variant", "precision", "soc", "input_shape")


def _compile_fields(data: Any, path: Path) -> dict[str, Any]:
    if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND and isinstance(data.get("stages"), list):
        for stage in data["stages"]:
            if isinstance(stage, dict) and stage.get("name") == COMPILE_STAGE:
                return stage.get("results") or {}
        raise ProfileError(f"{path}: an export manifest without a {COMPILE_STAGE!r} stage.",
                           hint="Run swiftformer-qnn compile first, then gate its manifest.")
    if isinstance(data, dict) and isinstance(data.get(COMPILE_STAGE), dict):
        return data[COMPILE_STAGE]
    raise ProfileError(f"{path}: not a compile manifest (no {COMPILE_STAGE!r} stage or object).")


def read_compile_structure(path: Path) -> CompileStructure:
    """The structure figures of one compile manifest (a file, or a directory holding manifest.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such compile manifest.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a JSON manifest ({exc}).") from None
    fields = _compile_fields(data, path)
    picked: dict[str, object] = {}
    absent = []
    for ours, keys in MANIFEST_KEYS.items():
        key = next((k for k in keys if k in fields), None)
        if key is None:
            absent.append(f"{COMPILE_STAGE}.{keys[0]}")
        else:
            picked[ours] = fields[key]
    if absent:
        raise ProfileError(
            f"{path}: the compile results lack {', '.join(absent)}.",
            hint="Recompile with a swiftformer-qnn that records the compile structure.",
        )
    request = data.get("request") if isinstance(data.get("request"), dict) else {}
    identity = {k: request[k] for k in _IDENTITY if request.get(k) is not None}
    try:
        return CompileStructure(**picked, **identity, path=str(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ProfileError(f"{path}: compile.{'.'.join(map(str, first['loc']))}: {first['msg']}.") from None


def find_manifests(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories expand to every manifest.json below them, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            below = sorted(p.rglob(MANIFEST_NAME))
            if not below:
                raise ProfileError(f"{p}: no {MANIFEST_NAME} below this directory.")
            found.extend(below)
        else:
            found.append(p)
    return found


def _growth(metric: str, unit: str, b: int, c: int, limit: float) -> MetricResult:
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
        method=Method.STRUCTURE, status=status, fails=grew, reason=f"{metric} {verb}: {size}.",
    )


def _coverage(metric: str, b: float, c: float, minimum: float) -> MetricResult:
    eps = 1e-9
    below, dropped = c < minimum - eps, c < b - eps
    if below or dropped:
        status = MetricStatus.REGRESSION
        why = f"under the required {minimum * 100:g}%" if below else "lower than the baseline"
    elif c > b + eps:
        status, why = MetricStatus.IMPROVEMENT, "higher than the baseline"
    else:
        status, why = MetricStatus.UNCHANGED, f"at least {minimum * 100:g}%"
    return MetricResult(
        metric=metric, kind="structure", unit="fraction", baseline=b, candidate=c, change=c - b,
        relative_change=(c - b) / b if b else None, n_baseline=1, n_candidate=1,
        method=Method.STRUCTURE, status=status, fails=status is MetricStatus.REGRESSION,
        reason=f"{metric}: {b * 100:.1f}% -> {c * 100:.1f}% of ops on the HTP, {why}.",
    )


def structure_mismatches(baseline: CompileStructure, candidate: CompileStructure) -> list[str]:
    """What differs between two compiles' subjects, where both manifests say."""
    out = []
    for k in _IDENTITY:
        b, c = getattr(baseline, k), getattr(candidate, k)
        if b is not None and c is not None and b != c:
            out.append(f"{k}: {b} -> {c}")
    return out


def gate_structure(
    baseline: CompileStructure,
    candidates: Sequence[CompileStructure],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
) -> GateVerdict:
    """Each candidate compile (one per QNN version, say) against the baseline compile."""
    if not candidates:
        raise ProfileError("No candidate compile manifest.")
    diffs = []
    for cand in candidates:
        diff = structure_mismatches(baseline, cand)
        if diff and not allow_mismatch:
            raise ProfileError(
                f"{cand.path or 'a candidate'} compiles something else than the baseline ({'; '.join(diff)}).",
                hint="Compare like with like, or pass --allow-mismatch to gate them anyway.",
            )
        diffs += [f"{cand.qnn_version}: {d}" for d in diff]
    s = rules.structure
    results: list[MetricResult] = []
    seen: dict[str, int] = {}
    for cand in candidates:
        # Metric ids name the candidate's QNN version when several are gated at once.
        tag = ""
        if len(candidates) > 1:
            seen[cand.qnn_version] = seen.get(cand.qnn_version, 0) + 1
            tag = f"@{cand.qnn_version}" + (f"#{seen[cand.qnn_version]}" if seen[cand.qnn_version] > 1 else "")
        results.append(_coverage(f"htp_fraction{tag}", baseline.htp_fraction, cand.htp_fraction, s.min_htp_fraction))
        results.append(_growth(f"htp_op_count{tag}", "ops", baseline.htp_op_count, cand.htp_op_count,
                               s.max_op_count_growth))
        results.append(_growth(f"context_binary_bytes{tag}", "bytes", baseline.context_binary_bytes,
                               cand.context_binary_bytes, s.max_context_growth))
    return make_verdict(
        mode="structure",
        baseline=SideInfo(paths=[baseline.path or "<baseline>"], qnn_versions=[baseline.qnn_version], profiles=1,
                          variant=baseline.variant, precision=baseline.precision, input_shape=baseline.input_shape),
        candidate=SideInfo(
            paths=[c.path or f"<candidate {i}>" for i, c in enumerate(candidates)],
            qnn_versions=sorted({c.qnn_version for c in candidates}),
            profiles=len(candidates),
        ),
        rules=rules,
        mismatches=diffs,
        notes=["Structure only (no device): HTP coverage, HTP op count and context binary size from compile manifests."]
        + ([f"Compared despite differences ({'; '.join(diffs)}): --allow-mismatch was given."] if diffs else []),
        results=results,
    )


def gate_manifests(
    baseline: Sequence[Path], candidate: Sequence[Path], rules: GateRules, *, allow_mismatch: bool = False
) -> GateVerdict:
    """`gate_structure` on manifest files or directories; the baseline must be one compile."""
    base_files = find_manifests(baseline)
    if len(base_files) != 1:
        raise UsageError(
            f"The structural baseline must be one compile manifest; found {len(base_files)}.",
            hint="Point --baseline at one manifest.json.",
        )
    return gate_structure(
        read_compile_structure(base_files[0]),
        [read_compile_structure(f) for f in find_manifests(candidate)],
        rules,
        allow_mismatch=allow_mismatch,
    )

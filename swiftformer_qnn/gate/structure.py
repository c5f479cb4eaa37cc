"""The device-free gate: compile structure across QNN versions, from what the compiles wrote.

What can be checked without a phone: every op stays on the HTP, the number of HTP ops and
the context binary do not grow beyond a threshold, and every QNN version still compiles.
These figures are deterministic, so there is no noise to model: a change is a change.

Sources, each read with the model that wrote it:

- an export or compile directory's `manifest.json` (`artifacts.ExportManifest`): the results
  of its `compile` stage (`pipeline/compile.py`);
- a cross-version comparison (`export --qnn`, `compile --qnn`, `toolchains compare`):
  `cross_version.json` (`cross_version.CrossVersionReport`, one entry per QNN version) and
  each version's `qnn-<version>/compile.json` (an `artifacts.StageRecord`);
- a structural baseline's `structure.json` (this module's `CompileStructure`);
- a plain JSON object `{"compile": {...}}` with the compile stage's keys.

The HTP op count is measured: the ops in QNN's framework op trace (`qnn.htp_ops_from_trace`)
or, for cross-version entries, the ops in the HTP emulator's profile of the compiled binary.
Manifests written before the compile stage recorded it carry only `htp_nodes` (ONNX nodes
placed in the QNN graph, a different quantity); they are read, and the verdict says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..artifacts import MANIFEST_KIND, MANIFEST_NAME, ExportManifest, StageRecord, read_manifest
from ..errors import ProfileError, UsageError
from .rules import GateRules
from .verdict import GateVerdict, Method, MetricResult, MetricStatus, SideInfo, make_verdict

COMPILE_STAGE = "compile"  # the export pipeline's compile stage
CROSS_VERSION_STAGES = ("qnn_compile", COMPILE_STAGE)  # the name of a per-version compile.json record
STRUCTURE_NAME = "structure.json"  # a structural baseline's figures
STRUCTURE_KIND = "swiftformer-qnn.compile-structure"
# Written next to each other by a cross-version compile (`cross_version.py`).
REPORT_NAME = "cross_version.json"
REPORT_KIND = "swiftformer-qnn.cross-version"
VERSION_RECORD = "compile.json"
VERSION_FAILURE = "compile_failed.json"

OpCountBasis = Literal["qnn_op_trace", "emulator_profile", "htp_nodes"]
BASIS_WORDS: dict[str, str] = {
    "qnn_op_trace": "HTP ops in QNN's op trace",
    "emulator_profile": "HTP ops in the HTP emulator's profile of the compiled binary",
    "htp_nodes": "ONNX nodes placed in the QNN graph (htp_nodes: a manifest from before the HTP op count was recorded)",
}
# As the export's compile stage words it (pipeline/compile.py): every compile here disables CPU
# fallback, so a node the HTP rejects fails the compile instead of leaving the NPU.
BY_CONSTRUCTION = "compiled with CPU fallback disabled: onnxruntime assigned every node to the QNN EP"


class CompileStructure(BaseModel):
    """What one compile produced, as far as the structural gate cares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["swiftformer-qnn.compile-structure"] = STRUCTURE_KIND
    qnn_version: str
    htp_fraction: float = Field(ge=0, le=1)  # share of the graph's nodes placed on the HTP
    htp_op_count: int = Field(ge=0)
    context_binary_bytes: int = Field(ge=0)
    op_count_basis: OpCountBasis = "qnn_op_trace"  # what htp_op_count counts (see BASIS_WORDS)
    htp_coverage_basis: str | None = None  # why htp_fraction is what it is, when the compile says
    htp_op_types: dict[str, int] | None = None  # QNN op type -> count, where known
    path: str | None = None  # where it was read from
    # What was compiled, when the source says (an export's request, its SoC): compiles of
    # different things are not compared unless allowed.
    variant: str | None = None
    precision: str | None = None
    soc: str | None = None
    input_shape: list[int] | None = None


class CompileFailure(BaseModel):
    """A QNN version that did not compile (a cross-version comparison reports it, the others finish)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qnn_version: str
    error: str
    path: str | None = None
    variant: str | None = None


_IDENTITY = ("variant", "precision", "soc", "input_shape")


@dataclass
class CompileSide:
    """Every compile found under the paths of one side, and the files they were read from."""

    structures: list[CompileStructure] = field(default_factory=list)
    failures: list[CompileFailure] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def extend(self, other: CompileSide) -> None:
        self.structures += other.structures
        self.failures += other.failures
        self.files += other.files


# --------------------------------------------------------------------------- reading


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such compile manifest.") from None
    except IsADirectoryError:
        raise ProfileError(f"{path}: a directory, not a compile manifest.") from None
    except RecursionError:
        raise ProfileError(f"{path}: not a compile manifest (JSON nested too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, huge integers
        raise ProfileError(f"{path}: not a JSON manifest ({str(exc)[:200]}).") from None


def _invalid(path: Path, what: str, exc: ValidationError) -> ProfileError:
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or "(top level)"
    return ProfileError(f"{path}: not a valid {what} ({where}: {first['msg']}).")


def _soc_name(soc_model: Any) -> str | None:
    from ..targets import SOCS

    return next((s.name for s in SOCS.values() if s.soc_model == soc_model), None)


def _request_identity(request: Mapping[str, Any]) -> dict[str, Any]:
    return {k: request[k] for k in _IDENTITY if request.get(k) is not None}


def _export_identity(export_dir: Path, model_sha256: str | None) -> dict[str, Any]:
    """Variant, precision, SoC and input shape of the export whose model a cross-version compile
    compiled: the export directory's manifest, when one of its files is that model."""
    manifest = read_manifest(export_dir)
    if manifest is None or not model_sha256:
        return {}
    if any(out.sha256 == model_sha256 for stage in manifest.stages for out in stage.outputs.values()):
        return _request_identity(manifest.request)
    return {}


def _op_count(
    fields: Mapping[str, Any], trace: Path | None, *, allow_nodes: bool = True
) -> tuple[int | None, OpCountBasis | None, dict[str, int] | None]:
    """The HTP op count, what it counts, and the op types: recorded, else from the op trace,
    else (old manifests) the ONNX nodes placed in the QNN graph."""
    if "htp_op_count" in fields:
        return fields["htp_op_count"], "qnn_op_trace", fields.get("htp_op_types")
    if trace is not None and trace.is_file():
        from ..qnn import htp_ops_from_trace

        try:
            counted = htp_ops_from_trace(trace)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise ProfileError(f"{trace}: not a readable QNN op trace ({type(exc).__name__}).") from None
        return counted["htp_op_count"], "qnn_op_trace", counted["htp_op_types"]
    if allow_nodes and "htp_nodes" in fields:
        return fields["htp_nodes"], "htp_nodes", None
    return None, None, None


def _structure(
    fields: Mapping[str, Any],
    path: Path,
    *,
    identity: Mapping[str, Any],
    trace: Path | None = None,
    by_construction: bool = False,
) -> CompileStructure:
    """One CompileStructure from a compile's results; what is missing is named."""
    count, basis, types = _op_count(fields, trace)
    picked: dict[str, Any] = {
        "qnn_version": fields.get("qnn_sdk_version"),
        "htp_fraction": fields.get("htp_fraction", 1.0 if by_construction else None),
        "htp_op_count": count,
        "context_binary_bytes": fields.get("context_binary_bytes"),
    }
    absent = [f"{COMPILE_STAGE}.{'qnn_sdk_version' if k == 'qnn_version' else k}" for k, v in picked.items()
              if v is None]
    if absent:
        raise ProfileError(
            f"{path}: the compile results lack {', '.join(absent)}.",
            hint="Recompile with a swiftformer-qnn that records the compile structure.",
        )
    coverage = fields.get("htp_coverage_basis") or (BY_CONSTRUCTION if by_construction else None)
    try:
        return CompileStructure(
            **picked, op_count_basis=basis, htp_coverage_basis=coverage, htp_op_types=types, path=str(path),
            **identity,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ProfileError(f"{path}: compile.{'.'.join(map(str, first['loc']))}: {first['msg']}.") from None


def _from_manifest(path: Path, data: Any) -> CompileSide:
    try:
        manifest = ExportManifest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(path, "export manifest", exc) from None
    stage = manifest.stage(COMPILE_STAGE)
    if stage is None:
        raise ProfileError(f"{path}: an export manifest without a {COMPILE_STAGE!r} stage.",
                           hint="Export (or compile) up to the compile stage, then gate its manifest.")
    trace_rec = stage.outputs.get("qnn_op_trace.json")
    trace = path.parent / trace_rec.path if trace_rec else None
    identity = _request_identity(manifest.request)
    return CompileSide([_structure(stage.results, path, identity=identity, trace=trace)], [], [path])


def _from_report(path: Path, data: Any) -> CompileSide:
    from ..cross_version import read_report

    report = read_report(path.parent) if path.name == REPORT_NAME else None
    if report is None:
        from ..cross_version import CrossVersionReport

        try:
            report = CrossVersionReport.model_validate(data)
        except ValidationError as exc:
            raise _invalid(path, "cross-version report", exc) from None
    identity = {"soc": _soc_name(report.soc_model), **({"precision": "fp16"} if report.fp16 else {})}
    identity = {k: v for k, v in identity.items() if v is not None}
    identity |= _export_identity(path.parent.parent, report.model_sha256)
    side = CompileSide(files=[path])
    for v in report.versions:
        where = path.parent / (v.directory or f"qnn-{v.qnn_version}")
        if v.status != "ok":
            side.failures.append(CompileFailure(qnn_version=v.qnn_version, error=f"{v.status}: {v.error}",
                                                path=str(where), variant=identity.get("variant")))
            continue
        fields: dict[str, Any] = {"qnn_sdk_version": v.qnn_version, "context_binary_bytes": v.context_binary_bytes}
        trace = None
        if v.htp_ops is not None:
            fields["htp_op_count"] = v.htp_ops
            if v.op_types_from == "qnn_op_trace":
                fields["htp_op_types"] = v.op_type_counts
        else:  # compiled without emulation: the op trace, if the worker wrote one
            trace = where / "qnn_op_trace.json"
        s = _structure(fields, where, identity=identity, trace=trace, by_construction=True)
        if v.htp_ops is not None:
            s = s.model_copy(update={"op_count_basis": "emulator_profile"})
        side.structures.append(s)
    return side


def _from_version_record(path: Path, data: Any) -> CompileSide:
    try:
        record = StageRecord.model_validate(data)
    except ValidationError as exc:
        raise _invalid(path, "compile record", exc) from None
    res = record.results
    trace = path.parent / res["op_trace"] if res.get("op_trace") else None
    identity = {k: v for k, v in {"soc": _soc_name(record.options.get("soc_model"))}.items() if v is not None}
    if record.options.get("fp16"):
        identity["precision"] = "fp16"
    identity |= _export_identity(path.parent.parent.parent, record.inputs.get("model"))
    return CompileSide([_structure(res, path, identity=identity, trace=trace, by_construction=True)], [], [path])


def _from_failure(path: Path, data: Any) -> CompileSide:
    status = data.get("status")
    failure = CompileFailure(qnn_version=str(data.get("qnn_version")), error=f"{status}: {data.get('error')}",
                             path=str(path.parent))
    return CompileSide([], [failure], [path])


def read_compile_file(path: Path) -> CompileSide:
    """The compiles one file describes (see the module docstring for the kinds of file)."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: not a compile manifest (a JSON {type(data).__name__}).")
    kind = data.get("kind")
    if kind == MANIFEST_KIND:
        return _from_manifest(path, data)
    if kind == REPORT_KIND:
        return _from_report(path, data)
    if kind == STRUCTURE_KIND:
        try:
            s = CompileStructure.model_validate(data)
        except ValidationError as exc:
            raise _invalid(path, "compile structure", exc) from None
        return CompileSide([s.model_copy(update={"path": str(path)})], [], [path])
    if data.get("name") in CROSS_VERSION_STAGES and "results" in data and "key" in data:
        return _from_version_record(path, data)
    if data.get("status") in ("failed", "crashed") and "qnn_version" in data:
        return _from_failure(path, data)
    if isinstance(data.get(COMPILE_STAGE), dict):
        request = data.get("request") if isinstance(data.get("request"), dict) else {}
        return CompileSide([_structure(data[COMPILE_STAGE], path, identity=_request_identity(request))], [], [path])
    raise ProfileError(
        f"{path}: not a compile manifest (no {COMPILE_STAGE!r} stage, cross-version report or compile record).",
        hint="Pass an export directory, its manifest.json, or a qnn-versions directory of `export --qnn`.",
    )


def _sources_in(directory: Path) -> list[Path]:
    """The files a directory's compiles are read from, searched below it.

    The first of these a directory holds stands for the whole directory: a structural
    baseline's `structure.json`; a `cross_version.json` (its `qnn-<version>/` entries are
    its compiles); an export's `manifest.json` (its own compile: a `qnn-versions/` beside it is
    gated by naming it); one version's `compile.json` or `compile_failed.json`. A directory
    with none of them is searched below (`build/` with several exports).
    """
    for name in (STRUCTURE_NAME, REPORT_NAME, MANIFEST_NAME, VERSION_RECORD, VERSION_FAILURE):
        if (directory / name).is_file():
            return [directory / name]
    found = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += _sources_in(sub)
    return found


def read_compile_side(paths: Sequence[Path], *, side: str = "candidate") -> CompileSide:
    """Every compile under `paths`: files as given, directories searched (see `_sources_in`)."""
    if not paths:
        raise ProfileError(f"No {side} given.", hint=f"Pass --{side} FILE_OR_DIR.")
    out = CompileSide()
    for p in map(Path, paths):
        if p.is_dir():
            files = _sources_in(p)
            if not files:
                raise ProfileError(
                    f"{p}: no compile manifest below this {side} directory ({MANIFEST_NAME}, {REPORT_NAME} "
                    f"or qnn-*/{VERSION_RECORD}).",
                    hint="Export (swiftformer-qnn export, or export --qnn for several QNN versions) first.",
                )
            for f in files:
                out.extend(read_compile_file(f))
        else:
            out.extend(read_compile_file(p))
    if side == "baseline":
        _fill_from_baseline_records(out, paths)
    return out


def _fill_from_baseline_records(side: CompileSide, paths: Sequence[Path]) -> None:
    """A committed baseline's `baseline.json` knows what was compiled even where its files do not."""
    from .baseline import read_record

    for p in map(Path, paths):
        record = read_record(p if p.is_dir() else p.parent)
        if record is None or record.mode != "structure":
            continue
        known = {"variant": record.variant, "precision": record.precision, "soc": record.device,
                 "input_shape": record.input_shape}
        side.structures = [
            s.model_copy(update={k: v for k, v in known.items() if v is not None and getattr(s, k) is None})
            for s in side.structures
        ]


def read_compile_structure(path: Path) -> CompileStructure:
    """The one compile a file or directory holds (an error if it holds several or a failure)."""
    side = read_compile_side([Path(path)])
    if side.failures:
        f = side.failures[0]
        raise ProfileError(f"{f.path}: QNN {f.qnn_version} did not compile ({f.error}).")
    if len(side.structures) != 1:
        versions = ", ".join(s.qnn_version for s in side.structures)
        raise UsageError(
            f"{path} holds {len(side.structures)} compiles (QNN {versions}); one is needed here.",
            hint="Point at one of them, e.g. its qnn-<version>/ directory.",
        )
    return side.structures[0]


# --------------------------------------------------------------------------- gating


def _type_changes(b: CompileStructure, c: CompileStructure, limit: int = 4) -> str:
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


def _growth(metric: str, unit: str, b: int, c: int, limit: float, extra: str = "") -> MetricResult:
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
        reason=f"{metric}: {b * 100:.1f}% -> {c * 100:.1f}% of nodes on the HTP, {why}.",
    )


def _did_not_compile(metric: str, failure: CompileFailure) -> MetricResult:
    return MetricResult(
        metric=metric, kind="structure", unit="compile", method=Method.STRUCTURE, status=MetricStatus.REGRESSION,
        fails=True, n_baseline=1, reason=f"QNN {failure.qnn_version} did not compile: {failure.error}",
    )


def structure_mismatches(baseline: CompileStructure, candidate: CompileStructure) -> list[str]:
    """What differs between two compiles' subjects, where both sources say."""
    out = []
    for k in _IDENTITY:
        b, c = getattr(baseline, k), getattr(candidate, k)
        if b is not None and c is not None and b != c:
            out.append(f"{k}: {b} -> {c}")
    return out


def _check_bases(baseline: CompileStructure, candidates: Sequence[CompileStructure]) -> list[str]:
    """Refuse op counts of different quantities; say what was counted."""
    old = baseline.op_count_basis == "htp_nodes"
    for cand in candidates:
        if (cand.op_count_basis == "htp_nodes") != old:
            nodes, ops = (baseline, cand) if old else (cand, baseline)
            raise ProfileError(
                f"{nodes.path or 'a compile'} records only htp_nodes (ONNX nodes placed in the QNN graph), "
                f"{ops.path or 'the other'} the number of HTP ops: different quantities, not compared.",
                hint="Recompile the old side with this swiftformer-qnn (for a baseline: "
                "gate accept structure).",
            )
    bases = sorted({baseline.op_count_basis, *(c.op_count_basis for c in candidates)})
    if old:
        return [f"HTP op count: {BASIS_WORDS['htp_nodes']}, on both sides; recompile both for the HTP op count."]
    return [f"HTP op count: {' / '.join(BASIS_WORDS[b] for b in bases)}."]


def _metric_tags(candidates: Sequence[CompileStructure | CompileFailure]) -> list[str]:
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


def _identity_of(items: Sequence[CompileStructure]) -> dict[str, Any]:
    """The identity fields all `items` share (None where they differ or nobody says)."""
    out: dict[str, Any] = {}
    for k in ("variant", "precision", "input_shape"):
        values = {json.dumps(getattr(s, k)) for s in items}
        out[k] = getattr(items[0], k) if len(values) == 1 and items else None
    return out


def gate_structure(
    baseline: CompileStructure,
    candidates: Sequence[CompileStructure],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
    failures: Sequence[CompileFailure] = (),
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
                f"{cand.path or 'a candidate'} compiles something else than the baseline ({'; '.join(diff)}).",
                hint="Compare like with like, or pass --allow-mismatch to gate them anyway.",
            )
        diffs += [f"{cand.qnn_version}: {d}" for d in diff]
    notes = _check_bases(baseline, candidates) if candidates else []
    coverage = {s.htp_coverage_basis for s in (baseline, *candidates) if s.htp_coverage_basis}
    if coverage:
        notes.append(f"HTP coverage: {'; '.join(sorted(coverage))}.")
    s = rules.structure
    results: list[MetricResult] = []
    everything: list[CompileStructure | CompileFailure] = [*candidates, *failures]
    for cand, tag in zip(everything, _metric_tags(everything), strict=True):
        if isinstance(cand, CompileFailure):
            results.append(_did_not_compile(f"compile{tag}", cand))
            continue
        results.append(_coverage(f"htp_fraction{tag}", baseline.htp_fraction, cand.htp_fraction, s.min_htp_fraction))
        results.append(_growth(f"htp_op_count{tag}", "ops", baseline.htp_op_count, cand.htp_op_count,
                               s.max_op_count_growth, _type_changes(baseline, cand)))
        results.append(_growth(f"context_binary_bytes{tag}", "bytes", baseline.context_binary_bytes,
                               cand.context_binary_bytes, s.max_context_growth))
    return make_verdict(
        mode="structure",
        baseline=SideInfo(paths=[baseline.path or "<baseline>"], qnn_versions=[baseline.qnn_version], profiles=1,
                          **_identity_of([baseline])),
        candidate=SideInfo(
            paths=[c.path or f"<candidate {i}>" for i, c in enumerate(everything)],
            qnn_versions=sorted({c.qnn_version for c in everything}),
            profiles=len(everything),
            **(_identity_of(list(candidates)) if candidates else {}),
        ),
        rules=rules,
        mismatches=diffs,
        notes=["Structure only (no device): HTP coverage, HTP op count and context binary size of each compile."]
        + notes
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


def only_compile(side: CompileSide, what: str, *, hint: str) -> CompileStructure:
    """The one successful compile a baseline must be; anything else is an input error naming `what`."""
    if side.failures:
        f = side.failures[0]
        raise ProfileError(f"{what}: QNN {f.qnn_version} did not compile ({f.error}) at {f.path}.")
    if len(side.structures) != 1:
        raise UsageError(
            f"{what} holds {len(side.structures)} compiles (QNN "
            f"{', '.join(s.qnn_version for s in side.structures)}); a structural baseline is one.",
            hint=hint,
        )
    return side.structures[0]


def pick_variant(side: CompileSide, variant: str, what: str) -> CompileSide:
    unknown = [s.path for s in side.structures if s.variant is None] + [f.path for f in side.failures
                                                                        if f.variant is None]
    if unknown:
        raise UsageError(
            f"--variant {variant}: the {what} compile {unknown[0]} does not say which variant it is.",
            hint="Point at export directories (their manifest.json names the variant), or drop --variant.",
        )
    kept = CompileSide([s for s in side.structures if s.variant == variant],
                       [f for f in side.failures if f.variant == variant], side.files)
    if not kept.structures and not kept.failures:
        found = sorted({s.variant for s in side.structures} | {f.variant for f in side.failures})
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
    return gate_structure(baseline_compile, cand.structures, rules, allow_mismatch=allow_mismatch,
                          failures=cand.failures)

"""The latency gate on profiles: load both sides, check they measure the same thing, compare.

Samples come from the shared profile schema. On AI Hub a profile holds every inference
time of one job (`latency.runs_us`) but per-op times from one profiling pass, so the whole
model has many samples per profile while a block has one: block spread needs several
profiles (one per job) on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ProfileError, UsageError
from ..measure.schema import (
    LatencySource,
    Profile,
    TimeBasis,
    TimeUnit,
    block_times,
    find_profiles,
    load_profile,
    op_times,
)
from .rules import GateRules
from .stats import Samples, gate_samples
from .structure import check_disjoint
from .verdict import MODEL_METRIC, GateVerdict, SideInfo, make_verdict

# Fields that make two profiles measurements of different things.
_IDENTITY = ("variant", "precision", "device", "source", "input shape")


def _identity(p: Profile) -> dict[str, str]:
    return {
        "variant": p.model.variant,
        "precision": p.model.precision,
        "device": p.target.device,
        "source": p.source.value,
        "input shape": "x".join(map(str, p.model.input_shape)),
    }


def load_side(paths: Sequence[Path], *, side: str, variant: str | None = None) -> tuple[list[Profile], list[Path]]:
    """Every profile under `paths` (files or directories), validated; none found is an error.

    `variant` keeps only that variant's profiles: `swiftformer-qnn profile` writes the
    standalone encoder block's profile beside the model's by default.
    """
    if not paths:
        raise ProfileError(f"No {side} given.", hint=f"Pass --{side} FILE_OR_DIR.")
    files = find_profiles(list(paths))
    for p in map(Path, paths):
        if p.is_dir() and not any(f.is_relative_to(p) for f in files):
            raise ProfileError(f"{p}: no *.profile.json files in this {side} directory.",
                               hint=f"Pass --{side} the directory `swiftformer-qnn profile --out` wrote, or its files.")
    profiles = [load_profile(f) for f in files]
    if variant is not None:
        kept = [(p, f) for p, f in zip(profiles, files, strict=True) if p.model.variant == variant]
        if not kept:
            found = sorted({p.model.variant for p in profiles})
            raise ProfileError(f"No {variant} profiles in the {side} (found: {', '.join(found)}).")
        profiles, files = [p for p, _ in kept], [f for _, f in kept]
    return profiles, files


def check_side(profiles: list[Profile], files: list[Path], side: str) -> None:
    emulated = [f for p, f in zip(profiles, files, strict=True) if p.source is LatencySource.EMULATOR]
    if emulated:
        raise ProfileError(
            f"{emulated[0]}: an HTP-emulator profile (cycles on x86, not device latency) cannot be gated as latency.",
            hint="Gate compile structure without a device instead: swiftformer-qnn gate structure "
            "--baseline BASE_MANIFEST --candidate CAND_MANIFEST.",
        )
    seen: dict[str, Path] = {}
    for p, f in zip(profiles, files, strict=True):
        job = p.provenance.job_ids.get("profile")
        if job and job in seen:
            # The same measurement twice would pass for two sessions that agree: a false spread.
            raise ProfileError(
                f"{f} and {seen[job]} come from the same profile job {job}.",
                hint="For repeated measurements, profile with --new-jobs into separate directories.",
            )
        if job:
            seen[job] = f
    first = {**_identity(profiles[0]), "QNN version": str(profiles[0].toolchain.qnn_version)}
    for p, f in zip(profiles[1:], files[1:], strict=True):
        ident = {**_identity(p), "QNN version": str(p.toolchain.qnn_version)}
        diff = [f"{k} {first[k]} vs {ident[k]}" for k in first if ident[k] != first[k]]
        if diff:
            # Pooling runs of different models or toolchains would make the spread meaningless.
            raise ProfileError(
                f"{f}: the {side} profiles disagree with {files[0]} ({'; '.join(diff)}).",
                hint=f"Put only repeated runs of one configuration in the {side}, or pick one with --variant.",
            )


def _check_distinct_jobs(bp: list[Profile], bf: list[Path], cp: list[Profile], cf: list[Path]) -> None:
    """The same AI Hub profile job on both sides is one measurement compared with itself."""
    base_jobs = {p.provenance.job_ids["profile"]: f for p, f in zip(bp, bf, strict=True)
                 if p.provenance.job_ids.get("profile")}
    for p, f in zip(cp, cf, strict=True):
        job = p.provenance.job_ids.get("profile")
        if job and job in base_jobs:
            raise UsageError(
                f"The baseline ({base_jobs[job]}) and the candidate ({f}) hold the same AI Hub profile job {job}: "
                "a measurement gated against itself passes trivially.",
                hint="Profile the candidate with --new-jobs.",
            )


def mismatches(baseline: Profile, candidate: Profile) -> list[str]:
    """Identity differences between the sides, as `field: baseline -> candidate`."""
    b, c = _identity(baseline), _identity(candidate)
    return [f"{k}: {b[k]} -> {c[k]}" for k in _IDENTITY if b[k] != c[k]]


def _side_info(profiles: list[Profile], files: list[Path]) -> SideInfo:
    p0 = profiles[0]
    jobs = [j for p in profiles for j in p.provenance.job_ids.values()]
    return SideInfo(
        paths=[str(f) for f in files],
        source=p0.source.value,
        variant=p0.model.variant,
        precision=p0.model.precision,
        device=p0.target.device,
        input_shape=list(p0.model.input_shape),
        qnn_versions=sorted({p.toolchain.qnn_version for p in profiles if p.toolchain.qnn_version}),
        profiles=len(profiles),
        runs=sum(len(p.latency.runs_us) or 1 for p in profiles if p.latency),
        job_ids=jobs,
    )


def model_samples(profiles: Sequence[Profile], statistic: str) -> Samples:
    """Whole-model latency: each profile's `runs_us`, or its summary when it has none."""
    groups = []
    for p in profiles:
        if p.estimate is not None:  # an estimate: one deterministic figure
            groups.append([p.estimate.us])
            continue
        if p.latency is None:
            continue
        if p.latency.runs_us:
            groups.append(p.latency.runs_us)
        else:  # a published row or a summary-only profile: one value stands for the session
            groups.append([p.latency.min_us if statistic == "min" else p.latency.median_us])
    return Samples.of(groups)


def block_samples(profiles: Sequence[Profile], files: Sequence[Path], statistic: str = "median") -> dict[str, Samples]:
    """Per-block device time, one value per profile that has per-op figures, in model order.

    From device cycles a block's time is its share of the cycles times the profile's
    latency (`statistic`); else the sum of its per-op microseconds. Emulator cycles are refused.
    """
    per_block: dict[str, list[list[float]]] = {}
    for p, f in zip(profiles, files, strict=True):
        if not op_times(p).values:
            continue
        for block, bt in block_times(p, "min" if statistic == "min" else "median").items():
            if bt.time_unit is not TimeUnit.US:
                raise ProfileError(f"{f}: per-op times in {bt.time_unit.value}, not microseconds; not gated as latency.")
            per_block.setdefault(block, []).append([bt.time])
    return {block: Samples.of(groups) for block, groups in per_block.items()}


def _notes(base: dict[str, Samples], cand: dict[str, Samples], bp: list[Profile], cp: list[Profile],
           rules: GateRules) -> list[str]:
    notes = []
    src = cp[0].source.value
    if min(base[MODEL_METRIC].n, cand[MODEL_METRIC].n) < rules.min_samples:
        notes.append(
            f"Whole model: fewer than {rules.min_samples} runs on a side, so no spread is known; "
            "it is gated on the thresholds alone."
        )
    elif len(bp) == 1 or len(cp) == 1:
        notes.append(
            f"Whole model: the runs on a side come from one {src} session; the interval covers "
            "run-to-run noise, not session-to-session drift (another phone, a warmer one), which "
            "the relative threshold absorbs. Profile several jobs per side for a stronger gate."
        )
    blocks = [m for m in {**base, **cand} if m != MODEL_METRIC]
    if blocks:
        n_b = max((base[m].n for m in blocks if m in base), default=0)
        n_c = max((cand[m].n for m in blocks if m in cand), default=0)
        if min(n_b, n_c) < rules.min_samples:
            notes.append(
                f"Blocks: per-op times come from one profiling pass per profile ({n_b} baseline, "
                f"{n_c} candidate profiles with op times); under {rules.min_samples} per side no spread "
                "is known and blocks are gated on the thresholds alone."
            )
        bases = {op_times(p).basis for p in (*bp, *cp)} - {None}
        if TimeBasis.DERIVED_FROM_CYCLES in bases:
            notes.append(
                f"Blocks: times derived from device cycles (each block's share of the cycles x the profile's "
                f"{'min' if rules.statistic == 'min' else 'median'} latency)"
                + ("; some profiles have per-op microseconds only (summed)." if TimeBasis.OP_TIMES in bases else ".")
            )
    else:
        notes.append("No per-op times on either side: only the whole model is gated.")
    notes.append("Whole model: " + _statistics_said(bp, "baseline") + "; " + _statistics_said(cp, "candidate") + ".")
    return notes


def _estimate_notes(bp: Sequence[Profile], cp: Sequence[Profile], rules: GateRules) -> list[str]:
    label = bp[0].estimate.label if bp[0].estimate else "estimated"
    return [
        f"Both sides are {label}: deterministic figures (the same graph and QNN give the same estimate), "
        f"gated as one value each with no noise model; threshold {rules.relative_threshold * 100:g}%"
        + (f", floor {rules.absolute_floor_us:g} us" if rules.absolute_floor_us else ", no floor") + ".",
        "Blocks: each block's share of the simulated critical path (us at the simulated clock). "
        "An estimate is not a device latency; `gate structure` still covers what it cannot see.",
    ]


def _statistics_said(profiles: Sequence[Profile], side: str) -> str:
    """Which statistic each side's whole-model figures are ("100 runs per profile", "AI Hub estimate")."""
    labels = sorted({p.latency.label("median").removeprefix("median of ") for p in profiles if p.latency})
    return f"{side} {', '.join(labels)}"


def gate_profiles(
    baseline: list[Profile],
    candidate: list[Profile],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
    baseline_files: Sequence[Path] | None = None,
    candidate_files: Sequence[Path] | None = None,
) -> GateVerdict:
    """Compare the whole-model latency and every block's latency of two sets of profiles."""
    if not baseline or not candidate:
        raise ProfileError("Both sides need at least one profile.")
    bf = list(baseline_files or [Path(f"<baseline {i}>") for i in range(len(baseline))])
    cf = list(candidate_files or [Path(f"<candidate {i}>") for i in range(len(candidate))])
    check_side(baseline, bf, "baseline")
    check_side(candidate, cf, "candidate")
    sides = {"baseline": baseline[0], "candidate": candidate[0]}
    if len({p.source is LatencySource.ESTIMATE for p in sides.values()}) == 2:
        # Not even with --allow-mismatch: an estimate and a device latency are not one quantity.
        est = next(k for k, p in sides.items() if p.source is LatencySource.ESTIMATE)
        other = next(k for k in sides if k != est)
        raise ProfileError(
            f"The {est} holds estimates (QNN's HTP estimator, no device), the {other} {sides[other].source.value} "
            "profiles: an estimate is never gated against another source.",
            hint="Gate estimates against an estimate baseline (profile estimate).",
        )
    _check_distinct_jobs(baseline, bf, candidate, cf)
    diff = mismatches(baseline[0], candidate[0])
    if diff and not allow_mismatch:
        raise ProfileError(
            f"The baseline and candidate measure different things ({'; '.join(diff)}).",
            hint="Compare like with like, or pass --allow-mismatch to gate them anyway.",
        )

    base = {MODEL_METRIC: model_samples(baseline, rules.statistic), **block_samples(baseline, bf, rules.statistic)}
    cand = {MODEL_METRIC: model_samples(candidate, rules.statistic), **block_samples(candidate, cf, rules.statistic)}
    kinds = {MODEL_METRIC: "model"}
    estimated = baseline[0].source is LatencySource.ESTIMATE and candidate[0].source is LatencySource.ESTIMATE
    if estimated:
        rules = rules.for_estimates()
        results = gate_samples(base, cand, rules, kinds=kinds, deterministic=True)
        notes = _estimate_notes(baseline, candidate, rules)
    else:
        results = gate_samples(base, cand, rules, kinds=kinds)
        notes = _notes(base, cand, baseline, candidate, rules)
    if diff:
        notes.insert(0, f"Compared despite differences ({'; '.join(diff)}): --allow-mismatch was given.")
    return make_verdict(
        mode="profile",
        baseline=_side_info(baseline, bf),
        candidate=_side_info(candidate, cf),
        rules=rules,
        mismatches=diff,
        notes=notes,
        results=results,
    )


def gate_paths(
    baseline: Sequence[Path],
    candidate: Sequence[Path],
    rules: GateRules,
    *,
    allow_mismatch: bool = False,
    variant: str | None = None,
) -> GateVerdict:
    """`gate_profiles` on the profiles found under the given files or directories."""
    bp, bf = load_side(baseline, side="baseline", variant=variant)
    cp, cf = load_side(candidate, side="candidate", variant=variant)
    check_disjoint(bf, cf)
    return gate_profiles(bp, cp, rules, allow_mismatch=allow_mismatch, baseline_files=bf, candidate_files=cf)

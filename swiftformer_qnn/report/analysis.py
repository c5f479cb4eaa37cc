"""Profiles in, a typed Report (or Comparison) out. Pure: no files, no clock but `generated_at`."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..core import versions
from ..core.errors import ProfileError
from ..measure.schema import LatencySource, OpRecord, Profile, TimeBasis, TimeUnit, block_times, op_times
from ..model.variants import VARIANTS
from .model import (
    BlockRow,
    Breakdown,
    Cell,
    Column,
    Comparison,
    EncoderShare,
    ModelRow,
    Mover,
    ProvenanceRow,
    Report,
    Setting,
    SkippedInput,
    TopOp,
    TopOps,
    Unit,
    VersionStep,
    Waterfall,
    WaterfallOp,
)

TOP_OPS = 10
UNATTRIBUTED_KIND = "unattributed"

# Reference (published) columns first, so a new measurement lands to their right.
_SOURCE_ORDER = [
    LatencySource.PUBLISHED,
    LatencySource.AIHUB,
    LatencySource.QNN_NET_RUN,
    LatencySource.ONNXRUNTIME_QNN,
    LatencySource.ESTIMATE,
    LatencySource.EMULATOR,
]
_VARIANT_ORDER = list(VARIANTS)


@dataclass(frozen=True)
class LoadedProfile:
    label: str  # how the report names the file (the path as given, relative where possible)
    profile: Profile


# ---------------------------------------------------------------------------- keys and labels


def model_row(profile: Profile) -> ModelRow:
    m = profile.model
    key = m.variant.lower()
    variant = VARIANTS.get(key)
    shape = "x".join(map(str, m.input_shape))
    title = variant.title if variant else m.variant
    label = f"{title} {shape}"
    model_id = f"{key}-{shape}"
    if m.attention != "normalize":  # a different graph: softmax attention is not the same model
        label += f" ({m.attention} attention)"
        model_id += f"-{m.attention}"
    if m.graph != "faithful":  # the same function in other ops: a row of its own beside the faithful one
        label += " (HTP-ready graph)" if m.graph == "htp" else f" ({m.graph} graph)"
        model_id += f"-{m.graph}"
    is_block = variant.is_encoder_block if variant else key == "encoder"
    short = "encoder block" if is_block else title.removeprefix("SwiftFormer-")
    return ModelRow(
        id=model_id,
        variant=key,
        input_shape=list(m.input_shape),
        attention=m.attention,
        graph=m.graph,
        label=label,
        short=short,
        is_encoder_block=is_block,
    )


def setting_of(profile: Profile) -> Setting:
    return Setting(
        source=profile.source,
        device=profile.target.device,
        chipset=profile.target.chipset,
        precision=profile.model.precision,
        runtime=profile.toolchain.runtime,
    )


def version_of(profile: Profile) -> str | None:
    """The column's QNN version; QAIRT shares QNN's numbering, so it stands in when QNN's is missing."""
    return profile.toolchain.qnn_version or profile.toolchain.qairt_version


def unit_of(profile: Profile) -> Unit:
    return Unit.CYCLES if profile.source is LatencySource.EMULATOR else Unit.MS


def version_key(version: str | None) -> tuple:
    """Numeric order ("2.9" < "2.17" < "2.51.0", `versions.version_key`); unknown versions last."""
    if version is None:
        return (1, (), "")
    return (0, versions.version_key(version), version)


def _model_key(row: ModelRow) -> tuple:
    # Full models in registry order, then unknown variants, the standalone block last.
    idx = _VARIANT_ORDER.index(row.variant) if row.variant in _VARIANT_ORDER else len(_VARIANT_ORDER)
    return (row.is_encoder_block, idx, row.variant, row.input_shape, row.attention, row.graph != "faithful")


def _setting_key(s: Setting) -> tuple:
    return (_SOURCE_ORDER.index(s.source), s.device, s.chipset or "", s.precision, s.runtime)


def headline_value(profile: Profile) -> float | None:
    """Median latency in ms for device sources; the estimate in ms for estimates; summed op cycles
    for the emulator (None without ops)."""
    if profile.estimate is not None:
        return profile.estimate.us / 1000.0
    if profile.is_device_latency:
        assert profile.latency is not None  # the schema guarantees it for device sources
        return profile.latency.median_us / 1000.0
    timed = op_times(profile).values
    return float(sum(t for _, t in timed)) if timed else None


def _to_unit(value: float, time_unit: TimeUnit) -> float:
    return value / 1000.0 if time_unit is TimeUnit.US else value


def _representative(items: list[tuple[LoadedProfile, float]]) -> LoadedProfile:
    """The profile whose value is closest to the median (the lower one on a tie)."""
    med = statistics.median(v for _, v in items)
    return min(items, key=lambda it: (abs(it[1] - med), it[1]))[0]


# ---------------------------------------------------------------------------- per-profile blocks


def _profile_blocks(
    profile: Profile,
) -> tuple[Unit, dict[str, tuple[str | None, float, dict[str, float]]]] | None:
    """{block: (kind, time, parts)} in the report unit, or None when there is no timed op."""
    if not op_times(profile).values:
        return None
    bt = block_times(profile)
    first = next(iter(bt.values()))
    unit = Unit.MS if first.time_unit is TimeUnit.US else Unit.CYCLES
    return unit, {
        k: (b.kind, _to_unit(b.time, b.time_unit), {p: _to_unit(t, b.time_unit) for p, t in b.parts.items()})
        for k, b in bt.items()
    }


def _median_blocks(
    per_profile: list[dict[str, tuple[str | None, float, dict[str, float]]]],
) -> list[BlockRow]:
    order: dict[str, str | None] = {}
    for blocks in per_profile:
        for k, (kind, _, _) in blocks.items():
            order.setdefault(k, kind)
    times = {k: statistics.median(b[k][1] if k in b else 0.0 for b in per_profile) for k in order}
    total = sum(times.values())
    rows = []
    for k, kind in order.items():
        part_names = sorted({p for b in per_profile if k in b for p in b[k][2]}, key=_part_order)
        parts = {
            p: statistics.median(b[k][2].get(p, 0.0) if k in b else 0.0 for b in per_profile)
            for p in part_names
        }
        rows.append(
            BlockRow(block=k, kind=kind, time=times[k], share=times[k] / total if total else 0.0, parts=parts)
        )
    return rows


_PARTS = ("local_representation", "attention", "mlp")


def _part_order(part: str) -> tuple:
    return (_PARTS.index(part) if part in _PARTS else len(_PARTS), part)


def _kinds(blocks: list[BlockRow]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in blocks:
        key = b.kind or UNATTRIBUTED_KIND
        out[key] = out.get(key, 0.0) + b.time
    return out


def _by_part(rows: list[BlockRow]) -> list[BlockRow]:
    """The standalone block has one block: its movers are its parts (`encoder/attention`, ...)."""
    total = sum(r.time for r in rows)
    out = []
    for r in rows:
        pieces = [(f"{r.block}/{p}", t) for p, t in r.parts.items()]
        rest = r.time - sum(r.parts.values())
        if not pieces or abs(rest) > 1e-9 * max(1.0, r.time):
            pieces.append((f"{r.block}/other ops" if pieces else r.block, rest if pieces else r.time))
        out += [BlockRow(block=k, kind=r.kind, time=t, share=t / total if total else 0.0) for k, t in pieces]
    return out


def _movers(before: list[BlockRow], after: list[BlockRow], ranked_by: str) -> list[Mover]:
    a = {b.block: b for b in before}
    z = {b.block: b for b in after}
    order = list(a) + [k for k in z if k not in a]
    movers = []
    for k in order:
        x, y = a.get(k), z.get(k)
        t0, t1 = (x.time if x else 0.0), (y.time if y else 0.0)
        movers.append(
            Mover(
                block=k,
                kind=(x or y).kind,  # type: ignore[union-attr]
                before=t0,
                after=t1,
                delta=t1 - t0,
                ratio=(t1 / t0) if t0 else None,
                share_before=x.share if x else 0.0,
                share_after=y.share if y else 0.0,
            )
        )
    if ranked_by == "share":
        movers.sort(key=lambda m: -abs(m.share_after - m.share_before))
    else:
        movers.sort(key=lambda m: -abs(m.delta))
    return movers


def _op_row(op: OpRecord, time: float, unit: TimeUnit) -> dict[str, Any]:
    """What each per-op row of a report (`TopOp`, `WaterfallOp`) says of one timed op: its names,
    block and part, and its time in the report's unit."""
    at = op.attribution
    return {"name": op.name, "op_type": op.op_type, "block": at.block if at else "other",
            "part": at.part if at else None, "time": _to_unit(time, unit)}


def _top_ops(profile: Profile, n: int = TOP_OPS) -> list[TopOp]:
    ot = op_times(profile)
    total = sum(t for _, t in ot.values) or 0.0
    ranked = sorted(ot.values, key=lambda it: -it[1])[:n]
    return [
        TopOp(**_op_row(op, t, ot.unit), compute_unit=op.compute_unit.value if op.compute_unit else None,
              share=(t / total) if total else 0.0)
        for op, t in ((profile.ops[i], t) for i, t in ranked)
    ]


def provenance_row(lp: LoadedProfile, model_id: str, column_id: str) -> ProvenanceRow:
    p = lp.profile
    return ProvenanceRow(
        profile=lp.label,
        model_id=model_id,
        column_id=column_id,
        source=p.source,
        device=p.target.device,
        chipset=p.target.chipset,
        soc_model=p.target.soc_model,
        htp_arch=p.target.htp_arch,
        precision=p.model.precision,
        qnn_version=p.toolchain.qnn_version,
        qairt_version=p.toolchain.qairt_version,
        runtime=p.toolchain.runtime,
        date=p.provenance.created_at,
        job_ids=dict(p.provenance.job_ids),
        tool=p.provenance.tool,
        citation=p.provenance.citation,
        note=p.provenance.note,
    )


# ---------------------------------------------------------------------------- the report


def build_report(
    profiles: Sequence[LoadedProfile], *, name: str, skipped: Sequence[SkippedInput] = ()
) -> Report:
    """Group profiles into (model x column) cells and derive every table the renderers show."""
    if not profiles:
        raise ProfileError("No valid profiles to report on.")

    labels = [lp.label for lp in profiles]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise ProfileError(f"{dup}: the same profile was given twice.")
    rows = {lp.label: model_row(lp.profile) for lp in profiles}
    models = sorted({r.id: r for r in rows.values()}.values(), key=_model_key)

    col_keys = sorted(
        {(setting_of(lp.profile), version_of(lp.profile)) for lp in profiles},
        key=lambda sv: (_setting_key(sv[0]), version_key(sv[1])),
    )
    columns = [
        Column(
            id=f"c{i}",
            setting=s,
            qnn_version=v,
            unit=Unit.CYCLES if s.source is LatencySource.EMULATOR else Unit.MS,
        )
        for i, (s, v) in enumerate(col_keys)
    ]
    col_of = {(c.setting, c.qnn_version): c for c in columns}

    groups: dict[tuple[str, str], list[LoadedProfile]] = {}
    for lp in profiles:
        col = col_of[(setting_of(lp.profile), version_of(lp.profile))]
        groups.setdefault((rows[lp.label].id, col.id), []).append(lp)

    notes: list[str] = []
    headline: list[Cell] = []
    breakdowns: list[Breakdown] = []
    top_ops: list[TopOps] = []
    provenance: list[ProvenanceRow] = []
    reps: dict[tuple[str, str], LoadedProfile] = {}
    for model in models:
        for col in columns:
            members = groups.get((model.id, col.id), [])
            if not members:
                continue
            provenance.extend(provenance_row(lp, model.id, col.id) for lp in members)
            valued = [(lp, v) for lp in members if (v := headline_value(lp.profile)) is not None]
            for lp in members:
                if headline_value(lp.profile) is None:
                    notes.append(
                        f"{lp.label}: emulator profile without timed ops; it has no headline number."
                    )
            if valued:
                headline.append(_cell(model, col, valued))
            bd, rep = _breakdown(model, col, members, notes)
            if bd is not None:
                breakdowns.append(bd)
            if rep is not None:
                reps[(model.id, col.id)] = rep
                top_ops.append(
                    TopOps(
                        model_id=model.id,
                        column_id=col.id,
                        profile=rep.label,
                        unit=col.unit,
                        ops=_top_ops(rep.profile),
                    )
                )

    report_cells = {(c.model_id, c.column_id): c for c in headline}
    waterfalls = _waterfalls(models, columns, reps)
    report_bds = {(b.model_id, b.column_id): b for b in breakdowns}
    steps = _steps(models, columns, report_cells, report_bds)
    shares = _encoder_shares(models, columns, report_cells)
    notes = _general_notes(models, columns, breakdowns) + notes + _output_check_notes(profiles)
    return Report(
        name=name,
        inputs=[lp.label for lp in profiles],
        skipped=list(skipped),
        models=models,
        columns=columns,
        headline=headline,
        encoder_shares=shares,
        breakdowns=breakdowns,
        steps=steps,
        top_ops=top_ops,
        waterfalls=waterfalls,
        provenance=provenance,
        notes=notes,
    )


def _cell(model: ModelRow, col: Column, valued: list[tuple[LoadedProfile, float]]) -> Cell:
    n = len(valued)
    source = col.setting.source
    if source is LatencySource.EMULATOR:
        statistic, runs = "sum of per-op emulator cycles", None
    elif source is LatencySource.ESTIMATE:
        # Deterministic: repeated estimates agree; the label names the estimator and its proxy.
        statistic = sorted({lp.profile.estimate.label for lp, _ in valued if lp.profile.estimate})[0]
        runs = None
    elif source is LatencySource.PUBLISHED:
        # A published table gives one figure; its statistic and run count are not stated.
        statistic, runs = "published figure", None
    else:
        # Each profile's figure says its statistic ("median of 100 runs", "AI Hub estimate").
        labels = sorted({lp.profile.latency.label() for lp, _ in valued})  # type: ignore[union-attr]
        statistic = labels[0] if n == 1 else f"median over {n} profiles of: {'; '.join(labels)}"
        runs = sum(lp.profile.latency.run_count for lp, _ in valued)  # type: ignore[union-attr]
    return Cell(
        model_id=model.id,
        column_id=col.id,
        value=statistics.median(v for _, v in valued),
        unit=col.unit,
        statistic=statistic,
        run_count=runs,
        profile_count=n,
        profiles=[lp.label for lp, _ in valued],
    )


def _breakdown(
    model: ModelRow, col: Column, members: list[LoadedProfile], notes: list[str]
) -> tuple[Breakdown | None, LoadedProfile | None]:
    per: list[tuple[LoadedProfile, dict]] = []
    for lp in members:
        got = _profile_blocks(lp.profile)
        if got is None:
            continue
        unit, blocks = got
        if unit is not col.unit:
            notes.append(
                f"{lp.label}: per-op times in {unit.value} in a {col.unit.value} column; left out of the breakdown."
            )
            continue
        per.append((lp, blocks))
        basis = op_times(lp.profile).basis
        if basis is TimeBasis.DERIVED_FROM_CYCLES:
            notes.append(
                f"{lp.label}: per-block times derived from device cycles (each block's share of the "
                f"cycles x the {lp.profile.latency.label()} latency)."  # type: ignore[union-attr]
            )
    if not per:
        return None, None
    blocks = _median_blocks([b for _, b in per])
    bd = Breakdown(
        model_id=model.id,
        column_id=col.id,
        unit=col.unit,
        total=sum(b.time for b in blocks),
        profile_count=len(per),
        blocks=blocks,
        kinds=_kinds(blocks),
    )
    rep = _representative([(lp, sum(t for _, t, _ in b.values())) for lp, b in per])
    return bd, rep


def _waterfalls(
    models: list[ModelRow], columns: list[Column], reps: dict[tuple[str, str], LoadedProfile]
) -> list[Waterfall]:
    """One profile per model: the newest device column with per-op data, else the newest emulator one."""
    out = []
    # Device columns first, then estimates, then the emulator's cycles.
    col_rank = {c.id: (c.setting.source.is_device_latency, c.unit is Unit.MS, version_key(c.qnn_version), -i)
                for i, c in enumerate(columns)}
    by_id = {c.id: c for c in columns}
    for model in models:
        candidates = [col_id for (model_id, col_id) in reps if model_id == model.id]
        if not candidates:
            continue
        col_id = max(candidates, key=lambda c: col_rank[c])
        rep = reps[(model.id, col_id)]
        profile = rep.profile
        ot = op_times(profile)
        ops = [
            WaterfallOp(**_op_row(op, t, ot.unit), kind=op.attribution.kind if op.attribution else None)
            for op, t in ((profile.ops[i], t) for i, t in ot.values)
        ]
        out.append(
            Waterfall(
                model_id=model.id, column_id=col_id, profile=rep.label, unit=by_id[col_id].unit, ops=ops
            )
        )
    return out


def _rows(model: ModelRow, *bds: Breakdown) -> list[list[BlockRow]]:
    return [_by_part(b.blocks) if model.is_encoder_block else b.blocks for b in bds]


def _steps(
    models: list[ModelRow],
    columns: list[Column],
    cells: dict[tuple[str, str], Cell],
    bds: dict[tuple[str, str], Breakdown],
) -> list[VersionStep]:
    steps = []
    for model in models:
        by_setting: dict[Setting, list[Column]] = {}
        for col in columns:  # already in version order within a setting
            if (model.id, col.id) in cells:
                by_setting.setdefault(col.setting, []).append(col)
        for cols in by_setting.values():
            for c0, c1 in pairwise(cols):
                a, z = cells[(model.id, c0.id)], cells[(model.id, c1.id)]
                ranked_by = "share" if c0.unit is Unit.CYCLES else "time"
                b0, b1 = bds.get((model.id, c0.id)), bds.get((model.id, c1.id))
                steps.append(
                    VersionStep(
                        model_id=model.id,
                        from_column=c0.id,
                        to_column=c1.id,
                        unit=c0.unit,
                        before=a.value,
                        after=z.value,
                        delta=z.value - a.value,
                        ratio=(z.value / a.value) if a.value else None,
                        ranked_by=ranked_by,
                        movers=_movers(*_rows(model, b0, b1), ranked_by) if b0 and b1 else [],
                    )
                )
    return steps


def _encoder_shares(
    models: list[ModelRow], columns: list[Column], cells: dict[tuple[str, str], Cell]
) -> list[EncoderShare]:
    out = []
    for enc in (m for m in models if m.is_encoder_block):
        # The block against full models of its own graph form only.
        for full in (m for m in models if not m.is_encoder_block and m.graph == enc.graph):
            for col in columns:
                e, f = cells.get((enc.id, col.id)), cells.get((full.id, col.id))
                if e and f and f.value:
                    out.append(
                        EncoderShare(
                            column_id=col.id,
                            encoder_model_id=enc.id,
                            full_model_id=full.id,
                            ratio=e.value / f.value,
                        )
                    )
    return out


def _output_check_notes(profiles: Sequence[LoadedProfile]) -> list[str]:
    """`profile --check-outputs`: the device's outputs on held-out inputs against the CPU."""

    def db(a) -> str:
        if a is None:
            return "n/a"
        return "identical" if a.exact else (f"{a.sqnr_db:.1f} dB" if a.sqnr_db is not None else "undefined")

    return [
        f"{lp.label}: device outputs on {oc.inputs} have SQNR {db(oc.vs_cpu_qdq)} against the CPU QDQ model "
        f"and {db(oc.vs_fp32)} against fp32 (AI Hub job {oc.job_id})."
        for lp in profiles
        if (oc := lp.profile.output_check) is not None
    ]


def _general_notes(models: list[ModelRow], columns: list[Column], breakdowns: list[Breakdown]) -> list[str]:
    notes = []
    sources = {c.setting.source for c in columns}
    if LatencySource.PUBLISHED in sources:
        notes.append(
            "Published columns are imported from a published table: one figure per QNN version, "
            "no per-op data, statistic and run count not stated."
        )
    if LatencySource.EMULATOR in sources:
        notes.append(
            "Emulator columns are cycles summed over ops from the x86 HTP emulator: they show where the work is, "
            "not how long a phone takes, and are never converted to ms."
        )
    if LatencySource.ESTIMATE in sources:
        devices = sorted({c.setting.device for c in columns if c.setting.source is LatencySource.ESTIMATE})
        notes.append(
            f"Estimate columns ({'; '.join(devices)}) are QNN's HTP performance estimator: estimated accelerator "
            "time of the simulated schedule for a proxy SoC of the same HTP generation, deterministic, without "
            "I/O or RPC; not device latency, and never mixed with device columns. Per-block estimates are each "
            "block's share of the simulated critical path (QNN 2.47-2.49 print cycles only: converted at the "
            "simulated clock)."
        )
    if any(b.unit is Unit.MS for b in breakdowns):
        notes.append(
            "Per-block device times come from per-op device cycles where the profile has them (each block's "
            "share of the cycles x the measured latency, so they add up to it); otherwise they are sums of "
            "per-op microseconds, which leave out graph launch and I/O and add up to a little less."
        )
    for enc in (m for m in models if m.is_encoder_block and len(m.input_shape) == 4):
        _, dim, h, w = enc.input_shape
        for full in (m for m in models if not m.is_encoder_block and m.variant in VARIANTS):
            v = VARIANTS[full.variant]
            if dim not in v.widths or len(full.input_shape) != 4:
                continue
            stage = v.widths.index(dim)
            side = full.input_shape[2] // (4 * 2**stage)
            notes.append(
                f"The standalone block ({enc.label}, {h * w} tokens) is not {full.label}'s own "
                f"stage-{stage} SwiftFormerEncoder (dim {dim} at {side}x{side}, {side * side} tokens): "
                f"it does {h * w / (side * side):.1f}x the tokens."
            )
    return notes


# ---------------------------------------------------------------------------- compare A B


def compare_profiles(a: LoadedProfile, b: LoadedProfile) -> Comparison:
    """B against A for one model: end-to-end and per-block deltas, most impact first."""
    est_a, est_b = (lp.profile.source is LatencySource.ESTIMATE for lp in (a, b))
    if est_a != est_b:
        raise ProfileError(
            f"--compare cannot set an estimate against a measurement: {a.label} is {a.profile.source.value}, "
            f"{b.label} is {b.profile.source.value}."
        )
    ma, mb = model_row(a.profile), model_row(b.profile)
    if ma.id != mb.id:
        raise ProfileError(
            f"--compare needs two profiles of the same model: {a.label} is {ma.label}, {b.label} is {mb.label}."
        )
    ua, ub = unit_of(a.profile), unit_of(b.profile)
    if ua is not ub:
        raise ProfileError(
            f"--compare cannot set emulator cycles against device latency: {a.label} is "
            f"{a.profile.source.value}, {b.label} is {b.profile.source.value}."
        )
    va, vb = headline_value(a.profile), headline_value(b.profile)
    for lp, v in ((a, va), (b, vb)):
        if v is None:
            raise ProfileError(f"{lp.label}: emulator profile without timed ops; nothing to compare.")
    assert va is not None and vb is not None
    ranked_by = "share" if ua is Unit.CYCLES else "time"

    notes = []
    sa, sb = setting_of(a.profile), setting_of(b.profile)
    differ = [
        f for f in ("source", "device", "chipset", "precision", "runtime") if getattr(sa, f) != getattr(sb, f)
    ]
    if differ:
        notes.append(
            f"A and B differ in {', '.join(differ)}: the delta mixes those with the toolchain change."
        )
    if ua is Unit.CYCLES:
        notes.append(
            "Emulator cycles are not device latency; blocks are ranked by the change of their share."
        )

    blocks: list[Mover] = []
    ga, gb = _profile_blocks(a.profile), _profile_blocks(b.profile)
    if not ga or not gb:
        missing = [lp.label for lp, g in ((a, ga), (b, gb)) if not g]
        notes.append(f"No per-op data in {' and '.join(missing)}: end-to-end delta only.")
    elif ga[0] is not gb[0]:
        notes.append(f"Per-op times are {ga[0].value} in A and {gb[0].value} in B: end-to-end delta only.")
    else:
        rows_a, rows_b = _median_blocks([ga[1]]), _median_blocks([gb[1]])
        if ma.is_encoder_block:
            rows_a, rows_b = _by_part(rows_a), _by_part(rows_b)
        blocks = _movers(rows_a, rows_b, ranked_by)

    return Comparison(
        model=ma,
        a=provenance_row(a, ma.id, "a"),
        b=provenance_row(b, mb.id, "b"),
        unit=ua,
        a_value=va,
        b_value=vb,
        delta=vb - va,
        ratio=(vb / va) if va else None,
        ranked_by=ranked_by,
        blocks=blocks,
        notes=notes,
    )

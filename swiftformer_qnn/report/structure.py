"""Two compiles side by side: what QNN built for each (pure; reads typed compile records).

The figures are the compile records' own (`compile_record.CompileRecord`, its `graph_cost` from
QNN's op trace): HTP ops by type, layout ops, float islands, boundary conversions and the
context binary's size. Deterministic, so a difference is a difference.
"""

from __future__ import annotations

from ..htp.estimate import Estimate
from ..htp.record import CompileRecord
from .model import CompileRow, StructureComparison, StructureDelta

TOTALS = ("HTP ops", "layout ops", "layout ops at input/output", "float islands", "boundary Quantize/Dequantize",
          "context binary bytes")


def _row(label: str, r: CompileRecord) -> CompileRow:
    return CompileRow(label=label, variant=r.model.variant, precision=r.model.precision,
                      input_shape=r.model.input_shape, soc=r.soc, qnn_version=r.qnn_version)


def _totals(r: CompileRecord) -> dict[str, int | None]:
    cost = r.graph_cost
    return {
        "HTP ops": r.htp_op_count,
        "layout ops": cost.layout_ops if cost else None,
        "layout ops at input/output": cost.boundary_layout_ops if cost else None,
        "float islands": cost.float_islands if cost else None,
        "boundary Quantize/Dequantize": cost.boundary_conversions if cost else None,
        "context binary bytes": r.context_binary_bytes,
    }


def _delta(metric: str, a: int | None, b: int | None) -> StructureDelta:
    return StructureDelta(metric=metric, a=a, b=b, delta=None if a is None or b is None else b - a)


def compare_structures(
    a_label: str, a: CompileRecord, b_label: str, b: CompileRecord,
    *, estimates: tuple[Estimate | None, Estimate | None] = (None, None),
) -> StructureComparison:
    """B's compiled graph against A's. An op type one graph lacks counts 0 there (when its op
    trace exists); a compile without an op trace (QNN 2.47) has no op figures, only its size.
    `estimates`: QNN's HTP estimate of each side, where its export made one."""
    ta, tb = _totals(a), _totals(b)
    totals = [_delta(m, ta[m], tb[m]) for m in TOTALS]
    types_a, types_b = a.htp_op_types, b.htp_op_types
    names = sorted(set(types_a or {}) | set(types_b or {}))
    op_types = [
        _delta(t, None if types_a is None else types_a.get(t, 0), None if types_b is None else types_b.get(t, 0))
        for t in names
    ]
    op_types.sort(key=lambda d: (-abs(d.delta or 0), d.metric))
    notes = []
    for side, r in (("A", a), ("B", b)):
        if r.htp_op_types is None:
            notes.append(f"{side} (QNN {r.qnn_version}) has no op trace: only its context binary size compares.")
    same = ("variant", "precision", "input_shape")
    differ = [k for k in same if getattr(a.model, k) != getattr(b.model, k) and None not in
              (getattr(a.model, k), getattr(b.model, k))]
    if differ:
        notes.append(f"A and B are different models ({', '.join(differ)} differ): the figures compare graphs, "
                     "not one model's compiles.")
    if a.soc != b.soc and a.soc and b.soc:
        notes.append(f"A targets {a.soc}, B {b.soc}.")
    ea, eb = estimates
    label = None
    if ea is not None and eb is not None:
        if ea.label != eb.label or ea.qnn_version != eb.qnn_version:
            notes.append(f"The estimates differ in proxy or QNN ({ea.label}, QNN {ea.qnn_version} vs {eb.label}, "
                         f"QNN {eb.qnn_version}).")
        label = ea.label
    elif ea is not None or eb is not None:
        label = (ea or eb).label  # type: ignore[union-attr]
        notes.append(f"Only {'A' if ea is not None else 'B'} holds an estimate (exported with its estimate stage).")
    return StructureComparison(a=_row(a_label, a), b=_row(b_label, b), totals=totals, op_types=op_types, notes=notes,
                               estimated_us_a=ea.us if ea else None, estimated_us_b=eb.us if eb else None,
                               estimate_label=label)

"""Two compiles side by side: what QNN built for each (pure; reads typed compile records).

The figures are the compile records' own, compared by `htp.diff` (HTP ops by type, layout ops,
float islands, boundary conversions, the context binary's size). Deterministic, so a
difference is a difference.
"""

from __future__ import annotations

from ..htp.diff import diff_compiles
from ..htp.estimate import Estimate
from ..htp.record import CompileRecord
from .model import CompileRow, StructureComparison


def _row(label: str, r: CompileRecord) -> CompileRow:
    return CompileRow(label=label, variant=r.model.variant, precision=r.model.precision,
                      input_shape=r.model.input_shape, soc=r.soc, qnn_version=r.qnn_version)


def compare_structures(
    a_label: str, a: CompileRecord, b_label: str, b: CompileRecord,
    *, estimates: tuple[Estimate | None, Estimate | None] = (None, None),
) -> StructureComparison:
    """B's compiled graph against A's. An op type one graph lacks counts 0 there (when its op
    trace exists); a compile without an op trace (QNN 2.47) has no op figures, only its size.
    `estimates`: QNN's HTP estimate of each side, where its export made one."""
    diff = diff_compiles(a, b)
    notes = []
    for side, r in (("A", a), ("B", b)):
        if r.htp_op_types is None:
            notes.append(f"{side} (QNN {r.qnn_version}) has no op trace: only its context binary size compares.")
    differ = [k for k, _, _ in diff.differ if k != "soc"]
    if differ:
        notes.append(f"A and B are different models ({', '.join(differ)} differ): the figures compare graphs, "
                     "not one model's compiles.")
    if any(k == "soc" for k, _, _ in diff.differ):
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
    return StructureComparison(a=_row(a_label, a), b=_row(b_label, b), totals=[d for _, d in diff.figures],
                               op_types=list(diff.op_types), notes=notes,
                               estimated_us_a=ea.us if ea else None, estimated_us_b=eb.us if eb else None,
                               estimate_label=label)

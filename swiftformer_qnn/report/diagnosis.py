"""`diagnose`'s result as a table, and written as diagnose.json and diagnose.md."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..core.tables import TableSpec, table_md
from ..pipeline.diagnose import Diagnosis
from ..pipeline.localize import describe


def diagnosis_table(d: Diagnosis) -> TableSpec:
    fmt = lambda v, ok=True: ("exact" if v is None else f"{v:.1f}") if ok else "n/a"  # noqa: E731
    return TableSpec(
        title=f"Per-block SQNR (dB), {d.variant} {d.precision}, one held-out input",
        headers=[("block",), ("kind",), ("CPU QDQ", "vs fp32"), ("HTP", "vs fp32"), ("HTP vs", "CPU QDQ")],
        rows=[[b.block, b.kind or "", fmt(b.cpu_qdq_vs_fp32_db, b.fp32_available),
               fmt(b.htp_vs_fp32_db, b.fp32_available), fmt(b.htp_vs_cpu_qdq_db)]
              for b in d.blocks],
        caption="SQNR of each block's output: how much of the model quantization (CPU QDQ) and the compiled "
                "binary (HTP emulator) keep. 'exact': identical outputs.",
        numeric_from=2,
    )


def write_diagnosis(d: Diagnosis, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "diagnose.json", out_dir / "diagnose.md"
    write_text_atomic(js, json.dumps(d.model_dump(), indent=2) + "\n")
    write_text_atomic(md, f"# Fidelity diagnosis: {d.export_dir}\n\nFloat graph: `{d.graph}`; input: {d.sample}.\n\n"
                      + table_md(diagnosis_table(d), level=2) + f"\n\nHTP vs CPU QDQ: {describe(d.divergence)}.\n")
    return js, md

"""HTP-vs-fp32 SQNR of exports: each export's context binary on the x86 HTP emulator against its
float ONNX, over all its held-out inputs (16 by default), converting to and from the binary's
native I/O where it has one (`export --io uint8-nhwc`, from `compile.json`).

Usage: python tests/bench/htp_sqnr.py OUT.json EXPORT_DIR [EXPORT_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from swiftformer_qnn.htp.record import read_compile_record  # noqa: E402
from swiftformer_qnn.htp.session import HtpTarget, htp_session  # noqa: E402
from swiftformer_qnn.measure.agreement import compare_outputs  # noqa: E402


def htp_vs_fp32(export: Path) -> dict:
    record = read_compile_record(export / "compile.json")
    heldout = np.load(export / "heldout.npy")
    fp32 = np.load(export / "heldout_fp32.npy")
    session = htp_session(export / "model.ctx.onnx", HtpTarget(record.soc_model, record.htp_arch))
    name = session.get_inputs()[0].name
    feed = next((t for t in record.io or [] if t.role == "input"), None)
    out = next((t for t in record.io or [] if t.role == "output"), None)
    outputs = []
    for i in range(len(heldout)):
        x = heldout[i : i + 1]
        (y,) = session.run(None, {name: feed.from_float(x) if feed else x})
        outputs.append(out.to_float(y) if out else y)
    classify = record.model.variant != "encoder"
    figures = compare_outputs(fp32, np.concatenate(outputs), classify=classify)
    return {"export": export.name, "variant": record.model.variant, "io": "uint8-nhwc" if record.io else "float-nchw",
            "graph_optimization_mode": record.graph_optimization_mode, "qnn_version": record.qnn_version,
            "heldout": int(len(heldout)), "htp_vs_fp32_sqnr_db": round(float(figures["sqnr_db"]), 2)}


def main() -> None:
    out, *exports = sys.argv[1:]
    rows = []
    for e in exports:
        rows.append(htp_vs_fp32(Path(e)))
        print(rows[-1], flush=True)
    Path(out).write_text(json.dumps({"weights": "realistic random (model.realistic_init, seed 0)", "rows": rows},
                                    indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The compiled graphs of issue 15, as JSON and Markdown: op tables on every local QNN version,
context binary sizes, and HTP-vs-fp32 SQNR of the faithful and HTP-ready graphs.

For XS and L1 at 224 and the standalone encoder block (1x96x64x64), each graph form is exported
with the tool's own command (`swiftformer-qnn export --graph G --qnn all`: realistic random
weights, the shipped calibration photographs, w8a8, SM8550), which compiles it with the main
environment's QNN and every installed toolchain. Per compile: HTP ops by type, layout ops (at
the boundary and inside), float islands, context binary bytes, read from each version's
`compile.json`. HTP-vs-fp32 SQNR: the main environment's context binary on the HTP emulator
against the float ONNX on the export's held-out inputs.

Run it from the tree whose graphs it should measure (its `swiftformer_qnn` is imported and
its CLI run); `--label` names the tree in the output (e.g. `before`, `after`).

Usage: python tests/bench/htp_graph_tables.py OUT.json [--label after] [--work DIR]
       [--variants xs,l1,encoder] [--graphs faithful,htp]
       python tests/bench/htp_graph_tables.py --markdown OUT.md BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from swiftformer_qnn.htp.record import read_compile_record  # noqa: E402
from swiftformer_qnn.htp.session import HtpTarget, htp_session  # noqa: E402
from swiftformer_qnn.measure.agreement import compare_outputs  # noqa: E402


def export(variant: str, graph: str, out: Path, cache: Path) -> float:
    cmd = [sys.executable, "-m", "swiftformer_qnn.cli", "export", "--variant", variant, "--graph", graph,
           "--qnn", "all", "--output-dir", str(out), "--no-install"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTFORMER_QNN_CACHE": str(cache), "COLUMNS": "120"}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def htp_vs_fp32_db(out: Path) -> float:
    """The export's context binary on the HTP emulator against its float ONNX, on the held-out inputs."""
    import onnx

    heldout = np.load(out / "heldout.npy")
    fp32 = np.load(out / "heldout_fp32.npy")
    name = onnx.load(str(out / "model.qdq.onnx"), load_external_data=False).graph.input[0].name
    session = htp_session(out / "model.ctx.onnx", HtpTarget())
    emulated = np.concatenate([session.run(None, {name: heldout[i : i + 1]})[0] for i in range(len(heldout))])
    return round(float(compare_outputs(fp32, emulated, classify=True)["sqnr_db"]), 2)


def compiles(out: Path) -> dict[str, dict]:
    """Per QNN version: the compile record's structure (2.47 writes no op trace: size only)."""
    found = {}
    for path in sorted((out / "qnn-versions").glob("qnn-*/compile.json")):
        r = read_compile_record(path)
        cost = r.graph_cost
        found[r.qnn_version] = {
            "htp_ops": r.htp_op_count,
            "op_types": r.htp_op_types,
            "layout_ops": cost.layout_ops if cost else None,
            "boundary_layout_ops": getattr(cost, "boundary_layout_ops", None) if cost else None,
            "float_islands": cost.float_islands if cost else None,
            "context_binary_bytes": r.context_binary_bytes,
        }
    return found


MODELS = {"xs": "SwiftFormer-XS 1x3x224x224", "l1": "SwiftFormer-L1 1x3x224x224",
          "encoder": "encoder block 1x96x64x64"}


def _columns(before: dict, after: dict) -> list[tuple[str, str, dict]]:
    """(model, column label, row) for faithful, htp before, htp after."""
    out = []
    for variant in MODELS:
        for label, data, graph in (("faithful", after, "faithful"), ("htp before", before, "htp"),
                                   ("htp after", after, "htp")):
            row = next((r for r in data["rows"] if r["variant"] == variant and r["graph"] == graph), None)
            if row:
                out.append((variant, label, row))
    return out


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.3f} MB"


def markdown(before: dict, after: dict) -> str:
    cols = _columns(before, after)
    lines = ["# The compiled SwiftFormer graphs: faithful, HTP-ready before and after (issue 15)", "",
             "Measured with `tests/bench/htp_graph_tables.py` (the tool's own `export --graph G --qnn all`: "
             f"{after['weights']}, the shipped calibration photographs, {after['precision']}, {after['soc']}); "
             f"`htp before` is the tree before the InstanceNorm token normalisation ({_tree(before)}), "
             f"`htp after` the tree that wrote this ({_tree(after)}). Op counts are QNN's op trace (`compile.json`); "
             "QNN 2.47 writes no op trace (context binary size only). SQNR: the QNN 2.51 context binary on "
             "the x86 HTP emulator against the float ONNX, on the export's held-out inputs. "
             "Beside this file: the measurements (`before.json`, `after.json`) and `compare-*/`, "
             "`swiftformer-qnn report --compare A B` of the same compiles.", ""]
    lines += ["## Summary (QNN 2.51.0)", "",
              "| model | graph | HTP ops | layout ops (inside + at input/output) | float islands | "
              "context binary | HTP-vs-fp32 SQNR |", "|---|---|---:|---|---:|---:|---:|"]
    for variant, label, row in cols:
        c = row["compiles"].get("2.51.0", {})
        boundary = c.get("boundary_layout_ops")
        layout = (f"{c['layout_ops']} ({c['layout_ops'] - boundary} + {boundary})" if boundary is not None
                  else f"{c.get('layout_ops')}")
        lines.append(f"| {MODELS[variant]} | {label} | {c.get('htp_ops')} | {layout} | {c.get('float_islands')} | "
                     f"{_mb(c.get('context_binary_bytes'))} | {row['htp_vs_fp32_sqnr_db']:.2f} dB "
                     f"({row['heldout']} held-out) |")
    lines.append("")
    for variant in MODELS:
        mine = [(label, row) for v, label, row in cols if v == variant]
        if not mine:
            continue
        versions = sorted({v for _, row in mine for v in row["compiles"]}, key=lambda v: tuple(map(int, v.split("."))))
        traced = [v for v in versions if any(row["compiles"].get(v, {}).get("op_types") for _, row in mine)]
        lines += [f"## {MODELS[variant]}", "", "HTP ops by type (QNN " + ", ".join(traced) + "; a cell with "
                  "several figures lists them by version where they differ):", "",
                  "| op type | " + " | ".join(label for label, _ in mine) + " |",
                  "|---|" + "---:|" * len(mine)]
        types = sorted({t for _, row in mine for v in traced for t in (row["compiles"].get(v, {}).get("op_types") or {})})

        def cell(row: dict, key, traced=traced) -> str:
            vals = [key(row["compiles"].get(v, {})) for v in traced]
            if len(set(vals)) == 1:
                return str(vals[0])
            return " / ".join(f"{v}: {x}" for v, x in zip(traced, vals, strict=True))

        for t in types:
            lines.append(f"| {t} | " + " | ".join(cell(row, lambda c, t=t: (c.get("op_types") or {}).get(t, 0))
                                                  for _, row in mine) + " |")
        lines.append("| **total** | " + " | ".join(cell(row, lambda c: c.get("htp_ops")) for _, row in mine) + " |")
        lines += ["", "Context binary by QNN version:", "",
                  "| QNN | " + " | ".join(label for label, _ in mine) + " |", "|---|" + "---:|" * len(mine)]
        for v in versions:
            lines.append(f"| {v} | " + " | ".join(_mb(row["compiles"].get(v, {}).get("context_binary_bytes"))
                                                   for _, row in mine) + " |")
        lines.append("")
    return "\n".join(lines)


def measured_tree() -> str:
    """The commit of the tree measured, `+dirty` where it had uncommitted changes to the package."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "swiftformer_qnn"], capture_output=True, text=True).stdout
    return head + ("+dirty" if dirty.strip() else "")


def _tree(data: dict) -> str:
    return f"commit {data['commit'][:12]}" if data.get("commit") else "commit not recorded"


def main() -> None:
    if sys.argv[1:2] == ["--markdown"]:
        out, before, after = (Path(p) for p in sys.argv[2:5])
        out.write_text(markdown(json.loads(before.read_text()), json.loads(after.read_text())))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--label", default="after")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--variants", default="xs,l1,encoder")
    ap.add_argument("--graphs", default="faithful,htp")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="htp-graph-tables-"))
    cache = work / "cache"
    rows = []
    for variant in args.variants.split(","):
        for graph in args.graphs.split(","):
            out = work / f"{variant}-{graph}"
            seconds = export(variant, graph, out, cache)
            rows.append({
                "variant": variant, "graph": graph,
                "input_shape": read_compile_record(out / "compile.json").model.input_shape,
                "export_s_loaded_machine": round(seconds, 1),  # with the --qnn all sweep; noisy
                "htp_vs_fp32_sqnr_db": htp_vs_fp32_db(out),
                "heldout": int(np.load(out / "heldout.npy").shape[0]),
                "compiles": compiles(out),
            })
            print(f"{variant} {graph}: {rows[-1]['compiles'].get('2.51.0', {}).get('htp_ops')} HTP ops, "
                  f"SQNR {rows[-1]['htp_vs_fp32_sqnr_db']} dB", flush=True)
    result = {"label": args.label, "commit": measured_tree(), "weights": "realistic random (model.realistic_init, seed 0)",
              "precision": "w8a8", "soc": "sm8550", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Where the estimated HTP time goes: SwiftFormer-L1 (224) and the encoder block (1x96x64x64), w8a8.

Every figure here is QNN's HTP performance estimator ("Hextimate", inside the QNN HTP library
that onnxruntime-qnn bundles), never a device measurement: the graph is compiled for the
estimator SoC SA8255P (soc_model 52, HTP v73, the SM8550 generation "Kailua", simulated at
1497.6 MHz) as a proxy for the Snapdragon 8 Gen 2 (SM8550, which has no estimator).

Per model the script
1. exports with the tool's own command (`swiftformer-qnn export --until quantize`: realistic
   random weights, the shipped calibration photographs, w8a8; `--export-arg` passes more) and,
   with `--io uint8-nhwc`, rewrites the QDQ graph to native I/O as the compile stage does;
2. compiles the QDQ ONNX for soc 52 with the product's compile options (`HtpTarget`: the graph
   optimization level) plus any `--option`, and `profiling_level=optrace`: the CSV gives the graph
   totals (cycles, us, lower/upper estimates, input fill), the `_qnn.log` embeds the
   estimator's Chrome trace (events in cycles on the threads FG (HMX convolutions and the
   sequencer's scalar work), HVX 1-4, DMA);
3. runs the compiled binary once on the x86 HTP emulator with `profiling_level=detailed` only
   to read each QNN op id's name (`<name>:OpId_N` rows; the trace's event ids carry the op id
   in their low 32 bits), and joins QNN's framework op trace (op name -> ONNX nodes) so
   `measure.attribution` puts each op in its block;
4. splits the trace's span (the estimated total) over the ops: every cycle goes in equal
   shares to the ops running on a compute thread (FG, HVX 1-4) at that moment, or, when none
   runs, to the ops whose DMA is in flight ("DMA wait"). These shares sum to the estimate.
   Beside them: busy cycles per unit (HMX, HVX summed over its 4 threads, FG scalar, DMA) and
   DRAM bytes read/written by each op's DMA.
With `--qnn-python V=PY` the graph totals are also estimated with other QNN versions (the
toolchain environments' Pythons, this file run as a worker in them).

Usage: python tests/bench/estimate_breakdown.py OUT.json [--label after] [--variants l1,encoder]
           [--io uint8-nhwc] [--option K=V] [--qnn-python 2.48.40=/path/bin/python ...]
       python tests/bench/estimate_breakdown.py --markdown OUT.md BEFORE.json [AFTER.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ESTIMATOR_SOC = {"soc_model": "52", "htp_arch": "73"}  # SA8255P: the v73 SoC the estimator simulates
MODELS = {"l1": "SwiftFormer-L1 1x3x224x224", "encoder": "encoder block 1x96x64x64",
          "xs": "SwiftFormer-XS 1x3x224x224", "l3": "SwiftFormer-L3 1x3x224x224"}
UNITS = ("hmx", "hvx", "fg", "dma")


# --- worker: runs in any toolchain environment (onnxruntime + onnxruntime-qnn + numpy only) ---

def _session_options(provider: dict, context_out: Path | None):
    import onnxruntime as ort
    import onnxruntime_qnn

    try:
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    except Exception as exc:  # noqa: BLE001 - registered twice in one process
        if "already" not in str(exc).lower():
            raise
    device = next(d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_provider_for_devices([device], {"backend_path": onnxruntime_qnn.get_qnn_htp_path(), **provider})
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if context_out is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(context_out))
        so.add_session_config_entry("ep.context_embed_mode", "0")
    return so


def worker(model: Path, work: Path, level: str, options: dict, op_names: bool) -> None:
    """Compile `model` for the estimator SoC into `work` (estimate.csv, estimate_qnn.log); with
    `op_names`, also run the binary once on the emulator to name the op ids (run.csv)."""
    import numpy as np
    import onnxruntime as ort
    import onnxruntime_qnn

    work.mkdir(parents=True, exist_ok=True)
    provider = {**ESTIMATOR_SOC, "profiling_level": level, "profiling_file_path": str(work / "estimate.csv"), **options}
    if op_names:
        provider.update(enable_framework_op_trace="1", framework_op_trace_dir=str(work))
    ort.InferenceSession(str(model), _session_options(provider, work / "model.ctx.onnx"))
    info = {"qnn_version": onnxruntime_qnn.build_and_package_info.qnn_version}
    if op_names:
        session = ort.InferenceSession(str(work / "model.ctx.onnx"), _session_options(
            {**ESTIMATOR_SOC, "profiling_level": "detailed", "profiling_file_path": str(work / "run.csv")}, None))
        feeds = {}
        for i in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            rng = np.random.default_rng(0)
            feeds[i.name] = (rng.integers(0, 256, shape).astype(np.uint8) if "uint8" in i.type
                             else rng.standard_normal(shape).astype(np.float32))
        session.run(None, feeds)
    (work / "worker.json").write_text(json.dumps(info))


# --- reading the estimator's outputs ----------------------------------------------------------

def graph_totals(csv_path: Path) -> dict:
    """The estimator's graph rows of a QNN profile CSV: cycles, us (2.50+), bounds, bytes."""
    keys = {"Simulated (Accelerator exec cycles)": "cycles",
            "Simulated (Accelerator exec cycles (lower estimate))": "cycles_lower",
            "Simulated (Accelerator exec cycles (upper estimate))": "cycles_upper",
            "Simulated (Accelerator exec time us)": "us",
            "Simulated (Accelerator exec time us (lower estimate))": "us_lower",
            "Simulated (Accelerator exec time us (upper estimate))": "us_upper",
            "Input Fill": "input_fill_bytes", "Output Spill": "output_spill_bytes",
            "Missing Ops (Number of Ops with no Costs associated)": "missing_ops"}
    found = {}
    for line in csv_path.read_text().splitlines():
        cells = line.split(",")
        if len(cells) >= 7 and cells[1] == "BACKEND" and cells[6] in keys:
            found[keys[cells[6]]] = int(cells[2])
    if "cycles" not in found:
        raise SystemExit(f"{csv_path}: no estimator rows (was the SoC an estimator SoC?)")
    return found


def embedded_trace(log_path: Path) -> dict:
    """The Chrome-trace JSON object the `_qnn.log` embeds (the object around `"traceEvents"`)."""
    data = log_path.read_bytes()
    key = data.find(b'"traceEvents"')
    if key < 0:
        raise SystemExit(f"{log_path}: no estimator trace (profiling_level optrace?)")
    start = data.rfind(b"{", 0, key)
    depth, in_string, escaped = 0, False, False
    for end in range(start, len(data)):
        c = data[end]
        if in_string:
            escaped, in_string = (False, in_string) if escaped else (c == 0x5C, c != 0x22)
        elif c == 0x22:
            in_string = True
        elif c == 0x7B:
            depth += 1
        elif c == 0x7D:
            depth -= 1
            if depth == 0:
                return json.loads(data[start : end + 1])
    raise SystemExit(f"{log_path}: the estimator trace is cut short")


def op_names(run_csv: Path) -> dict[int, str]:
    names = {}
    for line in run_csv.read_text().splitlines():
        cells = line.split(",")
        m = re.fullmatch(r"(?:(.*):)?\s*OpId_(\d+) \(cycles\)", cells[6].strip()) if len(cells) >= 7 else None
        if m and cells[1] == "NODE":
            names[int(m.group(2))] = (m.group(1) or "").strip() or cells[6].split(" OpId")[0].strip()
    return names


def op_id(event: dict) -> int:
    return int(event["args"]["id"], 16) & 0xFFFFFFFF


def per_op(trace: dict) -> tuple[int, dict[int, dict]]:
    """The span and, per op id: critical-path share, DMA-wait share, busy cycles per unit,
    DRAM bytes, and the HTP implementations (trace event names) with their busy cycles."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    span = max(e["ts"] + e["dur"] for e in events)
    ops: dict[int, dict] = collections.defaultdict(lambda: {
        "critical": 0.0, "dma_wait": 0.0, **{u: 0 for u in UNITS}, "dram_read": 0, "dram_write": 0,
        "impl": collections.Counter()})
    edges = []
    for e in events:
        op, tid, args = ops[op_id(e)], e["tid"], e["args"]
        unit = ("hmx" if "uses_hmx" in args.get("flags", []) else "fg") if tid == 0 else "hvx" if tid <= 4 else "dma"
        op[unit] += e["dur"]
        if unit == "dma":
            op["dram_read"] += args.get("bw_info", {}).get("dram_read", 0)
            op["dram_write"] += args.get("bw_info", {}).get("dram_write", 0)
        elif not e["name"].startswith("default_"):
            op["impl"][e["name"]] += e["dur"]
        if e["dur"] > 0:
            lane = "dma" if unit == "dma" else "compute"
            edges += [(e["ts"], 1, lane, op_id(e)), (e["ts"] + e["dur"], -1, lane, op_id(e))]
    edges.sort(key=lambda x: (x[0], x[1]))
    active = {"compute": collections.Counter(), "dma": collections.Counter()}
    previous, idle = 0, 0
    for t, step, lane, oid in edges:
        if t > previous:
            running = [k for k, n in active["compute"].items() if n > 0]
            field = "critical"
            if not running:
                running, field = [k for k, n in active["dma"].items() if n > 0], "dma_wait"
            for k in running:
                ops[k][field] += (t - previous) / len(running)
            if not running:
                idle += t - previous
            previous = t
        active[lane][oid] += step
    if idle:
        ops[-1]["critical"] += idle  # nothing running: scheduling gaps
    return span, ops


# --- one model ----------------------------------------------------------------------------------

def export(variant: str, out: Path, cache: Path, extra: list[str]) -> Path:
    cmd = [sys.executable, "-m", "swiftformer_qnn.cli", "export", "--variant", variant, "--until", "quantize",
           "--output-dir", str(out), "--force", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWIFTFORMER_QNN_CACHE": str(cache), "COLUMNS": "120"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return out / "model.qdq.onnx"


def run_worker(python: str, model: Path, work: Path, level: str, options: dict, names: bool) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", str(model), str(work), level, json.dumps(options)]
    if names:
        cmd.append("--names")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"estimate worker failed ({python}):\n{done.stderr[-3000:]}")
    return json.loads((work / "worker.json").read_text())


_EDGE_TYPES = {"Quantize", "Dequantize", "Transpose"}


def estimate_breakdown(variant: str, qdq: Path, work: Path, options: dict) -> dict:
    from swiftformer_qnn.measure.attribution import attribute_op

    info = run_worker(sys.executable, qdq, work, "optrace", options, names=True)
    totals = graph_totals(work / "estimate.csv")
    span, ops = per_op(embedded_trace(work / "estimate_qnn.log"))
    names = op_names(work / "run.csv")
    trace = json.loads((work / "qnn_op_trace.json").read_text())
    mapping = {m["dst_name"]: m for g in trace["subgraph_traces"] for m in g["op_mappings"]}
    rows = []
    for oid, op in sorted(ops.items()):
        name = names.get(oid, "(scheduling gaps)" if oid == -1 else f"(QNN-internal op {oid})")
        m = mapping.get(name, {})
        sources = [s["name"] for s in m.get("sources", []) if s["type"] == "OP"]
        att = attribute_op(name, sources, variant) if oid != -1 else None
        impl = op["impl"].most_common(1)[0][0] if op["impl"] else "-"
        qnn_type = m.get("dst_qnn_op_type", "-")
        # The graph's edges: QNN's input/output slices, and the conversions of its float NCHW
        # tensors (ops named after no module), apart from the blocks they feed.
        edge = name in ("Input", "Output") or (qnn_type in _EDGE_TYPES and not name.startswith("/"))
        rows.append({"op_id": oid, "name": name, "qnn_op_type": qnn_type, "htp_impl": impl,
                     "block": "(graph input/output)" if edge else att.block if att else "-",
                     "part": "" if edge else (att.part if att else None) or "",
                     "critical_cycles": round(op["critical"]), "dma_wait_cycles": round(op["dma_wait"]),
                     **{f"{u}_cycles": op[u] for u in UNITS},
                     "dram_read_bytes": op["dram_read"], "dram_write_bytes": op["dram_write"]})
    return {"variant": variant, "model": MODELS.get(variant, variant), "qnn_version": info["qnn_version"],
            "provider_options": options, "totals": totals, "trace_span_cycles": span, "ops": rows}


def by(rows: list[dict], key) -> list[dict]:
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(key(r), {"group": key(r), "ops": 0, "critical_cycles": 0, "dma_wait_cycles": 0,
                                       **{f"{u}_cycles": 0 for u in UNITS}, "dram_read_bytes": 0})
        g["ops"] += 1
        for k in g:
            if k.endswith(("_cycles", "_bytes")):
                g[k] += r[k]
    return sorted(groups.values(), key=lambda g: -(g["critical_cycles"] + g["dma_wait_cycles"]))


# --- Markdown -------------------------------------------------------------------------------------

def _table(groups: list[dict], span: int, title: str, mhz: float) -> list[str]:
    lines = [f"| {title} | ops | critical path cycles (share) | DMA wait | ~us | HMX | HVX (4 threads) | FG scalar | DMA busy | DRAM read |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
        crit = g["critical_cycles"] + g["dma_wait_cycles"]
        lines.append(f"| {g['group']} | {g['ops']} | {g['critical_cycles']:,} ({crit / span:.1%}) | {g['dma_wait_cycles']:,} | "
                     f"{crit / mhz:.1f} | {g['hmx_cycles']:,} | {g['hvx_cycles']:,} | {g['fg_cycles']:,} | "
                     f"{g['dma_cycles']:,} | {g['dram_read_bytes'] / 1e3:,.0f} KB |")
    return lines


def _block_key(r: dict) -> str:
    return r["block"] + (f" / {r['part']}" if r["part"] else "")


def _type_key(r: dict) -> str:
    return f"{r['qnn_op_type']} ({r['htp_impl']})"


def markdown_for(run: dict) -> list[str]:
    lines = []
    for m in run["models"]:
        t = m["totals"]
        mhz = 1497.6  # the estimator's simulated core clock (Hextimate Configuration sim_core_freq)
        us = t.get("us", round(t["cycles"] / mhz))
        lines += [f"### {m['model']}, {run['label']}: estimated {us} us ({t.get('us_lower', '?')}-{t.get('us_upper', '?')}), "
                  f"{t['cycles']:,} cycles, input fill {t.get('input_fill_bytes', 0) / 1e6:.2f} MB (QNN {m['qnn_version']})", ""]
        lines += [f"Inputs and outputs: {run.get('io', 'float-nchw')}. Compile options beyond the SoC: "
                  + (", ".join(f"`{k}={v}`" for k, v in m["provider_options"].items()) or "none (QNN's defaults)"), ""]
        lines += ["Per block:", ""] + _table(by(m["ops"], _block_key), m["trace_span_cycles"], "block / part", mhz)
        lines += ["", "Per op type (QNN op type and the HTP implementation the estimator scheduled):", ""]
        lines += _table(by(m["ops"], _type_key), m["trace_span_cycles"], "op type (HTP implementation)", mhz) + [""]
    if run.get("versions"):
        lines += ["Graph totals on other QNN versions (same QDQ graphs, same options):", "",
                  "| model | QNN | cycles | ~us (lower-upper) |", "|---|---|---:|---|"]
        for v in run["versions"]:
            t = v["totals"]
            us = t.get("us", round(t["cycles"] / 1497.6))
            lines.append(f"| {MODELS.get(v['variant'], v['variant'])} | {v['qnn_version']} | {t['cycles']:,} | "
                         f"{us} ({t.get('us_lower', round(t['cycles_lower'] / 1497.6))}-"
                         f"{t.get('us_upper', round(t['cycles_upper'] / 1497.6))}) |")
        lines.append("")
    return lines


def comparison(runs: list[dict]) -> list[str]:
    """Per model, the estimate and each block's critical-path time side by side, one column per run."""
    mhz = 1497.6
    lines = ["## Side by side", ""]
    variants = [m["variant"] for m in runs[0]["models"]]
    for variant in variants:
        cols = [(r["label"], next((m for m in r["models"] if m["variant"] == variant), None)) for r in runs]
        cols = [(label, m) for label, m in cols if m]
        lines += [f"### {MODELS.get(variant, variant)}", "",
                  "| block | " + " | ".join(f"{label} (~us)" for label, _ in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        totals = []
        for _, m in cols:
            t = m["totals"]
            totals.append(f"**{t.get('us', round(t['cycles'] / mhz))}** ({t.get('us_lower', '?')}-{t.get('us_upper', '?')})")
        lines.append("| **estimate (QNN " + cols[0][1]["qnn_version"] + ")** | " + " | ".join(totals) + " |")
        per = [{g["group"]: g["critical_cycles"] + g["dma_wait_cycles"] for g in by(m["ops"], lambda r: r["block"])}
               for _, m in cols]
        order = sorted({b for p in per for b in p}, key=lambda b: -max(p.get(b, 0) for p in per))
        for b in order:
            lines.append(f"| {b} | " + " | ".join(f"{p[b] / mhz:.1f}" if b in p else "–" for p in per) + " |")
        versions = sorted({v["qnn_version"] for r in runs for v in r.get("versions", []) if v["variant"] == variant})
        for qv in versions:
            cells = []
            for r, _ in [(r, None) for r in runs if any(m["variant"] == variant for m in r["models"])]:
                v = next((v for v in r.get("versions", []) if v["variant"] == variant and v["qnn_version"] == qv), None)
                cells.append(f"{v['totals']['cycles']:,} cycles" if v else "–")
            lines.append(f"| estimate on QNN {qv} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(runs: list[dict]) -> str:
    head = ["# Where the estimated HTP time goes (issue 22)", "",
            "All times are **estimated** (QNN Hextimate, SA8255P proxy for SM8550, HTP v73, 1497.6 MHz simulated), "
            "not measured on a device. Written by `tests/bench/estimate_breakdown.py` (its docstring says how the "
            "trace is split). *Critical path*: each cycle of the estimated span shared by the ops running on a "
            "compute thread (FG = HMX convolutions and the sequencer's scalar work, HVX 1-4) at that moment; "
            "*DMA wait*: cycles when only DMA ran. The two columns sum to the estimate. HMX / HVX / FG / DMA: busy "
            "cycles per unit (HVX summed over its 4 threads, so parallel work exceeds the span). DRAM read: bytes the "
            "op's DMA read from DDR (weights, the input).", ""]
    body = comparison(runs) if len(runs) > 1 else []
    for run in runs:
        body += [f"## {run['label']} (tree {run['commit'][:12]})", "", *markdown_for(run)]
    return "\n".join(head + body) + "\n"


def measured_tree() -> str:
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "swiftformer_qnn"], capture_output=True, text=True).stdout
    return head + ("+dirty" if dirty.strip() else "")


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        model, work, level, options = sys.argv[2:6]
        worker(Path(model), Path(work), level, json.loads(options), "--names" in sys.argv)
        return
    if sys.argv[1:2] == ["--markdown"]:
        out, *inputs = sys.argv[2:]
        Path(out).write_text(markdown([json.loads(Path(p).read_text()) for p in inputs]))
        return
    sys.path.insert(0, str(REPO))
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path, help="JSON file to write")
    ap.add_argument("--label", default="after")
    ap.add_argument("--variants", default="l1,encoder")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--export-arg", action="append", default=[], help="passed to `swiftformer-qnn export`")
    ap.add_argument("--option", action="append", default=[], help="extra QNN provider option K=V for the estimate")
    ap.add_argument("--io", default="float-nchw", help="float-nchw, or uint8-nhwc (native I/O, as export --io)")
    ap.add_argument("--qnn-python", action="append", default=[], help="VERSION=PYTHON of a toolchain environment")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="estimate-breakdown-"))
    from swiftformer_qnn.htp.session import HtpTarget
    from swiftformer_qnn.pipeline.compile import native_io_model

    # What the product's compile asks of QNN (beyond the SoC), then this run's extra options.
    product = {k: v for k, v in HtpTarget().provider_options().items()
               if k not in ("backend_path", "soc_model", "htp_arch")}
    options = {**product, **dict(o.split("=", 1) for o in args.option)}
    models, versions = [], []
    for variant in args.variants.split(","):
        qdq = export(variant, work / f"{variant}-export", work / "cache", args.export_arg)
        if args.io == "uint8-nhwc":
            qdq, _ = native_io_model(qdq, qdq.parent, "model.native-io.onnx")
        models.append(estimate_breakdown(variant, qdq, work / f"{variant}-{args.label}-estimate", options))
        t = models[-1]["totals"]
        print(f"{variant}: estimated {t.get('us')} us ({t.get('us_lower')}-{t.get('us_upper')}), {t['cycles']} cycles", flush=True)
        for spec in args.qnn_python:
            version, python = spec.split("=", 1)
            vwork = work / f"{variant}-{args.label}-qnn-{version}"
            info = run_worker(python, qdq, vwork, "detailed", options, names=False)
            versions.append({"variant": variant, "qnn_version": info["qnn_version"],
                             "totals": graph_totals(vwork / "estimate.csv")})
            print(f"  QNN {info['qnn_version']}: {versions[-1]['totals']['cycles']} cycles", flush=True)
    result = {"label": args.label, "commit": measured_tree(), "export_args": args.export_arg, "io": args.io,
              "weights": "realistic random (model.realistic_init, seed 0)", "precision": "w8a8",
              "estimator": "QNN Hextimate, SA8255P (soc_model 52, v73) proxy for SM8550",
              "models": models, "versions": versions}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""qnn-profile-viewer's three output formats, written the way QAIRT's tool writes them.

Shaped after public samples of QAIRT's documentation and tutorials (QNN 2.13 text summary,
QAIRT 2.47 CSV, QAIRT 2.49 standardized JSON), never after the importers: the importer tests
and the stand-in SDK's `qnn-profile-viewer` both write through these functions.

An inference is a dict: `netrun_us`, `qnn_execute_us`, `accelerator_us`, `cycles` (the
graph's accelerator cycles) and `ops`, a list of (QNN event identifier, cycles) such as
(`/stem/conv1/Conv_token_13:OpId_1263 (cycles)`, 22667).
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

RAW = Path(__file__).resolve().parent.parent / "profiles" / "emulator"
EMULATOR_CSV = {
    "l1": RAW / "l1-w8a8-qnn2.51.0-htp-emulator-x86-64.raw" / "qnn_profile.csv",
    "encoder": RAW / "encoder-w8a8-qnn2.51.0-htp-emulator-x86-64.raw" / "qnn_profile.csv",
}
OP_TRACE = {k: v.with_name("qnn_op_trace.json") for k, v in EMULATOR_CSV.items()}


def exported_ops(variant: str) -> list[tuple[str, float]]:
    """(identifier, emulator cycles) of every HTP op QNN built from our export of `variant`,
    in execution order, from the committed emulator run (QNN's own CSV)."""
    with EMULATOR_CSV[variant].open(newline="") as f:
        return [(r["Event Identifier"], float(r["Time"])) for r in csv.DictReader(f) if r["Message"] == "NODE"]


def device_inferences(variant: str, n: int, *, scale: float = 1e-2, latency_us: float = 2400.0) -> list[dict]:
    """`n` inferences with plausible phone magnitudes: the emulator's per-op cycles of
    `variant` scaled to a phone's few million per inference."""
    return inferences_of([(i, c * scale) for i, c in exported_ops(variant)], n, latency_us=latency_us)


def inferences_of(ops: list[tuple[str, float]], n: int, *, latency_us: float = 2400.0) -> list[dict]:
    """`n` inferences of these (identifier, cycles) ops, with a few percent of run-to-run
    spread per op and per inference; `ops=[]` for a basic-level run (no per-op rows)."""
    out = []
    for i in range(n):
        wobble = [1.0 + 0.03 * (((k * 7 + i * 13) % 11) - 5) / 5 for k in range(len(ops))]
        cycles = [(ident, float(round(c * w))) for (ident, c), w in zip(ops, wobble, strict=True)]
        lat = latency_us * (1.0 + 0.02 * ((i * 5) % 7 - 3) / 3)
        out.append(
            {
                "netrun_us": round(lat + 23),
                "qnn_execute_us": round(lat),
                "accelerator_us": round(lat * 0.84),
                "cycles": sum(c for _, c in cycles),
                "ops": cycles,
            }
        )
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}"


def write_text(graph: str, inferences: list[dict], *, log: str = "qnn-profiling-data_0.log") -> str:
    """`qnn-profile-viewer --input_log X.log` (stdout): Average/Min/Max Execute Stats blocks."""

    def block(title: str, pick) -> list[str]:
        cyc = pick([i["cycles"] for i in inferences])
        lines = [f"Execute Stats ({title}):", "-" * (len(title) + 17), "Total Inference Time:", "-" * 21,
                 f"Graph 0 ({graph}):",
                 f"    NetRun:  {_fmt(pick([i['netrun_us'] for i in inferences]))} us",
                 "    Backend (Number of HVX threads used): 4 count",
                 f"    Backend (RPC (execute) time): {_fmt(pick([i['qnn_execute_us'] - 30 for i in inferences]))} us",
                 f"    Backend (QNN accelerator (execute) time): {_fmt(pick([i['accelerator_us'] + 90 for i in inferences]))} us"]
        if inferences[0]["ops"]:
            lines.append(f"    Backend (Accelerator (execute) time (cycles)): {_fmt(cyc)} cycles")
            for k, (ident, _) in enumerate(inferences[0]["ops"]):
                lines.append(f"        {ident}: {_fmt(pick([i['ops'][k][1] for i in inferences]))} cycles")
        lines += [f"    Backend (Accelerator (execute) time): {_fmt(pick([i['accelerator_us'] for i in inferences]))} us",
                  f"    Backend (QNN (execute) time): {_fmt(pick([i['qnn_execute_us'] for i in inferences]))} us"]
        return lines

    avg = lambda xs: round(statistics.fmean(xs))  # noqa: E731 - the tool prints integer averages
    out = [f"Input Log File Location: {log}", "Log File Created: Tue Dec  1 14:02:11 2026",
           "Time Scale: 1e-06", "Epoch Timestamp: 1796220131000000 Steady Clock Timestamp: 80442123456", "",
           "Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:", "-" * 62,
           "Init Stats:", "-" * 11, "    NetRun:  331158 us", "",
           "Finalize Stats:", "-" * 15, f"Graph 0 ({graph}):", "    NetRun:  256372 us",
           "    Backend (QNN (finalize) time): 256364 us", "",
           "De-Init Stats:", "-" * 14, "    NetRun:  15810 us", "    Backend (QNN (deinit) time): 15801 us", ""]
    for title, pick in (("Average", avg), ("Min", min), ("Max", max)):
        out += block(title, pick) + [""]
    total_s = sum(i["netrun_us"] for i in inferences) / 1e6
    out += ["Execute Stats (Overall):", "-" * 24, f"    NetRun IPS:  {len(inferences) / total_s:.4f} inf/sec", ""]
    return "\n".join(out)


CSV_HEADER = "Msg Timestamp, Message, Time, Unit of Measurement, Timing Source, Event Level, Event Identifier"


def write_csv(graph: str, inferences: list[dict], *, timestamps: bool = True, version: str = "v2.47.0.260601") -> str:
    """`qnn-profile-viewer --input_log X.log --output X.csv`: version/source lines, the header,
    then one EXECUTE group per inference (rows with or without the leading timestamp)."""
    buf = io.StringIO()
    buf.write(f"Log File Created: Tue Dec  1 14:02:11 2026\nQNN SDK Version: {version}\n"
              "Input Log File Location: qnn-profiling-data_0.log\n")
    buf.write(CSV_HEADER + "\n")
    w = csv.writer(buf, lineterminator="\n")
    ts = 80442123456
    for kind, value in (("INIT", 331158), ("FINALIZE", 256372)):
        w.writerow(([ts] if timestamps else []) + [kind, value, "US", "NETRUN", "ROOT", f"{kind.title()} time"])
    for inf in inferences:
        rows = [(inf["netrun_us"], "US", "NETRUN", "ROOT", f"Graph 0: {graph}"),
                (4, "COUNT", "BACKEND", "ROOT", "Number of HVX threads used"),
                (inf["accelerator_us"] + 90, "US", "BACKEND", "ROOT", "QNN accelerator (execute) time")]
        if inf["ops"]:
            rows.append((inf["cycles"], "CYCLES", "BACKEND", "ROOT", "Accelerator (execute) time (cycles)"))
            rows += [(c, "CYCLES", "BACKEND", "SUB-EVENT", ident) for ident, c in inf["ops"]]
        rows += [(inf["accelerator_us"], "US", "BACKEND", "ROOT", "Accelerator (execute) time"),
                 (inf["qnn_execute_us"], "US", "BACKEND", "ROOT", "QNN (execute) time")]
        for value, unit, src, level, ident in rows:
            ts += 7
            w.writerow(([ts] if timestamps else []) + ["EXECUTE", _fmt(value), unit, src, level, ident])
    w.writerow(([ts + 99] if timestamps else []) + ["DEINIT", 15810, "US", "NETRUN", "ROOT", "De-Init time"])
    return buf.getvalue()


def write_json(inferences: list[dict], *, version: str = "v2.49.0.260730134355") -> str:
    """`--reader libQnnJsonProfilingReader.so --standardized_json_output`: one BACKEND_EXECUTE
    message per inference, ops nested under the accelerator-cycles event."""
    messages = [{"method": "BACKEND_CREATE_FROM_BINARY", "profilingEvents": [
        {"identifier": "QNN (load binary) time", "unit": "MICROSEC", "type": "INIT", "value": 9009}]}]
    for inf in inferences:
        events = [{"identifier": "Number of HVX threads used", "unit": "COUNT", "type": "", "value": 4},
                  {"identifier": "RPC (execute) time", "unit": "MICROSEC", "type": "", "value": inf["qnn_execute_us"] - 30}]
        if inf["ops"]:
            events.append({"identifier": "Accelerator (execute) time (cycles)", "unit": "CYCLES", "type": "",
                           "value": inf["cycles"],
                           # Bare op names as in the facts note's sample ("fc:OpId_17"): the CSV's
                           # " (cycles)" suffix is not part of a JSON identifier.
                           "sub-events": [{"identifier": ident.removesuffix(" (cycles)"), "unit": "CYCLES",
                                           "type": "NODE", "value": c} for ident, c in inf["ops"]]})
        events += [{"identifier": "Accelerator (execute) time", "unit": "MICROSEC", "type": "", "value": inf["accelerator_us"]},
                   {"identifier": "QNN (execute) time", "unit": "MICROSEC", "type": "EXECUTE", "value": inf["qnn_execute_us"]}]
        messages.append({"method": "BACKEND_EXECUTE", "profilingEvents": events})
    messages.append({"method": "APP_EXECUTE_IPS", "profilingEvents": [
        {"identifier": "numInferences", "unit": "COUNT", "type": "EXECUTE", "value": len(inferences)},
        {"identifier": "duration", "unit": "MICROSEC", "type": "EXECUTE", "value": sum(i["netrun_us"] for i in inferences)}]})
    return json.dumps({"header": {"artifact_type": "QNN_PROFILE"},
                       "metadata": {"appName": "qnn-net-run", "appVersion": version, "backendVersion": version,
                                    "qnnProfileViewerVersion": version},
                       "messages": messages}, indent=2)


def strip_op_id(identifier: str) -> str:
    """Independent of the importer: the ONNX-side name QNN decorated."""
    return re.sub(r"(:OpId_\d+)? \(cycles\)$", "", identifier)

"""Readers of `qnn-profile-viewer` output: its text summary, its CSV and its standardized JSON.

Pure: text in, a `ViewerReport` out. Each reader keeps what the three formats share --
per-inference execute figures (one EXECUTE group, or one BACKEND_EXECUTE message, per
inference of `qnn-net-run --num_inferences N`), the Execute Stats (Average/Min/Max) blocks
of the text summary, and per-op HTP cycles under their QNN op names -- so one conversion
(`importers.qnn_profile_viewer`) turns any of them into a profile.

Formats, as QAIRT's tools write them (samples in QAIRT's public docs and tutorials):

* text (`qnn-profile-viewer --input_log X.log`): `Execute Stats (Average|Min|Max):` blocks,
  a `Graph N (name):` header, then `NetRun:  2952 us` and `Backend (<event>): <v> us|cycles|count`
  lines. Only these totals are read: no public sample shows how a detailed-level text summary
  lays out per-op lines, so any line naming an op (`...OpId_N`) is skipped rather than read by
  a guessed layout; per-op cycles come from the CSV or the JSON.
* CSV (`--output X.csv`): version/source lines, then the header `Msg Timestamp, Message, Time,
  Unit of Measurement, Timing Source, Event Level, Event Identifier`; rows may lack the
  leading timestamp. EXECUTE rows repeat once per inference; ops are CYCLES SUB-EVENTs.
* JSON (`--reader libQnnJsonProfilingReader.so --standardized_json_output`): `messages` of
  `method` BACKEND_EXECUTE (one per inference), whose `profilingEvents` nest the ops
  (`type: NODE`) under `Accelerator (execute) time (cycles)`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..core.errors import ProfileError, json_problem

Format = Literal["text", "csv", "json"]

# Event identifiers QNN's HTP backend and qnn-net-run use (same words in all three formats).
QNN_EXECUTE = "QNN (execute) time"  # backend-side graph execute, RPC included: the latency we report
ACCELERATOR_EXECUTE = "Accelerator (execute) time"
ACCELERATOR_CYCLES = "Accelerator (execute) time (cycles)"
NETRUN = "NetRun"  # qnn-net-run's own end-to-end graph execute time

_OP_IDENTIFIER = re.compile(r"^(?P<name>.*?)(?::OpId_(?P<id>\d+))?(?: \(cycles\))?$")
_GRAPH_IO = re.compile(r"^(?P<io>Input|Output) OpId_(?P<id>\d+)(?: \(cycles\))?$")
_IS_OP = re.compile(r"(?:^|[: ])OpId_\d+(?: \(cycles\))?$")
_VERSION = re.compile(r"v?(\d+\.\d+\.\d+(?:\.\d+)?(?:_\d+)?)")


def split_op_identifier(identifier: str) -> tuple[str, int | None]:
    """`/stem/conv1/Conv_token_13:OpId_1263 (cycles)` -> (`/stem/conv1/Conv_token_13`, 1263).

    The HTP graph's own I/O ops (`Input OpId_2 (cycles)`) become `Input` / `Output`.
    """
    text = identifier.strip()
    io_op = _GRAPH_IO.match(text)
    if io_op:
        return io_op.group("io"), int(io_op.group("id"))
    m = _OP_IDENTIFIER.match(text)
    assert m is not None  # the pattern matches any string
    return m.group("name"), int(m.group("id")) if m.group("id") else None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def checked_identifier(identifier: str, where: str) -> str:
    """An op identifier as a file gives it, refused when it holds a line break or another
    control character: QNN names ops after ONNX nodes, which have none, and such a name would
    break every table and report it reaches."""
    if _CONTROL.search(identifier):
        raise ProfileError(f"{where}: op identifier {identifier!r} holds a line break or control character.",
                           hint="Pass the file as QNN wrote it.")
    return identifier


def is_op_identifier(identifier: str) -> bool:
    return bool(_IS_OP.search(identifier.strip()))


@dataclass(frozen=True)
class ViewerOp:
    identifier: str  # as QNN wrote it, decorations included
    cycles: float

    @property
    def name(self) -> str:
        return split_op_identifier(self.identifier)[0]


@dataclass(frozen=True)
class ViewerExecution:
    """One graph execute (one inference), or one Execute Stats block of the text summary."""

    times_us: Mapping[str, float] = field(default_factory=dict)  # event identifier -> microseconds
    accelerator_cycles: float | None = None
    ops: tuple[ViewerOp, ...] = ()

    def time_us(self, event: str) -> float | None:
        return self.times_us.get(event)


@dataclass(frozen=True)
class ViewerReport:
    format: Format
    graph: str | None = None
    executions: tuple[ViewerExecution, ...] = ()  # one per inference (CSV, JSON)
    stats: Mapping[str, ViewerExecution] = field(default_factory=dict)  # text: average/min/max
    qnn_version: str | None = None  # when the file names it (JSON metadata, CSV header lines)
    skipped_op_lines: int = 0  # text: lines naming an op in the Average block, not read (no documented layout)

    @property
    def op_executions(self) -> list[ViewerExecution]:
        """The executions that carry per-op cycles (CSV, JSON; a text summary has none)."""
        return [e for e in self.executions if e.ops]


def _number(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ProfileError(f"{where}: {text.strip()!r} is not a number.") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ProfileError(f"{where}: {text.strip()!r} is not a finite non-negative number.")
    return value


def _version_in(text: str) -> str | None:
    m = _VERSION.search(text)
    return m.group(1) if m else None


# --- text summary -------------------------------------------------------------------------

_STATS_HEADER = re.compile(r"^Execute Stats \((?P<stat>[A-Za-z]+)\):$")
_GRAPH_HEADER = re.compile(r"^Graph \d+ \((?P<name>.+?)\):$")
_VALUE_LINE = re.compile(r"^(?P<key>.+?):\s+(?P<value>[0-9.eE+-]+)\s+(?P<unit>us|cycles|count|inf/sec)$")
_BACKEND = re.compile(r"^Backend \((?P<event>.+)\)$")


def parse_viewer_text(text: str, *, source: str = "text summary") -> ViewerReport:
    """The Execute Stats blocks of `qnn-profile-viewer --input_log X.log`'s stdout."""
    stats: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    graph = None
    skipped = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or set(line) <= {"-", "="}:
            continue
        header = _STATS_HEADER.match(line)
        if header:
            stat = header.group("stat").lower()
            current = None if stat == "overall" else stats.setdefault(stat, {"times": {}, "cycles": None})
            continue
        if line.endswith("Stats:") or line.endswith("Statistics:"):
            current = None  # Init/Finalize/De-Init: not an execute
            continue
        g = _GRAPH_HEADER.match(line)
        if g:
            graph = graph or g.group("name")
            continue
        if current is None:
            continue
        v = _VALUE_LINE.match(line)
        if not v:
            continue
        key, unit = v.group("key").strip(), v.group("unit")
        backend = _BACKEND.match(key)
        event = backend.group("event") if backend else key
        value = _number(v.group("value"), f"{source} line {n}")
        if is_op_identifier(event):
            skipped += current is stats.get("average")  # no documented layout: not read (module docstring)
        elif event == ACCELERATOR_CYCLES and unit == "cycles":
            current["cycles"] = value
        elif unit == "us":
            current["times"][event] = value
    if not stats:
        raise ProfileError(
            f"{source}: no `Execute Stats (Average):` block.",
            hint="Is this qnn-profile-viewer's output of a qnn-net-run profiling log?",
        )
    return ViewerReport(
        "text",
        graph=graph,
        stats={k: ViewerExecution(dict(s["times"]), s["cycles"]) for k, s in stats.items()},
        skipped_op_lines=skipped,
    )


# --- CSV ----------------------------------------------------------------------------------

_CSV_COLUMNS = ("Message", "Time", "Unit of Measurement", "Timing Source", "Event Level", "Event Identifier")
_NETRUN_GRAPH = re.compile(r"^Graph \d+: (?P<name>.+)$")


# The two CSVs with the header `Msg Timestamp, Message, Time, ...`, told apart by their rows:
# qnn-profile-viewer's second column is the method (EXECUTE, its ops EXECUTE SUB-EVENTs);
# onnxruntime-qnn's own profiling CSV puts the event kind there (BACKEND, INIT, EXECUTE, and one
# NODE row per HTP op).
_EP_KINDS = {"NODE", "BACKEND"}


def csv_flavour(text: str, rows: int = 400) -> Literal["viewer", "onnxruntime-qnn"] | None:
    """Which QNN profiling CSV `text` (its start) is, by its rows; None for neither."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines[:50]) if "Event Identifier" in line and "Message" in line), None)
    if start is None:
        return None
    try:
        header = [c.strip() for c in next(csv.reader([lines[start]]))]
        column = header.index("Message")
        offset = column - (1 if "Msg Timestamp" in header else 0)
        kinds = set()
        for row in csv.reader(lines[start + 1 : start + 1 + rows]):
            cells = [c.strip().upper() for c in row]
            # Rows with the timestamp, or without it (the tutorial's viewer CSV).
            kinds.update(cells[i] for i in {column, offset} if 0 <= i < len(cells))
    except (csv.Error, ValueError, StopIteration):
        return None
    if kinds & _EP_KINDS:
        return "onnxruntime-qnn"
    if "EXECUTE" in kinds:
        return "viewer"
    return None


def parse_viewer_csv(text: str, *, source: str = "CSV") -> ViewerReport:
    """`qnn-profile-viewer --output X.csv`: one ViewerExecution per inference's EXECUTE group."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "Event Identifier" in line and "Message" in line), None)
    if start is None:
        raise ProfileError(f"{source}: no `Msg Timestamp, Message, Time, ...` header line; not a qnn-profile-viewer CSV.")
    preamble = "\n".join(lines[:start])
    header = [c.strip() for c in next(csv.reader([lines[start]]))]
    missing = [c for c in _CSV_COLUMNS if c not in header]
    if missing:
        raise ProfileError(f"{source}: the header lacks column {missing[0]!r}.")
    with_ts = header
    without_ts = [c for c in header if c != "Msg Timestamp"]

    groups: list[dict[str, Any]] = []
    graph = None
    for offset, row in enumerate(csv.reader(io.StringIO("\n".join(lines[start + 1 :])))):
        n = start + 2 + offset
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        # The tutorial's rows omit the leading timestamp; QAIRT's own carry it.
        if len(cells) == len(with_ts):
            rec = dict(zip(with_ts, cells, strict=True))
        elif len(cells) == len(without_ts):
            rec = dict(zip(without_ts, cells, strict=True))
        else:
            raise ProfileError(f"{source} line {n}: {len(cells)} columns, the header has {len(with_ts)}.")
        if rec["Message"].upper() != "EXECUTE":
            continue
        ident, unit, level = rec["Event Identifier"], rec["Unit of Measurement"].upper(), rec["Event Level"].upper()
        value = _number(rec["Time"], f"{source} line {n}")
        if level == "ROOT":
            netrun = _NETRUN_GRAPH.match(ident) if rec["Timing Source"].upper() == "NETRUN" else None
            key = NETRUN if netrun else ident
            if netrun:
                graph = graph or netrun.group("name")
            # A ROOT event seen again starts the next inference's group.
            if not groups or key in groups[-1]["seen"]:
                groups.append({"seen": set(), "times": {}, "cycles": None, "ops": []})
            g = groups[-1]
            g["seen"].add(key)
            if unit == "US":
                g["times"][key] = value
            elif unit == "CYCLES" and ident == ACCELERATOR_CYCLES:
                g["cycles"] = value
        elif is_op_identifier(ident):
            if unit != "CYCLES":
                raise ProfileError(f"{source} line {n}: op {ident!r} is in {unit}, expected CYCLES.")
            if not groups:
                groups.append({"seen": set(), "times": {}, "cycles": None, "ops": []})
            groups[-1]["ops"].append(ViewerOp(checked_identifier(ident, f"{source} line {n}"), value))
    if not groups:
        raise ProfileError(
            f"{source}: no EXECUTE rows.", hint="Profile with qnn-net-run --profiling_level basic or detailed."
        )
    return ViewerReport(
        "csv",
        graph=graph,
        executions=tuple(ViewerExecution(g["times"], g["cycles"], tuple(g["ops"])) for g in groups),
        qnn_version=_version_in(preamble) if re.search(r"version", preamble, re.IGNORECASE) else None,
    )


# --- standardized JSON --------------------------------------------------------------------


def _walk_nodes(events: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    """The NODE events below `events`, depth first, without recursion (a hostile file nests deep)."""
    stack = [iter(events)]
    while stack:
        ev = next(stack[-1], None)
        if ev is None:
            stack.pop()
            continue
        if not isinstance(ev, Mapping):
            continue
        if str(ev.get("type", "")).upper() == "NODE":
            yield ev
        subs = ev.get("sub-events")
        if isinstance(subs, list) and subs:
            stack.append(iter(subs))


def parse_viewer_json(data: Any, *, source: str = "JSON") -> ViewerReport:
    """`--standardized_json_output`: one ViewerExecution per BACKEND_EXECUTE message."""
    if not isinstance(data, Mapping) or not isinstance(data.get("messages"), list):
        raise ProfileError(f"{source}: no \"messages\" list; not qnn-profile-viewer's standardized JSON.")
    executions = []
    for i, msg in enumerate(data["messages"]):
        if not isinstance(msg, Mapping) or msg.get("method") != "BACKEND_EXECUTE":
            continue
        times: dict[str, float] = {}
        cycles = None
        ops = []
        for ev in msg.get("profilingEvents") or ():
            if not isinstance(ev, Mapping):
                continue
            ident, unit = str(ev.get("identifier", "")), str(ev.get("unit", "")).upper()
            where = f"{source} message {i} event {ident!r}"
            if unit in ("MICROSEC", "US"):
                times[ident] = _number(str(ev.get("value")), where)
            elif unit == "CYCLES" and ident == ACCELERATOR_CYCLES:
                cycles = _number(str(ev.get("value")), where)
            for node in _walk_nodes(ev.get("sub-events") or ()):
                node_id = str(node.get("identifier", ""))
                if str(node.get("unit", "")).upper() != "CYCLES":
                    raise ProfileError(f"{source} message {i}: op {node_id!r} is in {node.get('unit')!r}, expected CYCLES.")
                checked_identifier(node_id, f"{source} message {i}")
                ops.append(ViewerOp(node_id, _number(str(node.get("value")), f"{source} message {i} op {node_id!r}")))
        executions.append(ViewerExecution(times, cycles, tuple(ops)))
    if not executions:
        raise ProfileError(
            f"{source}: no BACKEND_EXECUTE message.", hint="Profile with qnn-net-run --profiling_level basic or detailed."
        )
    meta = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    version = next((_version_in(str(meta[k])) for k in ("backendVersion", "appVersion") if meta.get(k)), None)
    return ViewerReport("json", executions=tuple(executions), qnn_version=version)


def parse_viewer_json_text(text: str, *, source: str = "JSON") -> ViewerReport:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ProfileError(f"{source}: not qnn-profile-viewer's JSON (nested too deeply).") from None
    except ValueError as exc:  # JSONDecodeError, or a number too long to convert
        raise ProfileError(f"{source}: not JSON ({json_problem(exc)}).") from None
    return parse_viewer_json(data, source=source)


def with_version(report: ViewerReport, version: str | None) -> ViewerReport:
    return report if version is None else replace(report, qnn_version=version)

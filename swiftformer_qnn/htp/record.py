"""`compile.json`: the one record of a compile, whoever made it, and what it is read from.

The export's compile stage, the `compile` command and every toolchain worker compile through
`htp.compile.compile_model`, which writes this record next to the context binary; the gate, the
report, the profiler and the cross-version comparison read it back through this model. Each
figure is stored once: the HTP op count and op types on the record, the graph's structure
(layout ops, float islands, ...) in its `graph_cost`, both from QNN's framework op trace, read
by the one reader here (`read_op_trace`). `FIGURES` lists the compile's figures for every
reader that compares or shows them (`htp.diff`, `gate structure`, the export summary).

What a compiled graph costs on the HTP: a phone runs exactly the ops QNN built, so their number
and kinds are the device-free measure of a graph: how many HTP ops, of which types, how many of
them only move data (layout ops: Reshape, Transpose), and how many float islands, where the
quantized graph drops to float and back (a Dequantize inside the graph, an op QNN has no
quantized kernel for, then a Quantize). The graph input's Quantize and the output's Dequantize
are the boundary of every quantized graph, not islands: QNN builds them from the bare
QuantizeLinear / DequantizeLinear node of the graph input or output, so their op trace names no
other node. Likewise a layout op before the graph's first compute op, or after its last, can only
convert the graph's input or output between the ONNX layout (NCHW) and the HTP's channel-last
one: the trace lists ops in execution order, so such an op reads nothing but the input (or feeds
nothing but the output). Those are counted apart (`boundary_layout_ops`) from layout ops inside
the graph.

Imports only pydantic and the standard library: toolchain environments import it too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.atomic import sha256_file, write_text_atomic
from ..core.errors import ProfileError
from .session import HtpTarget

COMPILE_RECORD = "compile.json"
COMPILE_FAILURE = "compile_failed.json"  # a version of a cross-version comparison that did not compile
RECORD_KIND = "swiftformer-qnn.compile"
FAILURE_KIND = "swiftformer-qnn.compile-failure"
CONTEXT_ONNX = "model.ctx.onnx"  # the EP-context wrapper (one com.microsoft:EPContext node)
HTP_OUTPUTS = "htp_outputs.npz"  # a worker's one emulator run on the session that compiled: every output
CONTEXT_BINARY = "model.ctx_qnn.bin"  # the QNN context binary it names; onnxruntime derives this name
OP_TRACE = "qnn_op_trace.json"  # QNN's own fixed name for the framework op trace
# Where every node of a successful compile runs, and why that is certain: the session that
# compiles is created with CPU fallback disabled, so a node the HTP rejects fails the compile.
ON_THE_HTP = "compiled with CPU fallback disabled: every node is on the HTP"



# --------------------------------------------------------------------------- the op trace


@dataclass(frozen=True)
class TracedOp:
    """One HTP op of QNN's framework op trace, and the ONNX nodes it was built from."""

    name: str  # QNN's name of the op (`dst_name`), as profiles name it
    qnn_type: str | None  # `dst_qnn_op_type`; None where the trace omits it
    sources: tuple[str, ...]  # the ONNX ops (sources of type OP) it came from


def parse_op_trace(op_trace: Mapping[str, Any]) -> list[TracedOp]:
    """The HTP ops of every subgraph of a `qnn_op_trace.json`, in order. A file of another
    shape raises ValueError (`read_op_trace` names the file)."""
    try:
        return [
            TracedOp(str(m["dst_name"]), m.get("dst_qnn_op_type"),
                     tuple(str(s["name"]) for s in m.get("sources", []) if s.get("type") == "OP"))
            for g in op_trace["subgraph_traces"] for m in g["op_mappings"]
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a QNN framework op trace ({type(exc).__name__}: {exc})") from None


def read_op_trace(path: Path) -> list[TracedOp]:
    """`parse_op_trace` of a file, or a ProfileError naming the file and what is wrong with it."""
    try:
        return parse_op_trace(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such QNN op trace file.") from None
    except RecursionError:
        raise ProfileError(f"{path}: not a QNN framework op trace (nested too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProfileError(f"{path}: unreadable QNN op trace ({str(exc)[:200]}).") from None


# --------------------------------------------------------------------------- graph cost

LAYOUT_OP_TYPES = ("Reshape", "Transpose")


class GraphCost(BaseModel):
    """The HTP graph's structure, as QNN built it (its op count and types are the record's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout_ops: int = Field(ge=0)  # Reshape + Transpose, wherever they are
    boundary_layout_ops: int = Field(ge=0)  # of those, the ones that only convert the graph's input or output
    float_islands: int = Field(ge=0)  # Dequantize ops inside the graph (each opens a float island)
    boundary_conversions: int = Field(ge=0)  # the graph input's Quantize and output's Dequantize
    # QNN Convert ops: requantizations from one encoding to another inside the graph. None in
    # records made before it was counted.
    convert_ops: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _stored_once(cls, data: Any) -> Any:
        """Records of schema 1 repeated the op count, op types and binary size here: they are
        the record's own fields, so the copies are dropped."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in ("htp_op_count", "op_types", "context_binary_bytes")}
        return data


def op_types(ops: Sequence[TracedOp]) -> dict[str, int]:
    """QNN op type -> how many ops of it."""
    return dict(sorted(Counter(op.qnn_type or "?" for op in ops).items()))


def _is_lone_conversion(op: TracedOp, qnn_type: str) -> bool:
    """A Quantize/Dequantize QNN made from one bare QuantizeLinear/DequantizeLinear node, not
    from the decomposition of a compute node (whose trace names that node too)."""
    return (op.qnn_type == qnn_type and len(op.sources) == 1
            and "quantizelinear" in op.sources[0].lower())  # also DequantizeLinear


def graph_cost(ops: Sequence[TracedOp], *, graph_inputs: int = 1, graph_outputs: int = 1) -> GraphCost:
    """Layout ops and float islands of the HTP ops of an op trace.

    The first `graph_inputs` lone Quantize ops and the last `graph_outputs` lone Dequantize ops
    (the trace lists ops in execution order) are the graph's boundary; every other Dequantize
    opens a float island."""
    inputs = [op for op in ops if _is_lone_conversion(op, "Quantize")][:graph_inputs]
    outputs = [op for op in ops if _is_lone_conversion(op, "Dequantize")][-graph_outputs:] if graph_outputs else []
    inner_dequantize = sum(op.qnn_type == "Dequantize" for op in ops) - len(outputs)
    boundary = inputs + outputs
    # Compute ops: everything but layout ops and the boundary conversions.
    compute = [i for i, op in enumerate(ops)
               if op.qnn_type not in LAYOUT_OP_TYPES and not any(op is b for b in boundary)]
    layout_at = [i for i, op in enumerate(ops) if op.qnn_type in LAYOUT_OP_TYPES]
    boundary_layout = [i for i in layout_at if not compute or i < compute[0] or i > compute[-1]]
    return GraphCost(
        layout_ops=len(layout_at),
        boundary_layout_ops=len(boundary_layout),
        float_islands=inner_dequantize,
        boundary_conversions=len(boundary),
        convert_ops=sum(op.qnn_type == "Convert" for op in ops),
    )


def traced_figures(trace: Path) -> dict[str, Any]:
    """The record's fields from QNN's op trace: the trace's name, HTP ops by type, graph cost."""
    ops = read_op_trace(trace)
    return {"op_trace": Path(trace).name, "htp_op_count": len(ops), "htp_op_types": op_types(ops),
            "graph_cost": graph_cost(ops)}


# --------------------------------------------------------------------------- the record


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompiledModel(_Model):
    """What was compiled, where the caller knows it (`compile MODEL.onnx` knows only the file)."""

    variant: str | None = None
    precision: str | None = None
    input_shape: list[int] | None = None


class IoTensor(_Model):
    """One input or output of a graph compiled with native I/O (`export --io uint8-nhwc`, see
    `pipeline.native_io`): the quantized tensor itself, and how to make it from, or turn it
    into, the float (NCHW) tensor of the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Literal["input", "output"]
    dtype: Literal["uint8"] = "uint8"
    shape: list[int]  # as the binary takes or gives it (NHWC for 4-D)
    nhwc: bool  # 4-D: channel-last in the binary, channel-first in the float model
    scale: float
    zero_point: int

    def from_float(self, x):
        """The float NCHW tensor (numpy) as this input: x_q = clip(round(x / scale) + zero_point, 0, 255)."""
        import numpy as np

        q = np.clip(np.round(x / np.float32(self.scale)) + self.zero_point, 0, 255).astype(np.uint8)
        return q.transpose(0, 2, 3, 1) if self.nhwc else q

    def to_float(self, q):
        """This output as the float NCHW tensor (numpy): x = (x_q - zero_point) * scale."""
        import numpy as np

        x = (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)
        return x.transpose(0, 3, 1, 2) if self.nhwc else x


class CompileSpec(_Model):
    """Everything one compile is given (`htp.compile.compile_model`): the one list of a compile's
    arguments. The compile stage, the `compile` command, the mixed search's candidates, the
    estimator's compile and each version of a sweep build it, and a worker process reads it as
    JSON, so an argument added here reaches every compile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path  # the (guarded) QDQ, or with fp16 float, ONNX
    out_dir: Path
    target: HtpTarget
    soc: str | None = None  # the SoC's name for the record (None: from target.soc_model)
    subject: CompiledModel = Field(default_factory=CompiledModel)  # what was compiled, as the record names it
    bn_guard: dict | None = None  # what the BN guard found and did to `model` before (the record says it)
    io: list[IoTensor] | None = None  # native I/O tensors the graph was rewritten to (the record says them)
    profile_csv: Path | None = None  # profile the compile itself (the estimator's outputs, `htp.estimate`)
    profiling_level: str = "detailed"


class CompileJob(_Model):
    """What a parent asks a worker process to compile (`python -m swiftformer_qnn.htp.worker
    compile --request`): the JSON both sides read through this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: CompileSpec  # its out_dir set per version by a sweep
    inputs_npz: Path | None = None  # with inputs: one emulator run on the compiling session
    spawned_at: float | None = None  # the parent's clock when it started the worker (start-up time)


class EmulateJob(_Model):
    """What a parent asks a worker process to run on the HTP emulator (`python -m
    swiftformer_qnn.htp.worker emulate --request -`, `htp.emulate`): one session of the context
    binary, the samples of `inputs_npz` one after another."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context_model: Path  # the EP-context ONNX, its .bin beside it
    target: HtpTarget
    inputs_npz: Path  # arrays "0", "1", ...: each one sample as the binary takes it
    outputs_npz: Path  # written by the worker: per sample i and output k, array "i/k"
    extra_outputs: list[str] = Field(default_factory=list)  # wanted after the first output
    cpus: list[int] | None = None  # the cores it runs on (`emulate.core_shares`); None: every core
    spawned_at: float | None = None  # the parent's clock when it started the worker (start-up time)


class CompileRecord(_Model):
    """One compile of one ONNX model to a QNN context binary with one QNN version."""

    kind: Literal["swiftformer-qnn.compile"] = RECORD_KIND
    schema_version: int = 2  # 2: `graph_cost` no longer repeats the op count, types and binary size
    # The toolchain: the QNN SDK the onnxruntime-qnn wheel bundles ("2.51.0", parsed by the
    # wheel's build) and the version the context binary itself names, as written there.
    qnn_version: str
    ep_sdk_version: str | None  # e.g. "v2.51.0.260929181845"; None if the EPContext node omits it
    onnxruntime: str
    onnxruntime_qnn: str
    # The target and the input.
    soc: str | None = None  # the SoC name, where the caller knows it (sm8550)
    soc_model: int
    htp_arch: int
    fp16: bool
    # QNN's graph finalization optimization level the compile asked for (`HtpTarget`); None in
    # records written before it was set (QNN's default then: 2).
    graph_optimization_mode: int | None = None
    model: CompiledModel = Field(default_factory=CompiledModel)
    model_sha256: str  # the ONNX that was compiled
    # Native I/O (`export --io uint8-nhwc`): the binary's quantized inputs and outputs; None: float NCHW.
    io: list[IoTensor] | None = None
    # What it produced.
    compile_s: float = Field(ge=0)  # host wall time of the compile (session creation)
    context_onnx: str = CONTEXT_ONNX
    context_binary: str = CONTEXT_BINARY
    context_binary_bytes: int = Field(ge=0)
    context_binary_sha256: str
    cpu_fallback_disabled: Literal[True] = True  # see ON_THE_HTP: success means every node is on the HTP
    # From QNN's framework op trace; None where the QNN release writes no trace (2.47).
    op_trace: str | None = None
    htp_op_count: int | None = Field(default=None, ge=0)
    htp_op_types: dict[str, int] | None = None  # QNN op type -> count
    graph_cost: GraphCost | None = None  # layout ops, float islands (from the same trace)
    # The BatchNorm-overflow guard run before compiling (htp.bn_guard): BNs it found the EP
    # would corrupt and what it did. None in cross-version records: there the guard runs once before
    # the workers (cross_version.compile_versions_into) and says what it rewrote on stderr.
    bn_guard: dict[str, Any] | None = None

    @property
    def placement(self) -> str:
        return ON_THE_HTP


class CompileFailure(_Model):
    """A QNN version that did not compile (a cross-version comparison reports it; the others finish)."""

    kind: Literal["swiftformer-qnn.compile-failure"] = FAILURE_KIND
    qnn_version: str
    onnxruntime_qnn: str
    onnxruntime: str
    status: Literal["failed", "crashed"]
    error: str
    model: CompiledModel = Field(default_factory=CompiledModel)


def write_compile_record(directory: Path, record: CompileRecord) -> Path:
    return write_text_atomic(Path(directory) / COMPILE_RECORD, record.model_dump_json(indent=2) + "\n")


def _read(path: Path, model: type[_Model], what: str):
    try:
        return model.model_validate_json(Path(path).read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such {what}.") from None
    except OSError as exc:
        raise ProfileError(f"{path}: unreadable {what} ({exc.strerror or exc}).") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise ProfileError(
            f"{path}: not a valid {what} ({where}: {first['msg']}).",
            hint="Recompile with this swiftformer-qnn (export, compile, or export --qnn).",
        ) from None


def read_compile_record(path: Path) -> CompileRecord:
    """A `compile.json`, or a ProfileError naming the file and the first thing wrong with it."""
    return _read(path, CompileRecord, "compile record")


def read_compile_failure(path: Path) -> CompileFailure:
    return _read(path, CompileFailure, "compile failure record")


def traced_op_names(directory: Path, record: CompileRecord) -> list[str] | None:
    """The HTP op names of the op trace `record` names (in `directory`), in order; None where
    the QNN release wrote no trace. The record counts and types these ops; the names stay in
    QNN's file rather than being copied into every record."""
    if record.op_trace is None:
        return None
    return [op.name for op in read_op_trace(Path(directory) / record.op_trace)]


def disagreements(directory: Path, record: CompileRecord) -> list[str]:
    """What the files beside a `compile.json` say against it: the context binary (size and
    SHA-256) and the op trace (HTP op count and types), where they are there. A record is
    a plain JSON anyone can edit; the binary and QNN's own trace are what was compiled. A
    committed structural baseline holds the record alone: nothing to check it against."""
    directory = Path(directory)
    found: list[str] = []
    binary = directory / record.context_binary
    if binary.is_file():
        if binary.stat().st_size != record.context_binary_bytes or sha256_file(binary) != record.context_binary_sha256:
            found.append(f"{record.context_binary} is not the binary it records (size or SHA-256)")
    trace = directory / record.op_trace if record.op_trace else None
    if trace is not None and trace.is_file() and record.htp_op_count is not None:
        try:
            ops = read_op_trace(trace)
        except ProfileError:
            found.append(f"{record.op_trace} is unreadable")
        else:
            if len(ops) != record.htp_op_count or (record.htp_op_types is not None
                                                   and op_types(ops) != record.htp_op_types):
                found.append(f"{record.op_trace} traces {len(ops)} HTP ops where it records {record.htp_op_count}"
                             + ("" if len(ops) != record.htp_op_count else " (other op types)"))
    return found


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Figure:
    """One figure of a compile, for every reader that compares or shows compiles."""

    name: str  # the metric's name in gates (`htp_op_count`)
    label: str  # in tables (`HTP ops`)
    unit: str  # in a gate's sentence (`ops`)
    value: Callable[[CompileRecord], int | None]  # None: that compile does not have it (no op trace)
    # How `gate structure` limits its growth: a `StructureRules` field (a relative limit), 0.0
    # (it should only ever go down: any growth fails), or None (shown, not gated).
    gate: str | float | None = None
    # Not gated where either compile lacks it (a graph cost measured after that compile was
    # recorded); a figure that is not optional is reported missing instead.
    optional: bool = False


def _cost(field: str) -> Callable[[CompileRecord], int | None]:
    return lambda r: None if r.graph_cost is None else getattr(r.graph_cost, field)


FIGURES: tuple[Figure, ...] = (
    Figure("htp_op_count", "HTP ops", "ops", lambda r: r.htp_op_count, "max_op_count_growth"),
    Figure("layout_ops", "layout ops", "Reshape/Transpose ops", _cost("layout_ops"), 0.0, optional=True),
    Figure("boundary_layout_ops", "layout ops at input/output", "ops", _cost("boundary_layout_ops")),
    Figure("float_islands", "float islands", "float islands", _cost("float_islands"), 0.0, optional=True),
    Figure("boundary_conversions", "boundary Quantize/Dequantize", "ops", _cost("boundary_conversions")),
    Figure("convert_ops", "Convert ops", "Convert ops", _cost("convert_ops"), 0.0, optional=True),
    Figure("context_binary_bytes", "context binary bytes", "bytes", lambda r: r.context_binary_bytes,
           "max_context_growth"),
)

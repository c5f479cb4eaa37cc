"""`compile.json`: the one record of a compile, whoever made it.

The export's compile stage, the `compile` command and every toolchain worker compile through
`qnn.compile_model`, which writes this record next to the context binary; the gate, the
report, the profiler and the cross-version comparison read it back through this model.
Imports only pydantic, the standard library and `graph_cost` (pure): toolchain environments
import it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import ProfileError
from .graph_cost import GraphCost

COMPILE_RECORD = "compile.json"
COMPILE_FAILURE = "compile_failed.json"  # a version of a cross-version comparison that did not compile
RECORD_KIND = "swiftformer-qnn.compile"
FAILURE_KIND = "swiftformer-qnn.compile-failure"
CONTEXT_ONNX = "model.ctx.onnx"  # the EP-context wrapper (one com.microsoft:EPContext node)
CONTEXT_BINARY = "model.ctx_qnn.bin"  # the QNN context binary it names; onnxruntime derives this name
OP_TRACE = "qnn_op_trace.json"  # QNN's own fixed name for the framework op trace
# Where every node of a successful compile runs, and why that is certain: the session that
# compiles is created with CPU fallback disabled, so a node the HTP rejects fails the compile.
ON_THE_HTP = "compiled with CPU fallback disabled: every node is on the HTP"


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


class CompileJob(_Model):
    """What a cross-version parent asks a toolchain's worker to compile (`qnn_worker compile
    --request`): the JSON both sides read through this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path  # the (guarded) QDQ or float ONNX
    soc_model: int
    htp_arch: int
    fp16: bool = False
    soc: str | None = None
    subject: CompiledModel = Field(default_factory=CompiledModel)  # what was compiled, as the record names it
    inputs_npz: Path | None = None  # with inputs: one emulator run on the compiling session
    out_dir: Path | None = None  # set per version by the parent
    spawned_at: float | None = None  # the parent's clock when it started the worker (start-up time)


class CompileRecord(_Model):
    """One compile of one ONNX model to a QNN context binary with one QNN version."""

    kind: Literal["swiftformer-qnn.compile"] = RECORD_KIND
    schema_version: int = 1
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
    graph_cost: GraphCost | None = None  # layout ops, float islands (graph_cost.py, from the same trace)
    # The BatchNorm-overflow guard run before compiling (pipeline.bn_guard): BNs it found the EP
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
    from ..core.atomic import write_text_atomic

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
    import json

    from .graph_cost import trace_ops

    if record.op_trace is None:
        return None
    path = Path(directory) / record.op_trace
    try:
        ops = trace_ops(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: unreadable op trace ({exc}).") from None
    return [str(op.get("dst_name", "?")) for op in ops]


def disagreements(directory: Path, record: CompileRecord) -> list[str]:
    """What the files beside a `compile.json` say against it: the context binary (size and
    SHA-256) and the op trace (HTP op count and types), where they are there. A record is
    a plain JSON anyone can edit; the binary and QNN's own trace are what was compiled. A
    committed structural baseline holds the record alone: nothing to check it against."""
    import hashlib
    import json
    from collections import Counter

    from .graph_cost import trace_ops

    directory = Path(directory)
    found: list[str] = []
    binary = directory / record.context_binary
    if binary.is_file():
        h = hashlib.sha256()
        with binary.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if binary.stat().st_size != record.context_binary_bytes or h.hexdigest() != record.context_binary_sha256:
            found.append(f"{record.context_binary} is not the binary it records (size or SHA-256)")
    trace = directory / record.op_trace if record.op_trace else None
    if trace is not None and trace.is_file() and record.htp_op_count is not None:
        try:
            ops = trace_ops(json.loads(trace.read_text()))
        except (OSError, ValueError, AttributeError, RecursionError):
            found.append(f"{record.op_trace} is unreadable")
        else:
            types = dict(Counter(str(m.get("dst_qnn_op_type", "?")) for m in ops))
            if len(ops) != record.htp_op_count or (record.htp_op_types is not None and types != record.htp_op_types):
                found.append(f"{record.op_trace} traces {len(ops)} HTP ops where it records {record.htp_op_count}"
                             + ("" if len(ops) != record.htp_op_count else " (other op types)"))
    return found

"""A local stand-in for Qualcomm AI Hub's REST API, for tests of the real `qai_hub` client.

The client (qai-hub 0.56) talks protobuf over HTTP to `<api_url>/api/v1/...` and moves
files through presigned URLs. This server answers the endpoints one compile + profile
needs, with the client's own protobuf messages (`qai_hub.public_api_pb2`), so everything
above the wire (upload, jobs, waiting, downloads, `_profile_pb_to_python_dict`) is the
client's own code:

    GET   /api/v1/devices/                        DeviceList (name / attributes / select filters)
    POST  /api/v1/models/                         Model -> CreateUpdateResponse
    GET   /api/v1/models/<id>/multipart_upload/   FileUploadResponse (presigned part URLs)
    PUT   /s3/upload/<model>/<part>?sig=...       the file part; answers with an ETag
    POST  /api/v1/models/<id>/multipart_upload/   FileMultipartUploadComplete -> CreateUpdateResponse
    GET   /api/v1/models/<id>/                    Model (a compiled model carries QAIRT metadata)
    GET   /api/v1/models/<id>/download/           FileDownloadResponse (presigned URL)
    GET   /s3/download/<model>?sig=...            the file
    POST  /api/v1/jobs/                           Job(compile_job | inference_job) -> CreateUpdateResponse
    GET   /api/v1/jobs/<id>/                      Job, its state advancing one step per poll
    GET   /api/v1/jobs/<id>/result/               JobResult with the ProfileDetail of a profile job
    GET   /api/v1/users/auth/user/                User

Every /api/ request must carry `Authorization: token <token>` (else 401, as AI Hub does);
the presigned /s3/ URLs carry a signature instead, never the token.

Profiles are built from the ONNX file that was actually uploaded: one layer per ONNX node
that survives QNN conversion (Q/DQ pairs fold into quantized tensors, except the float
graph input's Quantize and output's Dequantize), named the way QNN names ops converted
from ONNX (`/stage2/block9_swiftformer_encoder/attention/MatMul` becomes
`_stage2_block9_swiftformer_encoder_attention_MatMul`), typed with QNN op names, timed by
a simple MAC/element cost model in whole microseconds (AI Hub reports integers). The
times are made up; the names and structure are the real graph's.

That default names every op after its own node, one op per node: the naming the production
code assumes, so it cannot show what attribution does when QNN does otherwise. `fused=True`
builds the layers the way QNN's own op trace of a SwiftFormer shows it does (see
`fuse_like_qnn`): activations squashed into the Conv before them, ReduceL2 decomposed into
several ops that keep only a name prefix, and layout transposes inserted at 4-D graph inputs
and outputs, which come from no ONNX node at all.
"""

from __future__ import annotations

import collections
import configparser
import hashlib
import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import qai_hub.public_api_pb2 as pb
from packaging.version import Version

PROTOBUF = "application/x-protobuf"

RUNNING = {
    "compile": [pb.JobState.JOB_STATE_CREATED, pb.JobState.JOB_STATE_OPTIMIZING_MODEL],
    "inference": [
        pb.JobState.JOB_STATE_CREATED,
        pb.JobState.JOB_STATE_PROVISIONING_DEVICE,
        pb.JobState.JOB_STATE_MEASURING_PERFORMANCE,
    ],
}

_ATTRS_COMMON = ("format:phone", "os:android", "vendor:samsung", "framework:qnn", "framework:onnx", "framework:tflite",
                 "htp-supports-fp16")
_S23 = ("chipset:qualcomm-snapdragon-8gen2", "soc-model:43", "hexagon:v73")
_ELITE = ("soc-model:69", "hexagon:v79")
DEFAULT_DEVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Samsung Galaxy S23 Ultra", "13", (*_S23, *_ATTRS_COMMON)),
    ("Samsung Galaxy S23 Ultra", "14", (*_S23, *_ATTRS_COMMON)),
    ("Samsung Galaxy S23", "14", (*_S23, *_ATTRS_COMMON)),
    ("Samsung Galaxy S24 Ultra", "14", ("chipset:qualcomm-snapdragon-8gen3", "soc-model:57", "hexagon:v75", *_ATTRS_COMMON)),
    ("Samsung Galaxy S22 Ultra 5G", "13", ("chipset:qualcomm-snapdragon-8gen1", "soc-model:36", "hexagon:v69", *_ATTRS_COMMON)),
    # The S25 Ultra's chipset is the "for Galaxy" part; `qualcomm-snapdragon-8-elite` is the QRD.
    ("Samsung Galaxy S25 Ultra", "15", ("chipset:qualcomm-snapdragon-8-elite-for-galaxy", *_ELITE, *_ATTRS_COMMON)),
    ("Snapdragon 8 Elite QRD", "15", ("chipset:qualcomm-snapdragon-8-elite", *_ELITE, "format:phone", "os:android",
                                      "framework:qnn")),
)

# QAIRT versions offered (`get_frameworks()`): (api_version, full_version, tags). AI Hub offers a
# few at a time and moves "default"/"latest" (the zoo's default went 2.33 -> 2.36 -> 2.37 -> 2.42).
DEFAULT_FRAMEWORKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("2.31", "2.31.0.250130151446_114721", ()),
    ("2.33", "2.33.0.250327124043_117917", ()),
    ("2.37", "2.37.1.250807093845_124904", ("default",)),
    ("2.42", "2.42.0.251225135753_193295", ("latest",)),
)
S3_BUCKET = "aihub-standin"


# --- what a compiled QNN context binary's per-layer profile looks like ------------------

_QNN_TYPES = {
    "Gemm": "FullyConnected",
    "MatMul": "MatMul",
    "Add": "ElementWiseAdd",
    "Mul": "ElementWiseMultiply",
    "Div": "ElementWiseDivide",
    "Sub": "ElementWiseSubtract",
    "Gelu": "Gelu",
    "Relu": "Relu",
    "Reshape": "Reshape",
    "Transpose": "Transpose",
    "LpNormalization": "L2Norm",
    "ReduceL2": "ReduceL2",
    "Expand": "Tile",
    "ReduceSum": "ReduceSum",
    "ReduceMean": "ReduceMean",
    "BatchNormalization": "Batchnorm",
    "Softmax": "Softmax",
    "QuantizeLinear": "Quantize",
    "DequantizeLinear": "Dequantize",
}


def qnn_op_name(onnx_name: str) -> str:
    """QNN's converter keeps ONNX node names but only [A-Za-z0-9_]."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", onnx_name)
    return f"_{name}" if name[:1].isdigit() else name


@dataclass(frozen=True)
class Layer:
    name: str
    type: str
    time_us: float  # the cost model's time; the payload carries cycles and/or whole microseconds
    onnx_node: str
    # The ONNX nodes this op came from (the test's ground truth); () for ops QNN inserts.
    sources: tuple[str, ...] = ()


def layers_from_onnx(onnx_bytes: bytes, *, fused: bool = False, quirks: tuple[str, ...] = ()) -> list[Layer]:
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(onnx_bytes))
    g = model.graph
    shapes: dict[str, list[int]] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {t.name: list(t.dims) for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    graph_inputs = {i.name for i in g.input} - set(inits)
    graph_outputs = {o.name for o in g.output}

    def numel(name: str) -> int:
        n = 1
        for d in shapes.get(name, []) or inits.get(name, []):
            n *= max(int(d), 1)
        return n

    def weight_dims(name: str) -> list[int]:
        # A weight reaches a QDQ node through DequantizeLinear(initializer).
        node = producers.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            name = node.input[0]
        return inits.get(name) or shapes.get(name, [])

    layers = []
    for i, node in enumerate(g.node):
        op = node.op_type
        if op == "QuantizeLinear" and node.input[0] not in graph_inputs:
            continue
        if op == "DequantizeLinear" and node.output[0] not in graph_outputs:
            continue
        out = numel(node.output[0])
        if op == "Conv":
            w = weight_dims(node.input[1])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            qnn_type = "DepthWiseConv2d" if group > 1 and w and group == w[0] else "Conv2d"
            macs = out * (w[1] * w[2] * w[3] if len(w) == 4 else 1)
            cost = 0.6 + macs / 6.4e5
        elif op in ("Gemm", "MatMul"):
            w = weight_dims(node.input[1])
            k = w[0] if w else 1
            if op == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute) and w:
                k = w[1]
            qnn_type = _QNN_TYPES[op]
            cost = 0.6 + out * k / 6.4e5
        elif op in ("Reshape", "Transpose", "Expand"):
            qnn_type = _QNN_TYPES[op]
            cost = 0.2 + out / 8.0e5
        else:
            qnn_type = _QNN_TYPES.get(op, op)
            cost = 0.4 + out / 3.0e5
        name = node.name or f"{op}_{i}"
        layers.append(Layer(qnn_op_name(name), qnn_type, cost, name, (name,)))
    layers = fuse_like_qnn(layers, g) if fused else layers
    return converter_quirks(layers, g, quirks) if quirks else layers


# What public AI Hub payloads show besides one op per (fused) node; see converter_quirks.
QUIRKS = ("boundary_converts", "suffixes", "duplicates", "empty_names")


def converter_quirks(layers: list[Layer], graph, quirks: tuple[str, ...]) -> list[Layer]:
    """Layers QNN's converter and runtime add or rename, as public AI Hub profiles show them:

    - `boundary_converts`: data-type converts at the graph boundary, named like the public
      ResNet-50 profile's `QNN_DATATYPE_FLOAT_32_converted_input_QNN_DATATYPE_FLOAT_16`;
    - `suffixes`: layers the converter inserts around a node, named after it with a suffix
      (`<node>_pre_reshape`, `<node>_post_reshape` around fully connected layers);
    - `duplicates`: one layer reported twice under the same name and figures (QNN names each op
      once in a graph, so this is the same op repeated: the import counts it once);
    - `empty_names`: a layer with no name.
    """
    out = list(layers)
    if "suffixes" in quirks:
        with_reshapes = []
        for layer in out:
            if layer.type == "FullyConnected":
                with_reshapes.append(Layer(f"{layer.name}_pre_reshape", "Reshape", 0.3, layer.onnx_node, layer.sources))
                with_reshapes.append(layer)
                with_reshapes.append(Layer(f"{layer.name}_post_reshape", "Reshape", 0.3, layer.onnx_node, layer.sources))
            else:
                with_reshapes.append(layer)
        out = with_reshapes
    if "duplicates" in quirks:
        twice = []
        for i, layer in enumerate(out):
            if layer.type in ("Conv2d", "MatMul") and i % 7 == 0:
                twice += [layer, layer]
            else:
                twice.append(layer)
        out = twice
    if "empty_names" in quirks:
        out.insert(len(out) // 2, Layer("", "Reshape", 0.2, "", ()))
    if "boundary_converts" in quirks:
        first_in = next(i.name for i in graph.input if i.name not in {t.name for t in graph.initializer})
        last_out = graph.output[0].name
        out.insert(0, Layer(f"QNN_DATATYPE_FLOAT_32_converted_{qnn_op_name(first_in)}_QNN_DATATYPE_FLOAT_16",
                            "Convert", 1.5, "", ()))
        out.append(Layer(f"{qnn_op_name(last_out)}_converted_QNN_DATATYPE_FLOAT_32", "Convert", 0.2, "", ()))
    return out


def rename_nodes_like_old_exports(src: Path, dst: Path, every: int = 5) -> list[str]:
    """A copy of the model where some compute nodes carry the names older exporters give
    (a bare number such as `23`, or a tensor-like `input.1`); returns the new names. QNN's
    converter turns them into `_23` and `input_1`, which name no module path."""
    import onnx

    model = onnx.load(str(src))
    renamed = []
    compute = [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for k, node in enumerate(compute[::every]):
        node.name = str(100 + k) if k % 2 == 0 else f"onnx_op.{k}"
        renamed.append(node.name)
    onnx.save(model, str(dst))
    return renamed


# Activations QNN's converter squashes into the op that produces their input.
_SQUASHED = ("Relu", "Clip")
# ReduceL2 has no HTP op: QNN builds it from these, named `<node><QNN type>` (or `<node>_<what>`).
_REDUCE_L2 = (("_dequant_in", "Dequantize"), ("ElementWiseMultiply", "ElementWiseMultiply"),
              ("ReduceSum", "ReduceSum"), ("ElementWiseSquareRoot", "ElementWiseSquareRoot"),
              ("_quant_out", "Quantize"))


def fuse_like_qnn(layers: list[Layer], graph) -> list[Layer]:
    """One op per node turned into what QNN builds, as its framework op trace of the compiled
    SwiftFormer encoder block shows (QNN 2.51, `qnn_op_trace.json`):

    - a Relu/Clip right after a Conv (through a Q/DQ pair, in a QDQ graph) whose output nothing
      else reads is squashed into it: one op named after the Conv, taking both nodes' time
      (the float graph's stem has two; ONNX Runtime's quantizer already folded them into the
      quantization ranges of a QDQ graph);
    - a ReduceL2 becomes five ops named after the node with a suffix
      (`.../attention/ReduceL2_2ElementWiseMultiply`): names that match no uploaded node;
    - a 4-D graph input or output gets a layout transpose (NCHW <-> NHWC) from no ONNX node,
      named `Transpose_token_<n>`: nothing in its name or in the graph says which block it
      serves.
    """
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def through_qdq(tensor: str):
        """The node that computed `tensor`, looking through a QuantizeLinear -> DequantizeLinear pair."""
        node = producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and len(consumers.get(q.output[0], [])) == 1:
                node = producer.get(q.input[0])
        return node

    by_node = {layer.onnx_node: i for i, layer in enumerate(layers)}
    out = list(layers)
    dropped: set[int] = set()
    for n in graph.node:
        if n.op_type not in _SQUASHED or n.name not in by_node:
            continue
        conv = through_qdq(n.input[0])
        if conv is None or conv.op_type != "Conv" or conv.name not in by_node:
            continue
        if len(consumers.get(conv.output[0], [])) != 1:
            continue
        ci, ai = by_node[conv.name], by_node[n.name]
        c, a = out[ci], out[ai]
        out[ci] = Layer(c.name, c.type, c.time_us + a.time_us, c.onnx_node, c.sources + a.sources)
        dropped.add(ai)

    token = iter(range(46, 10_000))
    result: list[Layer] = []
    inputs = {vi.name: vi for vi in graph.input}
    outputs = {vi.name: vi for vi in graph.output}

    def rank(vi) -> int:
        return len(vi.type.tensor_type.shape.dim)

    for i, layer in enumerate(out):
        if i in dropped:
            continue
        node = next((n for n in graph.node if n.name == layer.onnx_node), None)
        reads_input = node is not None and any(t in inputs and rank(inputs[t]) == 4 for t in node.input)
        writes_output = node is not None and any(t in outputs and rank(outputs[t]) == 4 for t in node.output)
        if node is not None and node.op_type == "ReduceL2":
            share = layer.time_us / len(_REDUCE_L2)
            result += [Layer(f"{layer.name}{suffix}", qnn_type, share, layer.onnx_node, layer.sources)
                       for suffix, qnn_type in _REDUCE_L2]
            continue
        if writes_output:  # NHWC back to the graph's NCHW before the output leaves the HTP
            result.append(Layer(f"Transpose_token_{next(token)}", "Transpose", 1.0, "", ()))
        result.append(layer)
        if reads_input:  # the graph's NCHW input to the HTP's NHWC
            result.append(Layer(f"Transpose_token_{next(token)}", "Transpose", 1.0, "", ()))
    return result


# The HTP clock the cost model's microseconds become cycles at (order of magnitude of a v73).
CYCLES_PER_US = 1_000
LAYER_FIELDS = ("cycles", "both", "time")


def build_profile_detail(
    onnx_bytes: bytes, *, runs: int, seed: str, cpu_op_types: tuple[str, ...] = (), fused: bool = False,
    layer_fields: str = "cycles", quirks: tuple[str, ...] = (),
) -> pb.ProfileDetail:
    """A ProfileDetail (major 1, minor 2: per-run times and memory ranges), as AI Hub sends.
    `fused`: layers as QNN builds them (`fuse_like_qnn`), not one per ONNX node.
    `layer_fields`: "cycles" (QNN context binaries on AI Hub: `execution_cycles` only),
    "both" (cycles and whole microseconds, 0 for sub-microsecond layers) or "time".
    `quirks`: see `converter_quirks`."""
    assert layer_fields in LAYER_FIELDS, layer_fields
    layers = layers_from_onnx(onnx_bytes, fused=fused, quirks=quirks)
    per_op_total = sum(layer.time_us for layer in layers)
    # End-to-end runs are a bit longer than the per-op sum (graph launch, I/O), and jitter.
    h = hashlib.sha256(seed.encode()).digest()
    all_times = [int(per_op_total * 1.06 + 4 + (h[i % len(h)] % 17)) for i in range(runs)]
    all_times[0] += int(per_op_total * 3)  # the first run is cold (one real profile: 1995 us, then ~300)
    detail = pb.ProfileDetail(
        major_version=1,
        minor_version=2,
        execution_time=min(all_times),
        after_execution_peak_memory=18_400_000,
        cold_load_time=41_000,
        after_cold_load_peak_memory=31_200_000,
        warm_load_time=2_300,
        after_warm_load_peak_memory=19_900_000,
        compile_time=380_000,
        after_compile_peak_memory=52_000_000,
        all_execution_times=all_times,
        all_cold_load_times=[41_000, 40_200],
        all_warm_load_times=[2_300, 2_250],
        all_compile_times=[380_000],
    )
    for stage in ("compile_memory", "cold_load_memory", "warm_load_memory", "execution_memory"):
        getattr(detail, stage).CopyFrom(
            pb.ProfileDetail.MemoryUsage(increase=pb.Range(lower=0, upper=4_000_000), peak=pb.Range(lower=1, upper=9_000_000))
        )
    for layer in layers:
        cu = pb.ComputeUnit.COMPUTE_UNIT_CPU if layer.type in cpu_op_types else pb.ComputeUnit.COMPUTE_UNIT_NPU
        fields = {}
        if layer_fields in ("cycles", "both"):
            fields["execution_cycles"] = int(round(layer.time_us * CYCLES_PER_US))
        if layer_fields in ("time", "both"):
            fields["execution_time"] = int(layer.time_us)  # whole microseconds: 0 below one
        detail.layer_details.append(
            pb.LayerDetail(name=layer.name, layer_type_name=layer.type, compute_unit=cu, delegate_name="QNN", **fields)
        )
    return detail


# --- server state ---------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    t: float  # time.monotonic() on arrival
    authorized: bool


@dataclass
class StoredModel:
    pb: pb.Model
    data: bytes = b""
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Fault:
    """A scripted answer: the next `times` requests matching `method` and `path` (a regex over
    the URL path) get `status`, `body` and `headers` instead of the real answer. `{headers}`
    in the body is replaced by the request's headers, as a server echoing a request does."""

    method: str
    path: str
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    ctype: str = "application/json"


@dataclass
class StoredDataset:
    pb: pb.Dataset
    data: bytes = b""  # the h5 file


@dataclass
class StoredJob:
    kind: str  # compile | inference
    pb: pb.Job
    polls: int = 0
    source_model_id: str | None = None
    output_dataset_id: str | None = None


class HubStandIn:
    """A threaded http.server on 127.0.0.1 that speaks enough of AI Hub's API.

    Knobs: `polls_to_finish` (status polls a job answers "running" before it ends),
    `hold` (kinds of job, "compile" / "inference", that keep running while listed),
    `fail_compile(name, options) -> reason | None`, `flaky_polls` (the next N job status
    requests answer 503), `cpu_op_types` (QNN op types reported on the CPU, not the NPU),
    `fused` (per-layer profiles as QNN builds the graph, see `fuse_like_qnn`).
    """

    def __init__(
        self,
        token: str,
        *,
        polls_to_finish: int = 1,
        fail_compile: Callable[[str, str], str | None] | None = None,
        cpu_op_types: tuple[str, ...] = (),
        devices=DEFAULT_DEVICES,
        fused: bool = False,
        frameworks=DEFAULT_FRAMEWORKS,
        s3_endpoint: str | None = None,
    ):
        self.token = token
        self.frameworks = [pb.Framework(name="QAIRT", api_version=a, full_version=f, api_tags=list(t))
                           for a, f, t in frameworks]
        # Transfers: presigned URLs on this server, or (with an S3 endpoint, e.g. moto's server)
        # short-lived credentials for one object each, which the client uses through botocore.
        self.s3_endpoint = s3_endpoint
        self.transfer_mode = "credentials" if s3_endpoint else "presigned"
        self.transfer_failures = 0  # the next N transfers fail (a bucket that is not there / 403)
        self.faults: list[Fault] = []
        self.runtime_qairt: str | None = None  # what the device reports running (default: as compiled)
        self.datasets: dict[str, StoredDataset] = {}
        # Inference outputs: the uploaded (QDQ) graph run on the CPU, plus the HTP's own rounding
        # (relative noise `npu_noise`); `npu_collapse` makes them what a collapsed int8 model gives.
        self.npu_noise = 2e-3
        self.npu_collapse = False
        self.polls_to_finish = polls_to_finish
        self.hold: set[str] = set()
        self.flaky_polls = 0
        self.fail_compile = fail_compile
        self.cpu_op_types = cpu_op_types
        self.fused = fused
        self.layer_fields = "cycles"  # per-layer fields of profiles (see build_profile_detail)
        self.quirks: tuple[str, ...] = ()  # converter-made layers (see converter_quirks)
        self.devices = [pb.Device(name=n, os=o, attributes=list(a)) for n, o, a in devices]
        self.requests: list[Request] = []
        self.models: dict[str, StoredModel] = {}
        self.jobs: dict[str, StoredJob] = {}
        self._lock = threading.RLock()  # reentrant: a route holding it may mint ids
        self._seq = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> HubStandIn:
        standin = self

        class Handler(_Handler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="aihub-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_client_ini(self, path: Path, *, token: str | None = None) -> Path:
        """A client.ini as `qai-hub configure` writes it, pointing at this server."""
        cfg = configparser.ConfigParser()
        cfg["api"] = {
            "api_token": self.token if token is None else token,
            "api_url": self.url,
            "web_url": self.url,
            "verbose": "True",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            cfg.write(f)
        return path

    # -- inspection for tests --

    def fail_next(self, method: str, path: str, status: int, body: str = "", *, times: int = 1,
                  headers: dict[str, str] | None = None, ctype: str = "application/json") -> None:
        self.faults.append(Fault(method, path, status, body, headers or {}, times, ctype))

    def qairt_full(self, api_version: str | None) -> str:
        """The full version AI Hub compiles with for --qairt_version (default: the `default` tag)."""
        for f in self.frameworks:
            if (api_version and f.api_version == api_version) or (not api_version and "default" in f.api_tags):
                return f.full_version
        raise KeyError(f"QAIRT {api_version}")

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                            aws_access_key_id="standin", aws_secret_access_key="standin")

    def s3_credentials(self, key: str, filename: str) -> pb.S3Credentials:
        """Credentials for one object, as AI Hub grants them (a failing one while `transfer_failures`)."""
        with self._lock:
            fail = self.transfer_failures > 0
            self.transfer_failures -= fail
        return pb.S3Credentials(
            access_key_id="ASIASTANDIN0000000000", secret_access_key="standin-secret-key",
            session_token="standin-session-token", bucket="aihub-standin-missing" if fail else S3_BUCKET, key=key,
            region="us-east-1", use_transfer_acceleration=False, filename=filename,
        )

    def count(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for r in self.requests if r.method == method and rx.fullmatch(r.path))

    def api_calls(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith("/api/")]

    def jobs_created(self, kind: str) -> int:
        return sum(1 for j in self.jobs.values() if j.kind == kind)

    def first_job_submitted_at(self) -> float | None:
        return next((r.t for r in self.requests if r.method == "POST" and r.path == "/api/v1/jobs/"), None)

    # -- ids --

    def _id(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}{self._seq:05d}sf"

    def _sig(self, model_id: str) -> str:
        return hashlib.sha256(f"{model_id}:standin-signature".encode()).hexdigest()[:16]


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    # -- wire helpers --

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = io.BytesIO()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                out.write(self.rfile.read(size))
                self.rfile.readline()
            return out.getvalue()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", ctype: str = PROTOBUF, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _pb(self, msg) -> None:
        self._send(200, msg.SerializeToString())

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        hub = self.hub
        authorized = self.headers.get("Authorization") == f"token {hub.token}"
        hub.requests.append(Request(self.command, url.path, query, time.monotonic(), authorized))
        body = self._body()
        for fault in list(hub.faults):
            if fault.times > 0 and fault.method == self.command and re.fullmatch(fault.path, url.path):
                fault.times -= 1
                echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
                return self._send(fault.status, fault.body.replace("{headers}", echoed).encode(), fault.ctype,
                                  fault.headers)
        if url.path.startswith("/s3/"):
            return self._s3(url.path, query, body)
        if not url.path.startswith("/api/v1/"):
            return self._send(404, b"not found", "text/plain")
        if not authorized:
            return self._send(401, b'{"detail": "Invalid token."}', "application/json")
        parts = [p for p in url.path[len("/api/v1/") :].split("/") if p]
        try:
            route = _ROUTES.get((self.command, _shape(parts)))
            if route is None:
                return self._send(404, f"stand-in has no {self.command} {url.path}".encode(), "text/plain")
            route(self, parts, query, body)
        except KeyError as exc:
            self._send(404, f'{{"detail": "Not found: {exc}"}}'.encode(), "application/json")

    do_GET = do_POST = do_PUT = do_PATCH = _dispatch

    # -- presigned storage --

    def _refused(self, query: dict, object_id: str, stored: dict) -> bool:
        """Whether a presigned transfer is refused: a failure still queued (`transfer_failures`,
        one taken per transfer), a signature not the stand-in's, an object it does not hold."""
        with self.hub._lock:
            fail = self.hub.transfer_failures > 0
            self.hub.transfer_failures -= fail
        return fail or query.get("sig", [""])[0] != self.hub._sig(object_id) or object_id not in stored

    def _s3(self, path: str, query: dict, body: bytes) -> None:
        parts = path.split("/")[2:]
        if parts and parts[0].startswith("dataset"):
            return self._s3_dataset(parts, query, body)
        model_id = parts[1] if len(parts) > 1 else ""
        if self._refused(query, model_id, self.hub.models):
            return self._send(403, b"<Error><Code>AccessDenied</Code><Message>bad signature</Message></Error>", "application/xml")
        stored = self.hub.models[model_id]
        if parts[0] == "upload" and self.command == "PUT":
            stored.parts[int(parts[2])] = body
            return self._send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        if parts[0] == "download" and self.command == "GET":
            return self._send(200, stored.data, "application/octet-stream")
        self._send(404, b"", "text/plain")

    def _s3_dataset(self, parts: list[str], query: dict, body: bytes) -> None:
        """Presigned dataset transfers: a form POST up (S3's POST policy style), a GET down."""
        ds_id = parts[1] if len(parts) > 1 else ""
        if self._refused(query, ds_id, self.hub.datasets):
            return self._send(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
        stored = self.hub.datasets[ds_id]
        if parts[0] == "dataset-upload" and self.command == "POST":
            from email.parser import BytesParser
            from email.policy import HTTP

            head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
            form = BytesParser(policy=HTTP).parsebytes(head + body)
            for part in form.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    stored.data = part.get_payload(decode=True)
            return self._send(204, b"", "text/plain")
        if parts[0] == "dataset-download" and self.command == "GET":
            return self._send(200, stored.data, "application/octet-stream")
        self._send(404, b"", "text/plain")

    # -- datasets --

    def create_dataset(self, parts, query, body) -> None:
        req = pb.Dataset.FromString(body)
        ds_id = self.hub._id("d")
        ds = pb.Dataset(dataset_id=ds_id, name=req.name)
        ds.creation_time.GetCurrentTime()
        self.hub.datasets[ds_id] = StoredDataset(ds)
        self._pb(pb.CreateUpdateResponse(id=ds_id, creation_time=ds.creation_time))

    def dataset_upload_url(self, parts, query, body) -> None:
        ds_id = parts[1]
        self.hub.datasets[ds_id]
        if self.hub.transfer_mode == "credentials" and query.get("supports_s3_credentials") == ["true"]:
            creds = self.hub.s3_credentials(f"datasets/{ds_id}/data.h5", "data.h5")
            return self._pb(pb.FileUploadResponse(credentials=creds))
        url = f"{self.hub.url}/s3/dataset-upload/{ds_id}?sig={self.hub._sig(ds_id)}"
        self._pb(pb.FileUploadResponse(url=pb.FileUploadURL(url=url, file_field_name="file",
                                                              fields={"key": f"datasets/{ds_id}/data.h5"})))

    def patch_dataset(self, parts, query, body) -> None:
        stored = self.hub.datasets[parts[1]]
        if pb.Dataset.FromString(body).file_upload_complete:
            stored.pb.file_upload_complete = True
        self._pb(pb.CreateUpdateResponse(id=parts[1]))

    def dataset_upload_complete(self, parts, query, body) -> None:
        stored = self.hub.datasets[parts[1]]
        got = self.hub.s3().get_object(Bucket=S3_BUCKET, Key=f"datasets/{parts[1]}/data.h5")
        stored.data = got["Body"].read()
        stored.pb.file_upload_complete = True
        self._pb(pb.CreateUpdateResponse(id=parts[1]))

    def get_dataset(self, parts, query, body) -> None:
        self._pb(self.hub.datasets[parts[1]].pb)

    def dataset_download(self, parts, query, body) -> None:
        ds_id = parts[1]
        stored = self.hub.datasets[ds_id]
        if self.hub.transfer_mode == "credentials" and query.get("supports_s3_credentials") == ["true"]:
            key = f"downloads/{ds_id}/data.h5"
            self.hub.s3().put_object(Bucket=S3_BUCKET, Key=key, Body=stored.data)
            return self._pb(pb.FileDownloadResponse(credentials=self.hub.s3_credentials(key, "data.h5")))
        url = f"{self.hub.url}/s3/dataset-download/{ds_id}?sig={self.hub._sig(ds_id)}"
        self._pb(pb.FileDownloadResponse(url=pb.FileDownloadURL(url=url, filename="data.h5")))

    def _run_on_device(self, stored: StoredJob) -> str:
        """The inference job's outputs, as a new dataset: the uploaded graph on the CPU
        (onnxruntime) with the HTP's rounding added, or a collapsed model's outputs."""
        import h5py
        import numpy as np
        import onnxruntime as ort
        from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

        hub = self.hub
        ij = stored.pb.inference_job
        with h5py.File(io.BytesIO(hub.datasets[ij.dataset.dataset_id].data), "r") as h5f:
            inputs = h5_to_dataset_entries(h5f)
        compiled = hub.models[stored.source_model_id]
        source = hub.models[hub.jobs[compiled.pb.producer_id].source_model_id]
        sess = ort.InferenceSession(source.data, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outputs: dict[str, list] = {n: [] for n in names}
        rng = np.random.default_rng(int(hashlib.sha256(ij.inference_job_id.encode()).hexdigest()[:8], 16))
        (in_name, arrays), = inputs.items()
        for x in arrays:
            for n, y in zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True):
                if hub.npu_collapse:
                    y = np.full_like(y, float(np.mean(y)))
                elif not np.issubdtype(y.dtype, np.floating):
                    pass  # a quantized (native I/O) output: the binary's integers as they are
                else:
                    y = y + rng.standard_normal(y.shape).astype(y.dtype) * hub.npu_noise * float(np.std(y))
                outputs[n].append(y)
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5f:
            dataset_entries_to_h5(outputs, h5f)
        ds_id = hub._id("d")
        ds = pb.Dataset(dataset_id=ds_id, name=f"{ij.name} outputs", file_upload_complete=True)
        ds.creation_time.GetCurrentTime()
        hub.datasets[ds_id] = StoredDataset(ds, buf.getvalue())
        return ds_id

    # -- routes --

    def devices(self, parts, query, body) -> None:
        name = query.get("name", [""])[0]
        attrs = [a for a in query.get("attributes", []) if a]
        os_ = query.get("os", [""])[0]
        select = query.get("select", ["False"])[0].lower() == "true"
        found = [
            d for d in self.hub.devices
            if (not name or d.name == name) and all(a in d.attributes for a in attrs) and (not os_ or d.os == os_)
        ]
        if select and found:
            found = [max(found, key=lambda d: tuple(int(x) for x in d.os.split(".") if x.isdigit()))]
        self._pb(pb.DeviceList(devices=found, total_query_count=len(found)))

    def create_model(self, parts, query, body) -> None:
        req = pb.Model.FromString(body)
        model_id = self.hub._id("m")
        stored = pb.Model(model_id=model_id, name=req.name, model_type=req.model_type, is_directory=req.is_directory)
        stored.creation_time.GetCurrentTime()
        self.hub.models[model_id] = StoredModel(stored)
        self._pb(pb.CreateUpdateResponse(id=model_id, creation_time=stored.creation_time))

    def upload_urls(self, parts, query, body) -> None:
        model_id = parts[1]
        stored = self.hub.models[model_id]  # KeyError -> 404
        if self.hub.transfer_mode == "credentials" and query.get("supports_s3_credentials") == ["true"]:
            creds = self.hub.s3_credentials(f"uploads/{model_id}/{stored.pb.name}", stored.pb.name)
            return self._pb(pb.FileUploadResponse(credentials=creds))
        size = int(query.get("file_size", ["0"])[0])
        url = f"{self.hub.url}/s3/upload/{model_id}/0?sig={self.hub._sig(model_id)}"
        self._pb(pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(urls=[url], upload_id=f"u-{model_id}", max_part_size=max(size, 1))))

    def complete_upload(self, parts, query, body) -> None:
        model_id = parts[1]
        stored = self.hub.models[model_id]
        done = pb.FileMultipartUploadComplete.FromString(body)
        stored.data = b"".join(stored.parts[i] for i in sorted(stored.parts))
        stored.pb.file_upload_complete = True
        assert done.upload_id == f"u-{model_id}" and len(done.etags) == len(stored.parts)
        self._pb(pb.CreateUpdateResponse(id=model_id))

    def upload_complete(self, parts, query, body) -> None:
        """The credentials route's end: the object is in S3, read it from there."""
        model_id = parts[1]
        stored = self.hub.models[model_id]
        got = self.hub.s3().get_object(Bucket=S3_BUCKET, Key=f"uploads/{model_id}/{stored.pb.name}")
        stored.data = got["Body"].read()
        stored.pb.file_upload_complete = True
        self._pb(pb.CreateUpdateResponse(id=model_id))

    def frameworks(self, parts, query, body) -> None:
        self._pb(pb.FrameworkList(frameworks=self.hub.frameworks, total_query_count=len(self.hub.frameworks)))

    def get_model(self, parts, query, body) -> None:
        self._pb(self.hub.models[parts[1]].pb)

    def download_model(self, parts, query, body) -> None:
        stored = self.hub.models[parts[1]]
        if self.hub.transfer_mode == "credentials" and query.get("supports_s3_credentials") == ["true"]:
            key = f"downloads/{parts[1]}/{stored.pb.name}"
            self.hub.s3().put_object(Bucket=S3_BUCKET, Key=key, Body=stored.data)
            return self._pb(pb.FileDownloadResponse(credentials=self.hub.s3_credentials(key, stored.pb.name)))
        url = f"{self.hub.url}/s3/download/{parts[1]}?sig={self.hub._sig(parts[1])}"
        self._pb(pb.FileDownloadResponse(url=pb.FileDownloadURL(url=url, filename=stored.pb.name)))

    def auth_user(self, parts, query, body) -> None:
        self._pb(pb.User(id=1, first_name="Stand", last_name="In", email="standin@example.invalid"))

    def _device(self, requested: pb.Device) -> pb.Device:
        for d in sorted(self.hub.devices, key=lambda d: d.os, reverse=True):
            if (not requested.name or d.name == requested.name) and all(a in d.attributes for a in requested.attributes):
                return d
        raise KeyError(f"device {requested.name!r}")

    def create_job(self, parts, query, body) -> None:
        job = pb.Job.FromString(body)
        hub = self.hub
        which = job.WhichOneof("job")
        if which in ("compile_job", "inference_job"):
            inner = getattr(job, which)
            m = re.search(r"--qairt_version[ =](\S+)", inner.options)
            if m and m.group(1) not in {f.api_version for f in hub.frameworks} | {"default", "latest"}:
                offered = ", ".join(f.api_version for f in hub.frameworks)
                return self._send(400, f'{{"detail": "QAIRT version {m.group(1)} is not supported. '
                                  f'Supported versions: {offered}."}}'.encode(), "application/json")
        if which == "compile_job":
            src = hub.models[job.compile_job.model.model_id]
            job_id = hub._id("j")
            cj = job.compile_job
            cj.compile_job_id = job_id
            cj.job_state = RUNNING["compile"][0]
            cj.model.CopyFrom(src.pb)
            cj.device.CopyFrom(self._device(cj.devices.devices[0]))
            cj.creation_time.GetCurrentTime()
            # seed_target_model=true: the compiled model exists (empty) from the start.
            target_id = hub._id("m")
            target = pb.Model(
                model_id=target_id, name=f"{cj.name}.bin", model_type=pb.ModelType.MODEL_TYPE_QNN_CONTEXT_BINARY,
                producer_id=job_id,
            )
            target.creation_time.GetCurrentTime()
            hub.models[target_id] = StoredModel(target)
            cj.target_model.CopyFrom(target)
            hub.jobs[job_id] = StoredJob("compile", job, source_model_id=src.pb.model_id)
        elif which in ("inference_job", "profile_job"):
            ij = job.inference_job if which == "inference_job" else None
            if ij is None:  # older clients: translate a ProfileJob into the same record
                pj = job.profile_job
                ij = pb.InferenceJob(model=pj.model, name=pj.name, device=pj.device, options=pj.options, is_profiling_on=True)
                job = pb.Job(inference_job=ij)
                ij = job.inference_job
            model = hub.models[ij.model.model_id]
            if not model.pb.file_upload_complete:
                return self._send(400, b'{"detail": "Model is not ready."}', "application/json")
            job_id = hub._id("j")
            ij.inference_job_id = job_id
            ij.job_state = RUNNING["inference"][0]
            ij.model.CopyFrom(model.pb)
            ij.device.CopyFrom(self._device(ij.device))
            ij.creation_time.GetCurrentTime()
            hub.jobs[job_id] = StoredJob("inference", job, source_model_id=model.pb.model_id)
        else:
            return self._send(400, b'{"detail": "unsupported job type"}', "application/json")
        self._pb(pb.CreateUpdateResponse(id=job_id, creation_time=(cj if which == "compile_job" else ij).creation_time))

    def get_job(self, parts, query, body) -> None:
        hub = self.hub
        stored = hub.jobs[parts[1]]
        with hub._lock:
            flaky = hub.flaky_polls > 0
            hub.flaky_polls -= flaky
        if flaky:
            return self._send(503, b"Service Unavailable", "text/plain")
        with hub._lock:
            inner = stored.pb.compile_job if stored.kind == "compile" else stored.pb.inference_job
            finished = inner.job_state in (pb.JobState.JOB_STATE_DONE, pb.JobState.JOB_STATE_FAILED)
            if not finished:
                if stored.kind in hub.hold or stored.polls < hub.polls_to_finish:
                    states = RUNNING[stored.kind]
                    inner.job_state = states[min(stored.polls, len(states) - 1)]
                    stored.polls += 1
                else:
                    self._finish(stored, inner)
        self._pb(stored.pb)

    def _finish(self, stored: StoredJob, inner) -> None:
        hub = self.hub
        inner.completion_time.GetCurrentTime()
        if stored.kind == "compile":
            reason = hub.fail_compile(inner.name, inner.options) if hub.fail_compile else None
            if reason:
                inner.job_state = pb.JobState.JOB_STATE_FAILED
                inner.failure_reason = reason
                return
            m = re.search(r"--qairt_version[ =](\S+)", inner.options)
            qairt = hub.qairt_full(m.group(1) if m and m.group(1) not in ("default", "latest") else None)
            target = hub.models[inner.target_model.model_id]
            source = hub.models[stored.source_model_id]
            target.data = b"QNN-CONTEXT-BINARY (aihub stand-in)\n" + qairt.encode() + b"\n" + hashlib.sha256(source.data).hexdigest().encode()
            target.pb.file_upload_complete = True
            # Newer binaries record QAIRT_SDK_VERSION (3), older ones QNN_SDK_VERSION (1) as "v2.31.0...".
            newer = Version(qairt.split("_")[0]) >= Version("2.33")
            sdk_key, sdk_value = (3, qairt) if newer else (1, "v" + qairt.split("_")[0])
            for key, value in ((sdk_key, sdk_value), (31, "v73"), (32, "43")):
                target.pb.metadata.entries[key] = value
            inner.target_model.CopyFrom(target.pb)
            inner.job_state = pb.JobState.JOB_STATE_DONE
        else:
            inner.job_state = pb.JobState.JOB_STATE_DONE

    def job_result(self, parts, query, body) -> None:
        hub = self.hub
        stored = hub.jobs[parts[1]]
        if stored.kind != "inference":
            return self._pb(pb.JobResult())
        ij = stored.pb.inference_job
        if ij.dataset.dataset_id:  # inputs given: the outputs come back as a dataset
            with hub._lock:
                if stored.output_dataset_id is None:
                    stored.output_dataset_id = self._run_on_device(stored)
        if not ij.is_profiling_on:  # no profile asked for
            return self._pb(pb.JobResult(inference_job_result=pb.InferenceJobResult(
                inference_job_id=ij.inference_job_id, output_dataset_id=stored.output_dataset_id or "")))
        m = re.search(r"--max_profiler_iterations[ =](\d+)", ij.options)
        runs = int(m.group(1)) if m else 100
        target = hub.models[stored.source_model_id]
        compile_job = hub.jobs[target.pb.producer_id]
        source = hub.models[compile_job.source_model_id]
        detail = build_profile_detail(source.data, runs=runs, seed=ij.inference_job_id, cpu_op_types=hub.cpu_op_types,
                                      fused=hub.fused, layer_fields=hub.layer_fields, quirks=hub.quirks)
        m = re.search(r"--qairt_version[ =](\S+)", ij.options)
        ran = hub.runtime_qairt or hub.qairt_full(m.group(1) if m and m.group(1) not in ("default", "latest") else None)
        detail.tool_versions.append(pb.ToolVersion(name="QAIRT", version=ran))
        self._pb(pb.JobResult(inference_job_result=pb.InferenceJobResult(
            inference_job_id=ij.inference_job_id, detail=detail, output_dataset_id=stored.output_dataset_id or "")))


def _shape(parts: list[str]) -> tuple[str, ...]:
    """Route key: fixed path words, `*` for ids."""
    words = {"devices", "models", "jobs", "multipart_upload", "download", "result", "users", "auth", "user",
             "frameworks", "upload_complete", "datasets", "upload_url", "download_data"}
    return tuple(p if p in words else "*" for p in parts)


_ROUTES: dict[tuple[str, tuple[str, ...]], Callable] = {
    ("GET", ("devices",)): _Handler.devices,
    ("GET", ("frameworks",)): _Handler.frameworks,
    ("POST", ("datasets",)): _Handler.create_dataset,
    ("GET", ("datasets", "*", "upload_url")): _Handler.dataset_upload_url,
    ("PATCH", ("datasets", "*")): _Handler.patch_dataset,
    ("POST", ("datasets", "*", "upload_complete")): _Handler.dataset_upload_complete,
    ("GET", ("datasets", "*")): _Handler.get_dataset,
    ("GET", ("datasets", "*", "download_data")): _Handler.dataset_download,
    ("POST", ("models", "*", "upload_complete")): _Handler.upload_complete,
    ("POST", ("models",)): _Handler.create_model,
    ("GET", ("models", "*", "multipart_upload")): _Handler.upload_urls,
    ("POST", ("models", "*", "multipart_upload")): _Handler.complete_upload,
    ("GET", ("models", "*")): _Handler.get_model,
    ("GET", ("models", "*", "download")): _Handler.download_model,
    ("POST", ("jobs",)): _Handler.create_job,
    ("GET", ("jobs", "*")): _Handler.get_job,
    ("GET", ("jobs", "*", "result")): _Handler.job_result,
    ("GET", ("users", "auth", "user")): _Handler.auth_user,
}


def unused_port() -> int:
    """A port nothing listens on (for the network-error test)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- hand-built export directories (what `swiftformer-qnn export` leaves, minus the slow parts) --


def make_export_dir(
    out: Path, *, qdq: Path, sim: Path, variant: str, precision: str, input_shape: list[int], sample_input=None,
    request_key: str | None = None, fp32_outputs=None, cpu_qdq_outputs=None,
) -> Path:
    """An export directory with a manifest whose stages point at the given ONNX files.

    Only what `profile` reads: export (attention, opset), simplify/model.sim.onnx,
    quantize/model.qdq.onnx, inputs/heldout.npy (one sample input), and the request (variant,
    precision, soc, input_shape, weights). The stage results describe those files. With
    `fp32_outputs` / `cpu_qdq_outputs` (arrays, one row per held-out input): validate's and
    cpu_qdq's outputs too, recorded as computed from heldout.npy (and the QDQ graph).
    """
    import shutil

    import numpy as np
    import onnx

    from swiftformer_qnn.core.atomic import sha256_file
    from swiftformer_qnn.core.cache import FileRecord, StageRecord
    from swiftformer_qnn.pipeline.artifacts import MANIFEST_NAME, ExportManifest
    from swiftformer_qnn.pipeline.requests import ExportedRequest
    from swiftformer_qnn.pipeline.stage_results import (
        CpuQdqResults,
        ExportResults,
        InputsResults,
        ModelInputs,
        QuantizeResults,
        SimplifyResults,
        ValidateResults,
    )

    out.mkdir(parents=True, exist_ok=True)
    files = {"model.sim.onnx": sim, "model.qdq.onnx": qdq}
    for name, src in files.items():
        shutil.copyfile(src, out / name)
    x = sample_input if sample_input is not None else np.random.default_rng(0).standard_normal(input_shape)
    np.save(out / "heldout.npy", np.asarray(x, dtype=np.float32).reshape(-1, *input_shape[1:]))  # N held-out inputs
    model = onnx.load(str(out / "model.sim.onnx"), load_external_data=False)
    graph = model.graph
    # Counted here, not by the package's op_histogram: the fixture must not be made by the code it tests.
    types = dict(sorted(collections.Counter(n.op_type for n in graph.node).items()))

    def rec(stage: str, output: str | None, results, inputs=()) -> StageRecord:
        outputs = {}
        if output:
            p = out / output
            outputs[output] = FileRecord(path=output, sha256=sha256_file(p), bytes=p.stat().st_size)
        return StageRecord[type(results)](name=stage, key=f"{stage}-handmade", wall_s=0.0, outputs=outputs, results=results,
                                          inputs={name: sha256_file(out / name.split("/")[1]) for name in inputs})

    # Named as the export writes them (the stage records' input names and files are its format).
    later = []
    if fp32_outputs is not None:
        np.save(out / "heldout_fp32.npy", np.asarray(fp32_outputs, dtype=np.float32))
        later.append(rec("validate", "heldout_fp32.npy",
                         ValidateResults(samples=len(fp32_outputs), sqnr_db=None, exact=True, cosine_mean=1.0,
                                         cosine_min=1.0, max_abs_diff=0.0, reference_max_abs=1.0, tolerance_abs=1e-3,
                                         min_cosine=0.9999),
                         inputs=("simplify/model.sim.onnx", "inputs/heldout.npy")))
    if cpu_qdq_outputs is not None:
        np.save(out / "heldout_qdq_cpu.npy", np.asarray(cpu_qdq_outputs, dtype=np.float32))
        later.append(rec("cpu_qdq", "heldout_qdq_cpu.npy", CpuQdqResults(samples=len(cpu_qdq_outputs)),
                         inputs=("quantize/model.qdq.onnx", "inputs/heldout.npy")))

    manifest = ExportManifest(
        request_key=request_key or f"handmade-{variant}-{precision}-{'x'.join(map(str, input_shape))}",
        request=ExportedRequest(
            variant=variant, precision=precision, soc="sm8550", soc_model=43, htp_arch=73, input_shape=input_shape,
            weights="realistic-random", opset=20, graph="htp", until="quantize",
        ),
        tools={},
        stages=[
            rec("export", None, ExportResults(opset=20, nodes=len(graph.node), op_types=types,
                                              input=graph.input[0].name, output=graph.output[0].name,
                                              attention="normalize", weights={"source": "realistic-random"})),
            rec("simplify", "model.sim.onnx", SimplifyResults(nodes_before=len(graph.node), nodes=len(graph.node),
                                                              op_types=types)),
            rec("inputs", "heldout.npy", InputsResults(heldout=ModelInputs(
                count=1, shape=list(input_shape[1:]), what="one sample input made by the test stand-in"))),
            rec("quantize", "model.qdq.onnx", QuantizeResults(precision=precision, quantized=precision != "fp16")),
            *later,
        ],
    )
    (out / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    return out


def files_containing(token: str, *roots: Path) -> list[Path]:
    """Every file under `roots` whose bytes contain `token`."""
    needle = token.encode()
    hits = []
    for root in roots:
        for p in Path(root).rglob("*"):
            if p.is_file() and needle in p.read_bytes():
                hits.append(p)
    return hits


_QDQ_MODELS: dict[tuple[str, int], dict] = {}


def real_qdq_model(variant: str, resolution: int, where: Path) -> dict:
    """A real QDQ export (`qdq_fixtures.make_qdq_model`) and its float graph, built once per
    test session and shared by the test modules that need them: {"qdq", "sim", "res"}."""
    key = (variant, resolution)
    if key not in _QDQ_MODELS:
        from qdq_fixtures import make_qdq_model

        qdq = make_qdq_model(variant, resolution, where)
        # make_qdq_model quantizes make_float_model's output, `<variant>_<resolution>.sim.onnx`.
        sim = where / f"{variant}_{resolution}.sim.onnx"
        assert sim.is_file(), f"qdq_fixtures no longer leaves its float model at {sim}"
        _QDQ_MODELS[key] = {"qdq": qdq, "sim": sim, "res": resolution}
    return _QDQ_MODELS[key]


# --- a real S3 server for the credentials route ----------------------------------------------


class MotoS3:
    """moto's S3 in server mode on 127.0.0.1 (a maintained S3 implementation, not ours), with
    the stand-in's bucket, and moto's request recorder to count the transfers it served."""

    def __init__(self):
        self._server = None
        self.endpoint = ""

    def __enter__(self) -> MotoS3:
        import os

        import boto3
        import requests
        from moto.server import ThreadedMotoServer

        os.environ.setdefault("MOTO_RECORDER_FILEPATH", str(Path(os.environ.get("TMPDIR", "/tmp")) /
                                                               f"moto-recorder-{os.getpid()}.jsonl"))
        port = unused_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="standin",
                     aws_secret_access_key="standin").create_bucket(Bucket=S3_BUCKET)
        requests.post(f"{self.endpoint}/moto-api/recorder/start-recording", timeout=10)
        return self

    def requests(self) -> list[dict]:
        """Every S3 request moto served since start (the recorder's log)."""
        import json

        import requests

        got = requests.get(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=10)
        return [json.loads(line) for line in got.text.splitlines() if line.strip()]

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

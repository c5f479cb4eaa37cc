"""What each pipeline stage returns: one pydantic model per stage, keyed by the stage's name.

The manifest and the stage cache hold these, so the renderer, the gate, the profiler and the
bench read attributes, not string keys. The compile stage's result is the `CompileRecord`
every compile writes. Imports only pydantic and `compile_record`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..htp.record import CompileRecord
from ..measure.agreement import Agreement


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportResults(_Model):
    opset: int
    nodes: int
    op_types: dict[str, int]
    input: str
    output: str
    attention: str  # the effective attention form
    graph: str = "htp"  # "htp": the HTP-ready form; "faithful": the literal upstream graph
    weights: dict[str, Any]  # source, and for a checkpoint its format, sha256 and attention forms
    notes: list[str] = Field(default_factory=list)


class SimplifyResults(_Model):
    nodes_before: int
    nodes: int
    op_types: dict[str, int]


class FoldResults(_Model):
    """`fold_bn`: each BatchNorm, how it was folded and into which nodes (`pipeline.fold_bn`)."""

    nodes_before: int
    nodes: int
    batchnorms_folded: int
    folds: list[dict[str, Any]]  # {batchnorm, how, into}
    op_types: dict[str, int]


class ModelInputs(_Model):
    count: int
    shape: list[int]
    what: str  # what the inputs are (photographs at a size, or a host model's activations)
    skipped: list[str] = Field(default_factory=list)  # "<file>: why"


class InputsResults(_Model):
    heldout: ModelInputs
    calibration: ModelInputs | None = None  # none when nothing is quantized
    notes: list[str] = Field(default_factory=list)


class ReferenceResults(_Model):
    samples: int  # held-out inputs the PyTorch model ran on
    output_shape: list[int]  # of one output


class ValidateResults(Agreement):
    tolerance_abs: float
    min_cosine: float
    graph: str | None = None  # the float graph validated (the one quantized)


class QuantizeResults(_Model):
    precision: str
    quantized: bool = True  # False for fp16: the float graph is kept and the HTP runs it in fp16
    calibration_samples: int | None = None
    calibration_method: str | None = None  # how the activation ranges were chosen (pipeline.ranges)
    qnn_preprocessed: bool | None = None
    nodes: int | None = None
    compute_nodes: int | None = None  # nodes other than QuantizeLinear / DequantizeLinear
    qdq_nodes: int | None = None
    sixteen_bit_units: list[str] = Field(default_factory=list)  # mixed: the units with 16-bit activations


class GuardFinding(_Model):
    """A BatchNorm whose folded bias the QNN EP would wrap to the opposite sign (`htp.bn_guard`)."""

    node: str
    channels: list[int]
    folded_bias: list[float]  # of those channels
    action: str  # "rewritten" (its scale re-quantized per channel)


class GuardResults(_Model):
    """`guard`: the BatchNorm-overflow guard on the quantized graph, once per export; the compile
    and the estimate compile its `model.guarded.onnx` (the compile record repeats this as `bn_guard`)."""

    batchnorms: int
    exposed_batchnorms: int  # of those, with a per-tensor quantized scale (the EP path that can overflow)
    corrupted_predicted: list[GuardFinding]


class ChannelMapCheck(_Model):
    """verify's check of per-channel affine ops (BatchNorm) on one held-out input (localize.channel_map)."""

    ops_checked: int
    max_mismatch_db: float  # the criterion: fail above this
    ops_unchecked: int = 0  # on maps too small to fit (localize.MIN_FIT_VALUES): not checked, not passed
    unchecked_nodes: list[str] = []
    worst_mismatch_db: float | None = None  # None: no op checked, or an infinite mismatch
    worst_node: str | None = None
    worst_channel: int | None = None
    seconds: float | None = None


class CpuQdqResults(_Model):
    """`cpu_qdq`: the quantized model run on the CPU EP over the held-out inputs (verify reads them)."""

    samples: int


class VerifyResults(_Model):
    quantized_vs_fp32: Agreement
    emulator_vs_quantized_cpu: Agreement
    emulator_vs_fp32: Agreement
    # The CPU QDQ model on the same held-out inputs the emulator ran, and the criteria (verify.py).
    quantized_vs_fp32_on_emulated: Agreement | None = None
    sqnr_gap_db: float | None = None  # CPU-QDQ-vs-fp32 minus HTP-vs-fp32
    max_sqnr_gap_db: float | None = None
    min_emulator_sqnr_db: float | None = None
    min_sqnr_db: float
    min_emulator_cosine: float
    channel_maps: ChannelMapCheck | None = None  # None: fp16, or a graph without BatchNorm-like ops


class CandidateFigures(_Model):
    """One precision assignment, quantized with the shared calibration ranges, compiled and run on
    the HTP emulator (and its QDQ model on the CPU) on the same held-out inputs (`pipeline.mixed`)."""

    sixteen: list[str]  # the units with 16-bit activations
    sixteen_share: float  # their share of the model's multiply-accumulates
    samples: int
    htp_sqnr_db: float | None  # HTP emulator vs fp32 (None: identical)
    cpu_sqnr_db: float | None  # CPU QDQ vs fp32
    htp_noise: float  # HTP error power over fp32 signal power (linear; what the search adds up)
    cpu_noise: float
    htp_top1: float | None = None  # top-1 agreement with fp32 (classifiers)
    cpu_top1: float | None = None
    cost: float  # in the sensitivity's cost unit
    cost_measured: bool = True  # False: the single-unit runs of the sensitivity, whose cost is not measured
    estimated_us: float | None = None  # QNN's HTP estimate, when the cost is one
    htp_ops: int | None = None
    converts: int = 0  # QNN Convert ops in the compiled graph (8 <-> 16-bit)
    context_binary_bytes: int | None = None
    seconds: float


class UnitSensitivity(_Model):
    """One unit's measured gain: the output noise power (over the signal's) its 16 bits remove."""

    unit: str
    kind: str | None
    nodes: int
    macs: int
    htp_gain: float  # on the HTP emulator (linear, over signal power)
    cpu_gain: float  # the same on the CPU QDQ model
    handover: float = 0.0  # the part of htp_gain its output's 8-bit rounding makes (needs the next unit at 16 bits)
    extra_cost: float  # cost16 - cost8
    cost8: float = 0.0  # its ops' cost in uniform w8a8 (estimate: their share of the critical path)
    cost16: float = 0.0  # the same in uniform w8a16
    # taps: SQNR of the unit's output against fp32 in uniform w8a8 and w8a16 (HTP), and the factor
    # its output noise reaches the model output with (`mixed_search.chain_gains`).
    out_sqnr8_db: float | None = None
    out_sqnr16_db: float | None = None
    carry: float | None = None
    # one unit at a time: the SQNR of the assignment with this unit alone changed, its Convert ops.
    htp_sqnr_db: float | None = None
    cpu_sqnr_db: float | None = None
    converts: int | None = None
    htp_ops: int | None = None
    piece_of: str | None = None  # the attention part this piece of it is measured for (alone at 8 bits)

    @property
    def htp_gain_db(self) -> float | None:
        """The gain in dB of the signal: -30 means the unit's 8-bit noise is 30 dB below the output."""
        return 10 * math.log10(self.htp_gain) if self.htp_gain > 0 else None


class SensitivityResults(_Model):
    """`sensitivity`: uniform w8a8 and w8a16 and the units' gains, measured (`pipeline.mixed`)."""

    samples: int  # held-out inputs each candidate ran on (emulator and CPU)
    # "taps": each unit's output noise read in a few whole-model runs; "16->8": each unit alone at
    # 8 bits from uniform w8a16 (units that are no chain).
    direction: str
    cost_unit: str  # "us" (estimated) or "bit-ops"
    cost_source: str  # where the cost comes from, as every figure of it is labelled
    w8a8: CandidateFigures
    w8a16: CandidateFigures
    units: list[UnitSensitivity]
    convert_cost: float = 0.0  # each meeting of an 8- and a 16-bit unit, from a mixed run's estimate
    tap_runs: list[list[str]] = Field(default_factory=list)  # the mixed runs' 16-bit units (taps)
    # The attention parts measured by pieces instead (`mixed_search.units_to_split`): their own
    # figures, for the record; `units` holds their pieces in their place.
    split: list[UnitSensitivity] = Field(default_factory=list)
    # Where `units` meet: per tensor one writes and others read, (writer, readers) (`Bench.crossings`).
    crossings: list[tuple[str, list[str]]] = Field(default_factory=list)
    unplaced_nodes: list[str] = Field(default_factory=list)  # compute nodes no unit holds: always 8-bit
    seconds: float
    notes: list[str] = Field(default_factory=list)


class MixedPoint(_Model):
    """One assignment of the Pareto curve: predicted by the search, measured where it was run."""

    sixteen: list[str]
    predicted_sqnr_db: float
    predicted_cost: float
    measured: CandidateFigures | None = None
    priced: float | None = None  # its cost from the costing alone (a near miss's neighbour, `mixed_search.neighbours`)


class SearchResults(_Model):
    """`mixed_search`: the curve, the target, and the measured choice (`pipeline.mixed_search`)."""

    target: str
    min_sqnr_db: float | None = None
    max_time_ratio: float | None = None
    cost_unit: str
    cost_source: str
    curve: list[MixedPoint]  # predicted with the corrections the measured candidates taught
    chosen: MixedPoint  # measured
    tried: list[MixedPoint] = Field(default_factory=list)  # every candidate measured for the target, in order
    priced: list[MixedPoint] = Field(default_factory=list)  # a near miss's neighbours priced (those within the time also in `tried`)
    noise_scale: float | None = None  # the corrections (`mixed_search.Corrections`) the curve was drawn with
    convert_cost: float = 0.0
    lite_mp: MixedPoint | None = None  # AI Hub's Lite-MP rule (top 10% of units), measured
    lite_mp_peer: MixedPoint | None = None  # this search's best point within Lite-MP's cost, measured
    measured_candidates: int
    seconds: float


class EstimateResults(_Model):
    """The compiled graph as QNN's HTP performance estimator sees it (`htp.estimate`): estimated
    accelerator time for a proxy SoC of the target's HTP generation, not device latency."""

    label: str  # "estimated (QNN Hextimate, SA8255P proxy for SM8550)": said next to the figure
    qnn_version: str
    proxy_soc: str
    proxy_soc_model: int
    us: float
    us_lower: float | None = None
    us_upper: float | None = None
    us_converted: bool = False  # QNN printed cycles only; us = cycles at the simulated clock
    cycles: int
    missing_ops: int | None = None  # ops without a cost, left out of the estimate
    input_fill_bytes: int | None = None
    traced_ops: int
    unmapped_share: float  # of the span, in slices whose op QNN's name table does not name


# Stage name -> the model of its results; the manifest and the cache validate by it.
STAGE_RESULTS: dict[str, type[BaseModel]] = {
    "export": ExportResults,
    "simplify": SimplifyResults,
    "fold_bn": FoldResults,
    "inputs": InputsResults,
    "reference": ReferenceResults,
    "validate": ValidateResults,
    "sensitivity": SensitivityResults,
    "mixed_search": SearchResults,
    "quantize": QuantizeResults,
    "guard": GuardResults,
    "compile": CompileRecord,
    "estimate": EstimateResults,
    "cpu_qdq": CpuQdqResults,
    "verify": VerifyResults,
}

"""What each pipeline stage returns: one pydantic model per stage, keyed by the stage's name.

The manifest and the stage cache hold these, so the renderer, the gate, the profiler and the
bench read attributes, not string keys. The compile stage's result is the `CompileRecord`
every compile writes. Imports only pydantic and `compile_record`.
"""

from __future__ import annotations

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


class ValidateResults(Agreement):
    tolerance_abs: float
    min_cosine: float
    graph: str | None = None  # the float graph validated (the one quantized)
    simplified: ValidateResults | None = None  # the simplified graph it came from, when BN was folded


class QuantizeResults(_Model):
    precision: str
    quantized: bool = True  # False for fp16: the float graph is kept and the HTP runs it in fp16
    calibration_samples: int | None = None
    qnn_preprocessed: bool | None = None
    nodes: int | None = None
    compute_nodes: int | None = None  # nodes other than QuantizeLinear / DequantizeLinear
    qdq_nodes: int | None = None


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
    "validate": ValidateResults,
    "quantize": QuantizeResults,
    "compile": CompileRecord,
    "estimate": EstimateResults,
    "verify": VerifyResults,
}

"""Estimate profiles: QNN's HTP performance estimator, per op and per block, in the profile schema.

`htp.estimate.estimate_model` compiles an export's QDQ graph for the estimator's proxy SoC
(SA8255P for HTP v73) and names every op of the simulated schedule with its ONNX nodes; here
those ops become `OpRecord`s (each op's share of the simulated span, in microseconds at the
simulated clock) attributed to SwiftFormer's blocks, in a profile whose source is `estimate`.
Cycles of the span no op has in flight (idle) are one record of their own, which no block
owns, so blocks plus `other` add up to the span, the graph's estimate.

An estimate is not a device latency: every figure is labelled with the estimator and its
proxy ("estimated (QNN Hextimate, SA8255P proxy for SM8550)"), and it covers accelerator
execution only (no I/O, no RPC, no CPU-side overhead of a real inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import __version__
from ..htp.bn_guard import guarded_model
from ..htp.estimate import Estimate
from ..measure.attribution import NodeTensors, attribute_ops
from ..measure.schema import (
    ComputeUnit,
    EstimateSummary,
    LatencySource,
    ModelInfo,
    OpEstimate,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from ..model.variants import Variant

IDLE_OP = "(idle: no op in flight)"
LEAVES_OUT = "accelerator execution only: no graph I/O to the application, RPC or CPU overhead"


def estimate_device(estimate: Estimate | EstimateSummary) -> str:
    """The profile's `target.device`: the estimator and its proxy, never a phone's name."""
    proxy = estimate.proxy_soc
    target = (estimate.stands_for or "").upper() or f"HTP v{getattr(estimate, 'htp_arch', '?')}"
    return f"QNN Hextimate: {proxy} proxy for {target}"


def summary_of(estimate: Estimate) -> EstimateSummary:
    return EstimateSummary(
        proxy_soc=estimate.proxy_soc, proxy_soc_model=estimate.soc_model, stands_for=estimate.stands_for,
        us=estimate.us, us_lower=estimate.us_lower, us_upper=estimate.us_upper, us_converted=estimate.us_converted,
        cycles=estimate.cycles, cycles_lower=estimate.cycles_lower, cycles_upper=estimate.cycles_upper,
        sim_core_mhz=estimate.simulated.core_mhz, sim_ddr_mhz=estimate.simulated.ddr_mhz,
        sim_base_soc=estimate.simulated.sim_base_soc,
        span_cycles=estimate.span_cycles, idle_cycles=estimate.idle_cycles, unmapped_cycles=estimate.unmapped_cycles,
        input_fill_bytes=estimate.input_fill_bytes, output_spill_bytes=estimate.output_spill_bytes,
        intermediate_fill_bytes=estimate.intermediate_fill_bytes,
        intermediate_spill_bytes=estimate.intermediate_spill_bytes,
        missing_ops=estimate.missing_ops, dma_read_bytes=estimate.dma_read_bytes, dma_write_bytes=estimate.dma_write_bytes,
    )


def estimate_ops(estimate: Estimate) -> list[OpRecord]:
    """One record per traced op (its share of the span), plus the idle cycles as a record of their own."""
    ops = [
        OpRecord(
            name=op.name, op_type=op.qnn_type or "unknown", compute_unit=ComputeUnit.NPU,
            execution_cycles=op.span_cycles, execution_time_us=estimate.to_us(op.span_cycles),
            onnx_nodes=op.onnx_nodes,
            estimate=OpEstimate(
                op_id=op.op_id, busy_cycles=op.busy_cycles, slices=op.slices, threads=op.threads, kernels=op.kernels,
                dram_read_bytes=op.dram_read_bytes, dram_write_bytes=op.dram_write_bytes,
                vtcm_read_bytes=op.vtcm_read_bytes, vtcm_write_bytes=op.vtcm_write_bytes,
            ),
        )
        for op in estimate.ops
    ]
    if estimate.idle_cycles > 0:
        ops.append(OpRecord(name=IDLE_OP, op_type="idle", execution_cycles=estimate.idle_cycles,
                            execution_time_us=estimate.to_us(estimate.idle_cycles)))
    return ops


def _graph_order(op: OpRecord) -> tuple[int, int]:
    """The graph's order: QNN numbers ops as the framework adds them, in topological order
    (the schedule's start times are no order: weight prefetches start long before their op).
    QNN's own Input and Output ops have the first ids but run first and last."""
    assert op.estimate is not None
    return ({"Input": 0, "Output": 2}.get(op.name, 1), op.estimate.op_id)


def estimate_profile(
    estimate: Estimate,
    variant: Variant,
    model_info: ModelInfo,
    *,
    graph: Mapping[str, NodeTensors] | None = None,
    note: str | None = None,
) -> Profile:
    """The estimate as a profile of source `estimate`, its ops attributed to `variant`'s blocks
    (`graph`: the compiled ONNX's node tensors, which place ops renamed by QNN)."""
    ops = estimate_ops(estimate)
    # The idle record is no op of the schedule: it stays out of the attribution (and in `other`).
    traced = sorted((op for op in ops if op.name != IDLE_OP), key=_graph_order)
    ops = attribute_ops(traced, variant, graph=graph, in_execution_order=True) + ops[len(traced):]
    summary = summary_of(estimate)
    said = (f"{summary.label}: {LEAVES_OUT}. Per-op times are each op's share of the simulated schedule's "
            "span (parallel threads not double-counted)")
    if estimate.us_converted:
        said += f"; QNN {estimate.qnn_version} prints cycles only, converted at the simulated {summary.sim_core_mhz} MHz"
    if estimate.missing_ops:
        said += f"; {estimate.missing_ops} op(s) have no cost in the estimator and are left out of it"
    return Profile(
        source=LatencySource.ESTIMATE,
        model=model_info,
        target=TargetInfo(device=estimate_device(estimate), soc_model=estimate.soc_model, htp_arch=estimate.htp_arch),
        toolchain=ToolchainInfo(qnn_version=estimate.qnn_version, onnxruntime_qnn=estimate.onnxruntime_qnn,
                                compiled_with=estimate.qnn_version, runtime="onnx"),
        latency=None,
        ops=ops,
        estimate=summary,
        provenance=Provenance(tool=f"swiftformer-qnn {__version__}", note=said + "." + (f" {note}" if note else "")),
    )


def estimate_export_model(
    model_path: Path,
    variant: Variant,
    model_info: ModelInfo,
    work_dir: Path,
    *,
    htp_arch: int = 73,
    stands_for: str | None = "sm8550",
    qnn: str | None = None,
    native_io: bool = False,
) -> tuple[Profile, Estimate]:
    """Estimate one export's compiled graph (`model_path`: its QDQ, or for fp16 its float ONNX)
    and return its profile and the raw estimate (whose files stay in `work_dir`). `native_io`:
    the export's binary takes and gives uint8 NHWC (`export --io uint8-nhwc`): so is the graph estimated."""
    import tempfile

    from ..htp.estimate import estimate_model
    from ..htp.sweep import require_onnx
    from .emulator import onnx_node_tensors

    require_onnx(Path(model_path))  # a damaged export: one line, before any compile
    with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-estimate-") as tmp:
        # What the phone would run: the graph the compile stage compiles, after the BN guard.
        source, _ = guarded_model(Path(model_path), Path(tmp), name=Path(model_path).name)
        if native_io:
            from ..pipeline.compile import native_io_model

            source, _ = native_io_model(source, Path(tmp))
        est = estimate_model(source, work_dir, htp_arch=htp_arch, stands_for=stands_for, qnn=qnn,
                             fp16=model_info.precision == "fp16")
        graph = onnx_node_tensors(source)
    return estimate_profile(est, variant, model_info, graph=graph), est

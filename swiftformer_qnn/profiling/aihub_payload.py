"""AI Hub's profile payload (the dict `InferenceJob.download_profile()` returns, built by the
client's `_profile_pb_to_python_dict`) in our schema. Pure: no network, no client state.

Per-layer rows keep `execution_time` (us) and `execution_cycles` as given; QNN context
binaries on AI Hub often carry cycles only. Layer names are QNN's converter names
(`qnn_op_name`); `onnx_sources` maps them back to the uploaded graph's nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import ProfileError
from ..measure.attribution import NodeTensors, attribute_ops
from ..measure.schema import (
    ComputeUnit,
    LatencyBasis,
    LatencySource,
    LatencySummary,
    LoadInfo,
    ModelInfo,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from .devices import device_slug


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def latency_from_summary(summary: dict[str, Any]) -> LatencySummary:
    """Whole-model inference time from `execution_summary` (microseconds).

    Newer AI Hub profiles carry every run (`all_inference_times`): min/median/max are over
    those, and AI Hub's own `estimated_inference_time` (which appears to be the minimum of the
    runs) is kept beside them. Older ones have only the estimate, and say so (basis).
    """
    runs = [float(t) for t in (summary.get("all_inference_times") or []) if _num(t) is not None]
    estimate = _num(summary.get("estimated_inference_time"))
    if runs:
        return LatencySummary.of_runs(runs, estimate_us=estimate)
    if estimate is None:
        raise ProfileError("AI Hub's profile has no inference time (no estimated_inference_time, no all_inference_times).")
    return LatencySummary(
        min_us=estimate, median_us=estimate, run_count=1, basis=LatencyBasis.AIHUB_ESTIMATE, estimate_us=estimate
    )


def load_from_summary(summary: dict[str, Any]) -> LoadInfo:
    peaks = [
        int(v)
        for k in ("first_load_peak_memory", "warm_load_peak_memory", "estimated_inference_peak_memory")
        if (v := _num(summary.get(k))) is not None
    ]
    inference_peak = _num(summary.get("estimated_inference_peak_memory"))
    return LoadInfo(
        first_load_us=_num(summary.get("first_load_time")),
        warm_load_us=_num(summary.get("warm_load_time")),
        peak_memory_bytes=max(peaks) if peaks else None,
        inference_peak_memory_bytes=int(inference_peak) if inference_peak is not None else None,
    )


def qnn_op_name(onnx_node: str) -> str:
    """The name QNN's ONNX converter gives the op made from an ONNX node, as AI Hub's
    per-layer profile shows it: only [A-Za-z0-9_] survive (`/stage2/block9_.../MatMul`
    -> `_stage2_block9_..._MatMul`)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", onnx_node)
    return f"_{name}" if name[:1].isdigit() else name


def onnx_sources(model_path: Path) -> dict[str, list[str]]:
    """For each op name AI Hub can report for this uploaded graph, the ONNX nodes it stands for.

    AI Hub's profile names ops but, unlike the emulator's op trace, not the ONNX nodes they
    came from. The uploaded graph tells: a QDQ compute node becomes one HTP op together with
    the DequantizeLinear nodes of its inputs (its parameters, the activations it reads) and
    the QuantizeLinear of its output. Nodes that lost their module path in graph rewrites
    (`Gemm_1`, `LpNormalization_fused_ReduceL2_0`) are attributed through those. Names two
    nodes would share are left out rather than guessed.
    """
    import onnx

    from ..core.onnx_graph import readers

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = readers(graph)
    out: dict[str, list[str]] = {}
    clashes: set[str] = set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            sources = [name]
        else:
            sources = [name]
            sources += [producer[x].name for x in node.input if x in producer and producer[x].op_type == "DequantizeLinear"]
            sources += [c.name for o in node.output for c in consumers.get(o, []) if c.op_type == "QuantizeLinear"]
        key = qnn_op_name(name)
        if key in out:
            clashes.add(key)
        out[key] = sources
    for key in clashes:
        del out[key]
    return out


# Layers the converter inserts around a node keep its name plus a suffix.
_CONVERTER_SUFFIX = re.compile(r"_(?:pre|post)_reshape$|_converted_QNN_DATATYPE_\w+$")


def layer_sources(name: str, sources: Mapping[str, list[str]]) -> list[str]:
    """The uploaded graph's nodes a layer stands for: by its name, else by its name without a
    converter suffix (`<node>_pre_reshape`)."""
    if name in sources:
        return list(sources[name])
    base = _CONVERTER_SUFFIX.sub("", name)
    return list(sources.get(base, [])) if base != name else []


def _layer_key(d: Any) -> tuple | None:
    if not isinstance(d, Mapping) or not d.get("name"):
        return None  # unnamed layers cannot be told apart: each is kept
    return tuple((k, str(d.get(k))) for k in ("name", "type", "compute_unit", "execution_time", "execution_cycles"))


def unique_layers(detail: list[Any]) -> tuple[list[Any], int]:
    """`execution_detail` with each repeated layer (the same name, type, unit and figures again)
    once, and how many repeats were left out. A payload listing a layer twice would count its
    time twice and inflate its block's share; two different layers never have all of these equal
    but for an empty name (kept)."""
    seen: set[tuple] = set()
    kept = []
    for d in detail:
        key = _layer_key(d)
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        kept.append(d)
    return kept, len(detail) - len(kept)


def ops_from_detail(detail: list[dict[str, Any]], sources: dict[str, list[str]] | None = None) -> list[OpRecord]:
    """`execution_detail` layers -> OpRecords (not yet attributed), keeping both
    `execution_time` (us) and `execution_cycles` as the layer gives them. `sources` (from
    `onnx_sources`) fills each op's `onnx_nodes` where its name matches the uploaded graph."""
    sources = sources or {}
    ops = []
    for d in unique_layers(detail)[0]:
        cu = str(d.get("compute_unit") or "")
        name = str(d.get("name", ""))
        ops.append(
            OpRecord(
                name=name,
                op_type=str(d.get("type", "")),
                compute_unit=ComputeUnit(cu) if cu in ComputeUnit._value2member_map_ else None,
                execution_time_us=_num(d.get("execution_time")),
                execution_cycles=_num(d.get("execution_cycles")),
                onnx_nodes=layer_sources(name, sources),
            )
        )
    return ops


def profile_from_hub(
    payload: dict[str, Any],
    *,
    model: ModelInfo,
    target: TargetInfo,
    toolchain: ToolchainInfo,
    provenance: Provenance,
    sources: dict[str, list[str]] | None = None,
    graph: Mapping[str, NodeTensors] | None = None,
) -> Profile:
    """The dict `InferenceJob.download_profile()` returns, in our schema, ops attributed to blocks
    (by name, and through `sources` where given: see `onnx_sources`). `graph` (the uploaded
    model's nodes and their tensors, `emulator.onnx_node_tensors`) places nodes whose names lost
    their module path by the tensors they read and write: in a float (fp16) graph no Q/DQ node
    carries those names."""
    from ..model.variants import get_variant

    if not isinstance(payload, dict) or "execution_summary" not in payload:
        raise ProfileError("AI Hub returned no profile (the job produced no execution_summary).")
    latency = latency_from_summary(payload["execution_summary"] or {})
    detail = payload.get("execution_detail") or []
    ops = attribute_ops(ops_from_detail(detail, sources), get_variant(model.variant), graph=graph)
    repeats = unique_layers(detail)[1]
    if repeats:
        said = f"{repeats} layer{'s' if repeats != 1 else ''} repeated in AI Hub's execution_detail counted once."
        provenance = provenance.model_copy(update={"note": f"{provenance.note} {said}".strip() if provenance.note
                                                   else said})
    return Profile(
        source=LatencySource.AIHUB,
        model=model,
        target=target,
        toolchain=toolchain,
        latency=latency,
        load=load_from_summary(payload["execution_summary"] or {}),
        ops=ops,
        provenance=provenance,
    )


def jsonable(value: Any) -> Any:
    """The client's dict holds tuples (memory ranges); JSON wants lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def profile_stem(model: str, qnn: str, device: str) -> str:
    """`<model>-qnn<version>-<device slug>`; `model` is `<variant>-<precision>` or a
    `file_labels` name that tells apart exports of one variant and precision."""
    return f"{model}-qnn{qnn}-{device_slug(device)}"

"""Terminal rendering of the pipeline's typed results (rich)."""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from ..core.tables import Col, FitTable, fmt_bytes
from ..htp.record import FIGURES, CompileRecord
from ..pipeline import STAGE_TITLES, ExportResult, StageEvent
from ..pipeline.requests import ExportedRequest
from ._app import next_step

STEP_WIDTH = 13  # "taps 1/2", "piece 3/5", "mix 12": a long stage's step


class ExportProgress:
    """One progress line per stage; cached stages are marked as such."""

    def __init__(self, console: Console):
        # A long stage's current step in a narrow column of its own, so 80 columns keep the time.
        step = TextColumn("{task.fields[detail]}", style="dim",
                          table_column=Column(no_wrap=True, overflow="ellipsis", max_width=STEP_WIDTH))
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=None), step, TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.tasks: dict[str, int] = {}
        # Shown from the first stage on: a request refused before any stage runs is its one
        # error line, without the blank line an empty display leaves when it stops.
        self._started = False
        self._starting = threading.Lock()  # stages report from their threads

    def __enter__(self) -> ExportProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self.progress.__exit__(*exc)

    def on_event(self, event: StageEvent) -> None:
        if event.status == "start":
            with self._starting:
                if not self._started:
                    self._started = True  # first: a Ctrl-C inside start() still stops it at exit
                    self.progress.start()
            self.tasks[event.stage] = self.progress.add_task(event.title, total=1, detail="")
            return
        task = self.tasks[event.stage]
        if event.status == "step":
            self.progress.update(task, detail=event.detail)
            return
        suffix = " [dim](cached)[/]" if event.status == "cached" else ""
        self.progress.update(task, completed=1, description=f"{event.title}{suffix}", detail="")


def render_export_summary(console: Console, result: ExportResult) -> None:
    m = result.manifest
    req = m.request
    exported = isinstance(req, ExportedRequest)  # else `compile MODEL.onnx`: no variant, no blocks
    if result.reused:
        console.print(Text.assemble(("Up to date: ", "green"), str(result.directory),
                                    " already holds this request (nothing re-run; the times are the earlier run's)."))
    if exported and req.weights.startswith("random"):
        console.print(
            "[bold yellow]WEIGHTS: RANDOM[/] - no --weights given; the model is randomly initialised "
            f"({req.weights}: layer scales 0.1-1, BN statistics away from identity, fan-in scaled "
            "convs, so every branch and every fidelity figure counts). Latency is representative, accuracy is not."
        )
    for note in result.notes:
        console.print(Text.assemble(("note: ", "yellow"), note))

    what = f"{req.variant} {req.precision}" if exported else Path(req.model).name
    rows = []
    for s in m.stages:
        if result.reused:
            took = f"{s.original_wall_s if s.cached else s.wall_s:.2f} (earlier run)"
        else:
            took = f"{s.original_wall_s:.2f} (cached)" if s.cached else f"{s.wall_s:.2f}"
        rows.append([STAGE_TITLES.get(s.name, s.name), took, _stage_summary(s.name, s.results, s.outputs)])
    # The stage title may wrap: a split table would set the results apart from their stages.
    columns = [Col("stage", "text", min_width=16), Col("time (s)", "number"), Col("result", "text", min_width=30)]
    console.print(FitTable(columns, rows, title=f"{what} for {req.soc}"))

    files = [("manifest.json", f"every stage's inputs, outputs, options and checks (total {m.wall_s:.1f} s)")]
    compile_ = m.stage("compile")
    if compile_ is not None:
        record = compile_.results  # the CompileRecord
        if record.htp_op_types is not None:
            console.print(render_graph_cost(record), highlight=False)
        for t in record.io or []:
            layout = "NHWC" if t.nhwc else "as the model's"
            how = ("feed round(x / scale) + zero_point, clipped to 0..255" if t.role == "input"
                   else "read x = (x_q - zero_point) * scale")
            console.print(f"Native {t.role} [bold]{t.name}[/]: uint8 {layout} {t.shape}, scale {t.scale:.9g}, "
                          f"zero point {t.zero_point} ({how}).", highlight=False)
        if exported and m.stage("estimate") is None:
            console.print(f"No estimated time: QNN's performance estimator runs for no HTP v{record.htp_arch} SoC "
                          "in this QNN (profile on a device instead).", highlight=False)
        files = [
            (record.context_binary, f"the QNN context binary (QNN {record.qnn_version}): on a phone, "
                                    "qnn-net-run --retrieve_context runs it"),
            (record.context_onnx, "its onnxruntime wrapper: load it with the QNN execution provider (HTP backend)"),
            ("compile.json", "what QNN built: HTP ops by type, binary size, versions"),
            *files,
        ]
        if m.stage("estimate") is not None:
            files.insert(3, ("estimate.json", "QNN's estimated HTP time of the whole graph (not device latency)"))
    console.print(Text.assemble("Files in ", (f"{result.directory}/", "bold"), ":"), soft_wrap=True)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for name, text in files:
        grid.add_row("  " + name, text)
    console.print(grid)
    if exported and compile_ is not None:
        _next_after_export(console, result.directory, estimated=m.stage("estimate") is not None)
    elif compile_ is not None:  # `compile MODEL.onnx`: no variant, so no blocks to attribute a profile to
        next_step(console, "swiftformer-qnn export --variant VARIANT --output-dir DIR",
                  why="per-block profiles need an export, then `profile --from DIR`")
    elif exported:  # --until onnx or quantize
        next_step(console, f"swiftformer-qnn export --variant {req.variant}",
                  why="the whole export compiles the model for the NPU and checks it")


def export_summary(result: ExportResult) -> dict:
    """`export --json`: where it went, whether it was reused, and the whole manifest."""
    return {"directory": str(result.directory), "reused": result.reused, "notes": result.notes,
            "manifest": result.manifest.model_dump(mode="json")}


def _next_after_export(console: Console, directory: Path, *, estimated: bool) -> None:
    """Profile it next: on AI Hub when a token is configured; else QNN's estimate per block (the
    best figure without a device), or the HTP emulator's structure where no estimate runs."""
    from ..profiling.aihub_client import hub_configured

    if not hub_configured():
        if estimated:
            next_step(console, f"swiftformer-qnn profile estimate --from {directory}",
                      why="no AI Hub token is configured: QNN's estimated time per block, no device needed; "
                          "with a token, --device \"Galaxy S23 Ultra\" measures it on a phone")
        else:
            next_step(console, f"swiftformer-qnn profile emulator --from {directory}",
                      why="no AI Hub token is configured: per-block structure on the HTP emulator "
                          "(cycles, not latency); with a token, --device \"Galaxy S23 Ultra\" profiles it on a phone")
        return
    next_step(console, f'swiftformer-qnn profile --device "Galaxy S23 Ultra" --from {directory}',
              why="per-block latency on a phone through Qualcomm AI Hub (`profile estimate`: QNN's estimate, no device)")


def _stage_summary(name: str, r, outputs: dict) -> str:
    size = ", ".join(f"{k} {fmt_bytes(v.bytes)}" for k, v in outputs.items() if k.endswith((".onnx", ".bin")))
    if name == "export":
        return f"opset {r.opset}, {r.nodes} nodes, attention {r.attention}, {r.graph} graph; {size}"
    if name == "simplify":
        return f"{r.nodes_before} -> {r.nodes} nodes; {size}"
    if name == "fold_bn":
        return f"{r.batchnorms_folded} BatchNorm folded, {r.nodes_before} -> {r.nodes} nodes; {size}"
    if name == "inputs":
        calib, held = r.calibration, r.heldout
        skipped = len(held.skipped) + (len(calib.skipped) if calib else 0)
        text = f"{calib.count} calibration + " if calib else ""
        return text + f"{held.count} held-out ({held.what})" + (f", {skipped} file(s) skipped" if skipped else "")
    if name == "reference":
        return f"PyTorch's outputs ({'x'.join(map(str, r.output_shape))}) on {r.samples} held-out inputs"
    if name == "validate":
        return f"max |diff| {r.max_abs_diff:.2e} (tol {r.tolerance_abs:.1e}), cosine {r.cosine_min:.6f}"
    if name == "sensitivity":
        pieces = sum(1 for u in r.units if u.piece_of)
        how = (f"{len(r.units) - pieces} units' output noise in {2 + len(r.tap_runs)} runs" if r.direction == "taps"
               else f"{len(r.units) - pieces} units each alone at 8 bits")
        if pieces:
            how += f", {pieces} attention pieces each alone at 8 bits"
        return (f"{how} on {r.samples} held-out inputs: w8a8 "
                f"{_sq(r.w8a8.htp_sqnr_db)}, w8a16 {_sq(r.w8a16.htp_sqnr_db)} (HTP vs fp32); cost: {r.cost_unit}")
    if name == "mixed_search":
        from ..report.mixed import chosen_line

        return f"{r.target}: {chosen_line(r)}; {r.measured_candidates} candidate(s) measured"
    if name == "quantize":
        if not r.quantized:
            return "fp16: float graph kept, HTP runs it in fp16"
        if r.sixteen_bit_units:
            return (f"mixed: {len(r.sixteen_bit_units)} unit(s) with 16-bit activations, the rest 8-bit, 8-bit weights, "
                    f"{r.calibration_method or 'minmax'} ranges, "
                    f"{r.compute_nodes} compute nodes; {size}")
        ranges = f" ({r.calibration_method} ranges)" if r.calibration_method else ""
        return f"{r.precision}, {r.calibration_samples} calibration inputs{ranges}, {r.compute_nodes} compute nodes; {size}"
    if name == "guard":
        if not r.batchnorms:
            return f"no BatchNorm: nothing for the QNN EP to corrupt; {size}"
        rewritten = len(r.corrupted_predicted)
        said = f"{rewritten} rewritten (scale re-quantized per channel)" if rewritten else "none the QNN EP would corrupt"
        return f"{r.batchnorms} BatchNorm, {r.exposed_batchnorms} with a per-tensor scale: {said}; {size}"
    if name == "compile":
        from ..htp.bn_guard import describe_guard

        guarded = describe_guard(r.bn_guard or {})
        note = f"; {guarded}" if guarded else ""
        cost = r.graph_cost
        ops = (f"{r.htp_op_count} HTP ops ({cost.layout_ops} layout, {cost.float_islands} float islands)"
               if cost else "HTP ops not traced")
        return (f"{ops}, every node on the HTP (CPU fallback disabled), soc_model {r.soc_model} / "
                f"v{r.htp_arch}, compile {r.compile_s:.2f} s; {size}{note}")
    if name == "estimate":
        bounds = f" ({r.us_lower:,.0f}-{r.us_upper:,.0f})" if r.us_lower is not None and r.us_upper else ""
        said = f"{r.us:,.0f} us{bounds} {r.label}, NOT device latency; QNN {r.qnn_version}, {r.cycles:,} cycles"
        if r.us_converted:
            said += " (cycles only: us at the simulated clock)"
        if r.missing_ops:
            said += f"; {r.missing_ops} op(s) without a cost left out"
        return said + "; per block: `swiftformer-qnn profile estimate --from` this export"
    if name == "cpu_qdq":
        return f"the quantized model on {r.samples} held-out inputs, onnxruntime's CPU EP"
    if name == "verify":
        q, e = r.quantized_vs_fp32, r.emulator_vs_quantized_cpu
        top1 = f", top-1 agreement {q.top1_agreement:.0%}" if q.top1_agreement is not None else ""
        maps = ""
        if r.channel_maps is not None:
            m = r.channel_maps
            maps = f"; BatchNorm channel maps: {m.ops_checked} checked"
            if m.ops_unchecked:
                maps += f", {m.ops_unchecked} NOT checked (feature map too small to fit)"
        return (f"SQNR {_db(q)} (min {r.min_sqnr_db:g}), cosine {q.cosine_mean:.4f}{top1} "
                f"on {q.samples} held-out; HTP emulator vs CPU QDQ: cosine {e.cosine_min:.4f}, SQNR {_db(e)}{maps}")
    return ""


def render_graph_cost(record: CompileRecord) -> str:
    """One line: the compiled graph's HTP ops by type, then every figure of the compile."""
    types = ", ".join(f"{k} {v}" for k, v in sorted(record.htp_op_types.items(), key=lambda kv: (-kv[1], kv[0])))
    figures = ", ".join(f"{f.label} {value:,}" for f in FIGURES
                        if f.name != "htp_op_count" and (value := f.value(record)) is not None)
    return f"HTP graph: {record.htp_op_count} ops ({types}); {figures}."


def _sq(db: float | None) -> str:
    return "exact" if db is None else f"{db:.2f} dB"


def _db(figures) -> str:
    if figures.exact:
        return "exact"
    return "undefined" if figures.sqnr_db is None else f"{figures.sqnr_db:.1f} dB"


def render_mixed(console: Console, result: ExportResult) -> None:
    """A mixed export's sensitivity and Pareto tables, and beside the export their Markdown and chart."""
    from ..pipeline.stage_results import SearchResults, SensitivityResults

    m = result.manifest
    search = m.results("mixed_search", SearchResults)
    if search is None:
        return
    # Only now: the report package brings matplotlib (about 1 s of every export's end otherwise).
    from ..report.mixed import CHART, MARKDOWN, mixed_md, pareto_chart, pareto_table, sensitivity_table
    from ..report.terminal import table_rich

    sensitivity = m.results("sensitivity", SensitivityResults)
    console.print(table_rich(sensitivity_table(sensitivity)))
    console.print(table_rich(pareto_table(sensitivity, search)))
    md, chart = result.directory / MARKDOWN, result.directory / CHART
    if not (md.is_file() and chart.is_file()) or not result.reused:
        from ..core.atomic import write_text_atomic

        pareto_chart(sensitivity, search, chart)
        write_text_atomic(md, mixed_md(sensitivity, search))
    console.print(f"Mixed precision: {md} and {chart} (the same figures as manifest.json's sensitivity and "
                  "mixed_search stages).")

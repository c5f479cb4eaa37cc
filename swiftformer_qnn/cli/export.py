"""`export`, `compile` and `variants`: parse options, call the pipeline, render its result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..model.variants import VARIANTS
from ._app import JsonOpt, app, console, err_console, guarded, next_step, print_json
from .render import ExportProgress, export_summary, render_export_summary, render_mixed
from .toolchains import NoInstallOpt, check_compared_model, compare_versions, qnn_toolchains


@app.command()
@guarded
def variants() -> None:
    """List the variants with their published parameters, MACs and accuracy."""
    from ..core.tables import Col, FitTable

    columns = [Col("variant", "key"), Col("model", "text", min_width=14), Col("params (M)", "number", short="params M"),
               Col("GMACs", "number"), Col("top-1 %", "number"), Col("input", "label")]
    rows = [[v.name, v.title, f"{v.published_params_m}" if v.published_params_m else "-",
             f"{v.published_gmacs}" if v.published_gmacs else "-", f"{v.published_top1}" if v.published_top1 else "-",
             "x".join(map(str, v.input_shape()))] for v in VARIANTS.values()]
    console.print(FitTable(columns, rows, title="SwiftFormer variants (published figures, ICCV 2023)"))
    next_step(console, "swiftformer-qnn export --variant l1", why="export one (quantized, compiled, checked)")


@app.command()
@guarded
def export(
    variant: Annotated[str, typer.Option(help="xs, s, l1, l3, or encoder (the standalone SwiftFormerEncoder block).")] = "l1",
    weights: Annotated[Path | None, typer.Option(help="Checkpoint: upstream .pth, HF .safetensors/.bin, or timm. Omit for random weights.")] = None,
    attention: Annotated[str | None, typer.Option(help="normalize (upstream since July 2023) or softmax (first release, HF port). Default: what the weights imply.")] = None,
    precision: Annotated[str, typer.Option(help="w8a8, w8a16, fp16 (float graph in the HTP's fp16 mode), or mixed (8-bit weights; 8- or 16-bit activations per block, and per part of a SwiftFormerEncoder, chosen by measuring each on the HTP emulator).")] = "w8a8",
    soc: Annotated[str, typer.Option(help="Target Snapdragon: sm8550 (8 Gen 2, default), sm8650, sm8750, sm8450, sm8475.")] = "sm8550",
    calibration: Annotated[Path | None, typer.Option(help="Folder of calibration images (recursive). Default: the shipped photographs.")] = None,
    calibration_count: Annotated[int, typer.Option(help="How many calibration images to use.")] = 64,
    calibration_method: Annotated[str, typer.Option(help="How the activation ranges are chosen from the calibration inputs: minmax (the extremes seen, default), percentile (onnxruntime's, |x| at 99.999%), entropy (onnxruntime's KL-divergence threshold), or mse (per tensor, the clipping range of least quantization error at the precision's bit width).")] = "minmax",
    heldout: Annotated[Path | None, typer.Option(help="Folder of held-out images for the fidelity check. Default: the shipped held-out set.")] = None,
    heldout_count: Annotated[int, typer.Option(help="How many held-out images to use.")] = 16,
    min_sqnr: Annotated[float | None, typer.Option(help="Fail if the quantized model's SQNR vs fp32 (dB) is below this. Default: 10 (w8a8), 20 (w8a16), 30 (fp16). With --precision mixed: the target, the fastest assignment whose HTP output is at least this faithful.")] = None,
    max_time_ratio: Annotated[float | None, typer.Option(help="With --precision mixed: the most faithful assignment whose estimated time is at most R x uniform w8a8's (R >= 1). Default target: half of w8a16's SQNR gain for a third of its extra time.")] = None,
    until: Annotated[str, typer.Option(help="Stop after: onnx (validated ONNX), quantize, compile, or verify (everything).")] = "verify",
    resolution: Annotated[int | None, typer.Option(help="Input size override (multiple of 32; the block: its HxW). Default 224 / 64.")] = None,
    encoder_dim: Annotated[int | None, typer.Option(help="Channels of the standalone encoder block (default 96).")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where to write. Default: build/<variant>-<precision>-<soc>.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an output directory that holds a different request.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every stage even if its result is cached.")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset, 11-20 (20 gives native Gelu, which the HTP accepts).")] = 20,
    graph: Annotated[str, typer.Option(help="htp: the same function in HTP-native ops (default); faithful: the literal upstream graph.")] = "htp",
    io: Annotated[str, typer.Option(help="The compiled binary's inputs and outputs: float-nchw (default), or uint8-nhwc: the quantized tensors, channel-last, for callers that can feed them (w8a8; scale and zero point in compile.json and the summary).")] = "float-nchw",
    qnn: Annotated[str | None, typer.Option(help="Also compile with these QNN versions (2.47,2.49,2.51 or all) into <output>/qnn-versions/ and compare them. Missing toolchains are installed first.")] = None,
    no_install: NoInstallOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Export a SwiftFormer to ONNX, quantize it and compile it for the Snapdragon NPU (local QNN).

    Quantization calibrates on photographs, and every step is checked to still compute the model."""
    from ..core.errors import UsageError
    from ..pipeline import ExportRequest, Until, run_export

    try:
        until_stage = Until(until)
    except ValueError:
        raise UsageError(f"Unknown --until {until!r}.", hint=f"Use one of: {', '.join(u.value for u in Until)}.") from None
    request = ExportRequest(
        variant=variant, weights=weights, attention=attention, precision=precision, soc=soc,
        resolution=resolution, encoder_dim=encoder_dim,
        calibration=calibration, calibration_count=calibration_count, calibration_method=calibration_method,
        heldout=heldout, heldout_count=heldout_count,
        min_sqnr=min_sqnr, max_time_ratio=max_time_ratio, opset=opset, graph=graph, io=io, until=until_stage,
        output_dir=output_dir, force=force, use_cache=not no_cache,
    )
    if qnn is not None and until_stage is Until.ONNX:
        raise UsageError("--qnn compiles the quantized model, which --until onnx does not make.",
                         hint="Drop --until onnx, or --qnn.")
    specs = qnn_toolchains(qnn, no_install=no_install)  # installed, or refused, now: not after the export
    with ExportProgress(err_console) as progress:
        result = run_export(request, progress=progress.on_event)
    if json_:
        print_json(export_summary(result))
    else:
        render_export_summary(console, result)
        render_mixed(console, result)
    if specs:
        from ..pipeline import compile_export_across_versions
        from .toolchains import exit_if_failed, render_cross_version, render_progress_event

        report = compile_export_across_versions(result, specs, use_cache=not no_cache, progress=render_progress_event)
        if not json_:
            render_cross_version(report, result.directory / "qnn-versions")
        exit_if_failed(report)


@app.command(name="compile")
@guarded
def compile_(
    model: Annotated[Path, typer.Argument(help="A QDQ .onnx (e.g. model.qdq.onnx of an export), or a float .onnx with --fp16.")],
    soc: Annotated[str, typer.Option(help="Target Snapdragon: sm8550 (8 Gen 2, default), sm8650, sm8750, sm8450, sm8475.")] = "sm8550",
    fp16: Annotated[bool, typer.Option("--fp16", help="Compile a float graph with the HTP's fp16 mode.")] = False,
    output_dir: Annotated[Path | None, typer.Option(help="Where to write. Default: <model>-qnn-<soc> beside the model.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    qnn: Annotated[str | None, typer.Option(help="Compile with these QNN versions instead (2.47,2.49,2.51 or all), side by side, and compare them. Missing toolchains are installed first.")] = None,
    no_install: NoInstallOpt = False,
) -> None:
    """Compile an existing ONNX model to a QNN context binary for the Snapdragon NPU (local QNN)."""
    from ..pipeline import CompileRequest, run_compile

    if qnn is not None:
        check_compared_model(model, soc)
    specs = qnn_toolchains(qnn, no_install=no_install)
    if specs:
        compare_versions(model, specs, soc=soc, fp16=fp16, output_dir=output_dir, force=force)
        return
    with ExportProgress(err_console) as progress:
        result = run_compile(CompileRequest(model=model, soc=soc, fp16=fp16, output_dir=output_dir, force=force),
                             progress=progress.on_event)
    render_export_summary(console, result)

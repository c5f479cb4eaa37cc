"""`profile` and its modes: parse options, call one `profiling.orchestrate` function, render per-block tables."""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..core.errors import UsageError
from ..core.tables import Col, FitTable
from ._app import JsonOpt, app, console, err_console, guarded, next_step, print_json

if TYPE_CHECKING:
    from ..profiling.orchestrate import ProfiledModel, ProfileRunResult


def _positive(value: float) -> float:
    """Typer callback: a usage error (exit 2, before any work) unless the value is a finite
    number above 0 (NaN is no number of seconds, and passes `<= 0`)."""
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"{value:g} is not a positive number of seconds.")
    return value


# Options every mode takes. Export options are `export`'s: profile an export with --from.
FromOpt = Annotated[list[Path] | None, typer.Option(
    "--from", help="Export directory to profile (repeatable). Default: the export "
    "`swiftformer-qnn export` makes (L1, w8a8), made here if missing.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Where profiles go. Default: build/profiles/<timestamp>/.")]
TopOpt = Annotated[int, typer.Option(min=1, help="How many of the slowest ops to show per profile.")]
RunsOpt = Annotated[int, typer.Option(min=1, help="Profiling iterations on the phone.")]

profile_app = typer.Typer(
    invoke_without_command=True,
    help="Profile exports per block: AI Hub (the options), or emulator, estimate, phone, import.",
)
app.add_typer(profile_app, name="profile")


def _note(msg: str) -> None:
    from ..core.redact import scrub

    err_console.print(Text(scrub(msg), style="dim"), highlight=False)


def _run(run, request, top: int, json_: bool = False) -> None:
    """Call one mode's function, showing export progress when it makes the default export."""
    from .render import ExportProgress

    stages = nullcontext() if request.from_dirs else ExportProgress(err_console)
    with stages as shown:
        result = run(request, progress=_note, export_progress=shown.on_event if shown else None)
    if json_:
        print_json(run_summary(result))
    else:
        render_run(console, result, top=top)
    error = result.failure_error()
    if error is not None:
        raise error


@profile_app.callback()
@guarded
def profile(
    ctx: typer.Context,
    device: Annotated[str, typer.Option("--device", "-d", help='AI Hub device or chipset ("Galaxy S23 Ultra", s23u, sm8550, 8gen2), "list", or estimate (= `profile estimate`).')] = "Samsung Galaxy S23 Ultra",
    from_dirs: FromOpt = None,
    qnn: Annotated[list[str] | None, typer.Option("--qnn", help="QAIRT version(s) AI Hub compiles and runs with (2.31,2.33; repeatable). Default: AI Hub's.")] = None,
    runs: RunsOpt = 100,
    check_outputs: Annotated[bool, typer.Option("--check-outputs", help="Also run held-out inputs on the phone; report SQNR vs CPU QDQ and fp32.")] = False,
    out: OutOpt = None,
    timeout: Annotated[float, typer.Option(callback=_positive, help="Seconds to wait for all jobs; unfinished ones resume on a rerun.")] = 3600.0,
    poll: Annotated[float, typer.Option(callback=_positive, help="Seconds between job status polls.")] = 10.0,
    new_jobs: Annotated[bool, typer.Option("--new-jobs", help="Submit new jobs even if the same ones ran before (costs quota).")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Resubmit jobs that failed before.")] = False,
    top: TopOpt = 10,
    json_: JsonOpt = False,
) -> None:
    """Profile exports block by block on a phone through Qualcomm AI Hub.

    Needs `qai-hub configure --api_token ...`. Without a token: `profile emulator` (cycles, not
    latency); your own phone: `profile phone`; a profile you downloaded: `profile import`."""
    if ctx.invoked_subcommand is not None:
        return
    from ..profiling.devices import is_list_request
    from ..profiling.orchestrate import HubRequest, run_on_hub
    from ..profiling.orchestrate import list_devices as hub_devices

    if is_list_request(device):
        config, devices = hub_devices(_note)
        render_devices(console, devices, config.api_url)
        return
    mode = device.strip().lower()
    if mode == "estimate":
        # `--device estimate`, as issue 21 and the estimate's first docs spell it: the same run as
        # `profile estimate`, which takes none of AI Hub's options. (Other modes point at their
        # subcommand: their options differ too much to share this command's.)
        hub_only = [name for name, given in (
            ("--runs", runs != 100), ("--check-outputs", check_outputs), ("--timeout", timeout != 3600.0),
            ("--poll", poll != 10.0), ("--new-jobs", new_jobs), ("--retry-failed", retry_failed)) if given]
        if hub_only:
            raise UsageError(f"{', '.join(hub_only)} only apply to AI Hub, not to --device {mode}.",
                             hint=f"Drop them, or see `swiftformer-qnn profile {mode} --help`.")
        from ..profiling.orchestrate import EstimateRequest, run_on_estimate

        _run(run_on_estimate, EstimateRequest(from_dirs=tuple(from_dirs or ()), qnn=tuple(qnn or ()), out_dir=out), top, json_)
        return
    _run(run_on_hub, HubRequest(
        device=device, from_dirs=tuple(from_dirs or ()), qnn=tuple(qnn or ()), runs=runs, out_dir=out,
        timeout_s=timeout, poll_s=poll, new_jobs=new_jobs, retry_failed=retry_failed, check_outputs=check_outputs,
    ), top, json_)


@profile_app.command("emulator")
@guarded
def profile_emulator(
    from_dirs: FromOpt = None,
    qnn: Annotated[list[str] | None, typer.Option("--qnn", help="Must name the QNN release onnxruntime-qnn bundles (the only one it runs).")] = None,
    out: OutOpt = None,
    top: TopOpt = 10,
    json_: JsonOpt = False,
) -> None:
    """Profile exports on the local HTP emulator: op cycles, NOT device latency; no token.

    Runs an export's own context binary; compiles again only without one."""
    from ..profiling.orchestrate import EmulatorRequest, run_on_emulator

    _run(run_on_emulator, EmulatorRequest(from_dirs=tuple(from_dirs or ()), qnn=tuple(qnn or ()), out_dir=out), top, json_)


@profile_app.command("estimate")
@guarded
def profile_estimate(
    from_dirs: FromOpt = None,
    qnn: Annotated[list[str] | None, typer.Option("--qnn", help="Local QNN toolchains to estimate with (2.47-2.51, installed on first use). Default: this environment's.")] = None,
    out: OutOpt = None,
    top: TopOpt = 10,
    json_: JsonOpt = False,
) -> None:
    """Estimate exports per block with QNN's HTP performance estimator: estimated time, NOT latency.

    For a proxy SoC of the export's HTP architecture (SA8255P for SM8550); no device, no token."""
    from ..profiling.orchestrate import EstimateRequest, run_on_estimate

    _run(run_on_estimate, EstimateRequest(from_dirs=tuple(from_dirs or ()), qnn=tuple(qnn or ()), out_dir=out), top, json_)


@profile_app.command("phone")
@guarded
def profile_phone(
    serial: Annotated[str | None, typer.Option("--serial", help="adb serial of the phone (see `adb devices`). Default: the one attached.")] = None,
    from_dirs: FromOpt = None,
    runs: RunsOpt = 100,
    qnn_sdk: Annotated[Path | None, typer.Option("--qnn-sdk", help="Your QAIRT/QNN SDK. Default: $QNN_SDK_ROOT.")] = None,
    out: OutOpt = None,
    top: TopOpt = 10,
    json_: JsonOpt = False,
) -> None:
    """Profile exports on your own phone over adb, with your SDK's qnn-net-run."""
    from ..profiling.orchestrate import PhoneRequest, run_on_phone

    _run(run_on_phone, PhoneRequest(serial=serial, from_dirs=tuple(from_dirs or ()), runs=runs, qnn_sdk=qnn_sdk,
                                    out_dir=out), top, json_)


# --- rendering ---------------------------------------------------------------------------


def _source_words(p) -> tuple[str, str]:
    """(what the numbers are, unit label): every time printed says where it came from."""
    from ..measure.schema import TimeBasis, op_times

    if p.is_device_latency:
        ot = op_times(p)
        if ot.basis is TimeBasis.DERIVED_FROM_CYCLES:
            return f"{p.source.value}, derived from device cycles x {ot.latency_label}", "us"
        return f"{p.source.value}, device per-op times", "us"
    if p.estimate is not None:
        return f"{p.estimate.label}, shares of the simulated critical path", "us"
    return "HTP emulator cycles, NOT device latency", "cycles"


def _fmt_time(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "cycles":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


PART_SHORT = {"local_representation": "local rep.", "attention": "attn."}


def _render_profile(out: Console, item: ProfiledModel, top: int) -> None:
    from rich.markup import escape as markup_escape

    from ..core.text import terminal_safe
    from ..measure.attribution import PARTS, unattributed_share
    from ..measure.schema import LatencyBasis, block_times, op_times

    p = item.profile
    words, unit = _source_words(p)
    # The device's name comes from a file or a server: neither rich markup nor escape sequences of its own.
    # An estimate names its proxy in its label below, not as a device it ran on.
    head = f"[bold]{item.label}[/]" + (
        f" on {markup_escape(terminal_safe(p.target.device, one_line=True))}" if p.estimate is None else "")
    if p.latency is not None:
        lat = p.latency
        if lat.basis is LatencyBasis.RUNS:
            head += f": median {lat.median_us:,.1f} us, min {lat.min_us:,.1f} us over {lat.run_count} runs"
            if lat.estimate_us is not None:
                head += f", AI Hub estimate {lat.estimate_us:,.1f} us (min of its runs)"
        else:
            head += f": {lat.median_us:,.1f} us ({lat.label()})"
        head += f" [dim]({p.source.value}, device latency)[/]"
        if p.load and p.load.first_load_us is not None:
            head += f"; first load {p.load.first_load_us / 1000:,.1f} ms"
    elif p.estimate is not None:
        est = p.estimate
        bounds = f" ({est.us_lower:,.0f}-{est.us_upper:,.0f})" if est.us_lower is not None and est.us_upper else ""
        head += f": {est.us:,.1f} us{bounds} [bold yellow]{est.label}, NOT device latency[/]"
    else:
        head += " [bold yellow](HTP emulator: cycles, NOT device latency)[/]"
    if item.resumed:
        head += f" [dim](resumed: {', '.join(k for k, v in item.resumed.items() if v)})[/]"
    out.print(head, highlight=False)
    if item.ran:
        out.print(Text(f"Ran {item.ran}."), highlight=False)

    blocks = block_times(p)
    parts = [part for part in PARTS if any(part in b.parts for b in blocks.values())]
    columns = [Col("block", "key"), Col("kind", "label"), Col(f"time ({unit})", "number"), Col("share", "number"),
               Col("ops", "number"), Col("compute units", "text", short="units", min_width=8)]
    columns += [Col(part.replace("_", " "), "number", short=PART_SHORT.get(part)) for part in parts]
    dram = _estimated_dram_mib(p)  # estimates: the DRAM traffic that explains a block's time
    if dram:
        columns.append(Col("DRAM MiB (r+w)", "number", short="DRAM MiB"))
    rows = []
    for b in blocks.values():
        cus = ", ".join(f"{k} {v}" for k, v in sorted(b.compute_units.items()))
        rows.append([b.block, b.kind or "-", _fmt_time(b.time, unit), f"{b.share:.1%}", str(b.op_count), cus or "-",
                     *(_fmt_time(b.parts[part], unit) if part in b.parts else "" for part in parts),
                     *([f"{dram.get(b.block, 0.0):,.2f}"] if dram else [])])
    out.print(FitTable(columns, rows, title=f"Per block ({words}; share of the summed per-op time)"))

    timed = sorted(((p.ops[i], t) for i, t in op_times(p).values), key=lambda it: it[1], reverse=True)[:top]
    if timed:
        rows = []
        for op, t in timed:
            block = op.attribution.block if op.attribution else "other"
            part = op.attribution.part if op.attribution else None
            rows.append([op.name, op.op_type, op.compute_unit.value if op.compute_unit else "-",
                         _fmt_time(t, unit), f"{block} {part.replace('_', ' ')}" if part else block])
        # The block's name stays on one line; its part may wrap below it.
        block_width = max(len(r[-1].split(" ")[0]) for r in rows)
        columns = [Col("op", "name", min_width=16), Col("type", "label"), Col("unit", "label"),
                   Col(f"time ({unit})", "number"), Col("block", "text", min_width=block_width)]
        out.print(FitTable(columns, rows, title=f"Top {len(timed)} ops ({words})"))
    out.print(f"Unattributed (block `other`): {unattributed_share(p):.1%} of the summed per-op figures.", highlight=False)
    if p.estimate is not None:
        _render_estimate_notes(out, p)
    if p.output_check is not None:
        oc = p.output_check

        def db(a) -> str:
            if a is None:
                return "n/a (no QDQ graph)"
            if a.exact:
                return "identical"
            top1 = f", top-1 agreement {a.top1_agreement:.0%}" if a.top1_agreement is not None else ""
            return (f"{a.sqnr_db:.1f} dB" if a.sqnr_db is not None else "undefined") + top1

        out.print(f"Device outputs on {oc.inputs}: SQNR vs CPU QDQ {db(oc.vs_cpu_qdq)}; vs fp32 {db(oc.vs_fp32)}.",
                  highlight=False)


def _estimated_dram_mib(p) -> dict[str, float]:
    """Block -> MiB its ops read from and wrote to DRAM in the estimator's schedule (estimates only)."""
    out: dict[str, float] = {}
    for op in p.ops:
        if op.estimate is not None:
            block = op.attribution.block if op.attribution else "other"
            out[block] = out.get(block, 0.0) + (op.estimate.dram_read_bytes + op.estimate.dram_write_bytes) / (1 << 20)
    return out


def _render_estimate_notes(out: Console, p) -> None:
    """What an estimate stands on: its proxy and clock, the span against QNN's total, the bytes."""
    est = p.estimate
    mb = 1 / (1 << 20)
    lines = [
        f"QNN {p.toolchain.qnn_version} estimate for {est.proxy_soc} (soc_model {est.proxy_soc_model}, simulating "
        f"{est.sim_base_soc or '?'} at {est.sim_core_mhz or 0:g} MHz core, {est.sim_ddr_mhz or 0:g} MHz DDR): "
        f"{est.cycles:,} cycles ({est.cycles_lower or 0:,}-{est.cycles_upper or 0:,})"
        + (", converted to us at the simulated clock (this QNN prints cycles only)" if est.us_converted else "") + ".",
        f"Critical path: the simulated schedule spans {est.span_cycles:,} cycles; per-op and per-block times are "
        f"shares of that span (not sums over parallel threads); {est.idle_cycles:,.0f} cycles idle, "
        f"{est.unmapped_cycles:,.0f} in ops QNN's name table does not name.",
        f"DMA: Input Fill {(est.input_fill_bytes or 0) * mb:,.1f} MiB, Output Spill "
        f"{(est.output_spill_bytes or 0) * mb:,.2f} MiB"
        + (f", Intermediate Spill {est.intermediate_spill_bytes * mb:,.1f} MiB" if est.intermediate_spill_bytes else "")
        + (f"; {est.missing_ops} op(s) without a cost, left out" if est.missing_ops else "")
        + ". Accelerator execution only: no I/O to the application, no RPC.",
    ]
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)


def render_run(out: Console, result: ProfileRunResult, *, top: int = 10) -> None:
    backend = {"aihub": "Qualcomm AI Hub", "adb": "phone over adb, qnn-net-run",
               "estimate": "QNN's HTP performance estimator, no device"}.get(result.backend.value, "local HTP emulator")
    out.print(f"[bold]Profiles[/] ({backend}, {result.device}) in {result.out_dir}", highlight=False)
    for item in result.profiled:
        out.print()
        _render_profile(out, item, top)
    out.print()
    files = [(kind, path) for item in result.profiled for kind, path in item.files.items()]
    if result.journal is not None:
        files.append(("jobs", result.journal))
    _render_files(out, files)
    if result.profiled:
        # Published device figures beside the emulator's structure; a device's profiles on their own.
        refs = "profiles/reference " if result.backend.value == "emulator" and Path("profiles/reference").is_dir() else ""
        next_step(out, f"swiftformer-qnn report {refs}{result.out_dir}",
                  why="tables and charts of these profiles (report.html), beside earlier ones")


def _render_files(out: Console, files: list[tuple[str, Path]]) -> None:
    """Each file on a line of its own, named within its folder (which is printed once above them),
    never folded: a path is copied whole or not at all."""
    by_folder: dict[Path, list[tuple[str, Path]]] = {}
    for kind, path in files:
        by_folder.setdefault(Path(path).parent, []).append((kind, Path(path)))
    for folder, inside in by_folder.items():
        out.print(Text.assemble(("Files written in ", "bold"), f"{folder}/"), soft_wrap=True, highlight=False)
        for kind, path in inside:
            out.print(Text(f"  {kind:8} {path.name}{'/' if path.is_dir() else ''}"), soft_wrap=True, highlight=False)


def run_summary(result: ProfileRunResult) -> dict:
    """`profile --json`: per profile its files, what its times are (source, unit) and the figures."""
    return _summary(result.backend.value, result.device, result.out_dir, result.profiled,
                    [f.one_line() for f in result.failures])


def _summary(backend: str, device: str, out_dir: Path, items: list[ProfiledModel], failed: list[str]) -> dict:
    return {"backend": backend, "device": device, "out_dir": str(out_dir),
            "profiles": [_profile_summary(item) for item in items], "failed": failed}


def _profile_summary(item: ProfiledModel) -> dict:
    from ..measure.schema import block_times

    p = item.profile
    words, unit = _source_words(p)
    return {
        "label": item.label, "files": {k: str(v) for k, v in item.files.items()}, "device": p.target.device,
        "source": p.source.value, "what": words, "unit": unit,
        "latency": p.latency.model_dump(mode="json") if p.latency is not None else None,
        "blocks": {name: {"time": b.time, "share": b.share, "ops": b.op_count} for name, b in block_times(p).items()},
    }


def render_devices(out: Console, devices: list[dict], api_url: str) -> None:
    from ..profiling.devices import known_aliases

    aliases = known_aliases()
    columns = [Col("device (use with --device)", "key", short="device"), Col("os", "label"),
               Col("chipset", "label"), Col("also accepted as", "text", short="aliases")]
    rows = [[d["name"], d["os"] or "-", d["chipset"] or "-", ", ".join(aliases.get(d["name"], [])) or "-"]
            for d in sorted(devices, key=lambda d: (d["name"], d["os"]))]
    out.print(FitTable(columns, rows, title=f"Devices on Qualcomm AI Hub ({api_url})"))


@profile_app.command("import")
@guarded
def profile_import(
    file: Annotated[Path, typer.Argument(help="The profile file: AI Hub's download_profile() JSON (or this tool's *.raw.json), or qnn-profile-viewer's text summary, CSV or standardized JSON.")],
    from_dir: Annotated[Path, typer.Option("--from", help="The export directory the profiled model came from (for per-block attribution).")],
    device: Annotated[str | None, typer.Option("--device", "-d", help="The device it ran on, where the file does not say (AI Hub device name; for qnn-profile-viewer output, your phone's name).")] = None,
    qnn: Annotated[str | None, typer.Option("--qnn", help="The QAIRT version it ran with, where the file does not say (e.g. 2.42).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where the profile goes. Default: build/profiles/<timestamp>/.")] = None,
    top: Annotated[int, typer.Option(min=1, help="How many of the slowest ops to show.")] = 10,
    json_: JsonOpt = False,
) -> None:
    """Convert a profile you already have into this tool's schema, ops attributed to blocks,
    so it joins reports and gates."""
    from ..profiling.orchestrate import import_profile

    item = import_profile(file, from_dir, device=device, qnn=qnn, out_dir=out)
    if json_:
        print_json(_summary("import", item.profile.target.device, item.files["profile"].parent, [item], []))
        return
    _render_profile(console, item, top)
    console.print()
    _render_files(console, [("profile", item.files["profile"])])
    next_step(console, f"swiftformer-qnn report {item.files['profile'].parent}",
              why="tables and charts of this profile (report.html), beside earlier ones")

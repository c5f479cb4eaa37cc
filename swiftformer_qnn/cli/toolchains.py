"""`toolchains list|install|remove|compare`: QNN versions side by side.

`render_cross_version` is shared with `export --qnn` / `compile --qnn`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..core.tables import Col
from ..core.targets import DEFAULT_SOC
from ._app import app, console, err_console, guarded, next_step

toolchains_app = typer.Typer(
    name="toolchains",
    help="QNN versions side by side: one isolated onnxruntime-qnn environment per QNN SDK.",
    no_args_is_help=True,
)
app.add_typer(toolchains_app)

VersionsArg = Annotated[
    list[str],
    typer.Argument(help="QNN versions: 2.47 2.49, 2.47,2.51, or all.", show_default=False),
]


def render_progress_event(event) -> None:
    """One status line per install/compile step, on stderr (results stay on stdout)."""
    elapsed = f" [dim]{event.elapsed_s:.1f} s[/]" if event.elapsed_s else ""
    style = {"failed": "red", "crashed": "red", "check failed": "red", "ready": "green", "done": "green", "cached": "green"}.get(event.step, "")
    step = f"[{style}]{event.step}[/]" if style else event.step
    detail = f" {event.detail}" if event.detail else ""
    err_console.print(f"{event.subject}: {step}{detail}{elapsed}", highlight=False, soft_wrap=True)


NoInstallOpt = Annotated[bool, typer.Option(
    "--no-install", help="Refuse instead of installing the QNN toolchains --qnn names that are missing.")]


def qnn_toolchains(qnn: str | None, *, no_install: bool):
    """The toolchains `--qnn` names, installed now if missing (unless `no_install`), or None."""
    if qnn is None:
        return None
    from ..toolchains import ensure_toolchains, parse_qnn_versions

    specs = parse_qnn_versions(qnn)
    ensure_toolchains(specs, install=not no_install, progress=render_progress_event)
    return specs


def _short_location(location: Path | None, root: Path) -> str:
    """Inside the root (named in the title): the directory name; elsewhere: the path, ~ for home."""
    if location is None:
        return "-"
    if location.parent == root:
        return location.name
    home = str(Path.home())
    text = str(location)
    return "~" + text[len(home):] if text.startswith(home + "/") else text


@toolchains_app.command("list")
@guarded
def list_cmd(
    verify: Annotated[bool, typer.Option(help="Also load each installed toolchain's QNN backend (a few seconds each).")] = False,
) -> None:
    """Installed and installable QNN versions, their onnxruntime-qnn / onnxruntime pins and where they live."""
    from rich.text import Text

    from ..core.tables import FitTable
    from ..toolchains import ToolchainState, list_toolchains, toolchains_root

    root = toolchains_root()
    styles = {
        ToolchainState.DEFAULT: "bold green",
        ToolchainState.READY: "green",
        ToolchainState.BROKEN: "red",
        ToolchainState.NOT_INSTALLED: "dim",
    }
    broken = []
    rows = []
    for s in list_toolchains(verify=verify):
        state = s.state.value + (" (main environment)" if s.state is ToolchainState.DEFAULT else "")
        if s.state is ToolchainState.BROKEN:
            state += f": {s.detail}"
            broken.append(s.spec.major_minor)
        rows.append([s.spec.qnn_version, s.spec.onnxruntime_qnn, s.spec.onnxruntime,
                     Text(state, style=styles[s.state]), _short_location(s.location, root)])
    columns = [Col("QNN", "key"), Col("onnxruntime-qnn", "label", short="ort-qnn"),
               Col("onnxruntime", "label", short="ort"), Col("state", "text", min_width=13),
               Col("location", "name", min_width=16)]
    # The root goes on a line of its own, not into the table's title, which is as narrow as the table.
    console.print(f"QNN toolchains in {root}", highlight=False)
    table = FitTable(columns, rows)
    console.print(table)
    if broken:
        err_console.print(f"Reinstall the broken ones: swiftformer-qnn toolchains install {' '.join(broken)} --force")
    next_step(console, "swiftformer-qnn export --variant l1 --qnn all",
              why="compile with every QNN version side by side (installs the missing ones first)")


@toolchains_app.command("install")
@guarded
def install_cmd(
    versions: VersionsArg,
    force: Annotated[bool, typer.Option(help="Reinstall toolchains that are already ready.")] = False,
    installer: Annotated[str, typer.Option(help="auto (uv if installed, else venv + pip), uv, or pip.")] = "auto",
) -> None:
    """Install QNN toolchains (uses pip's configured indexes and find-links)."""
    from ..toolchains import install_toolchains, parse_qnn_versions

    specs = parse_qnn_versions(versions)
    started = time.perf_counter()
    statuses = install_toolchains(
        specs, installer=installer, force=force, progress=render_progress_event
    )
    for s in statuses:
        console.print(f"QNN {s.spec.qnn_version}: {s.state.value} {s.location or ''}", highlight=False, soft_wrap=True)
    err_console.print(f"[dim]{time.perf_counter() - started:.1f} s[/]")
    versions = ",".join(s.spec.major_minor for s in statuses)
    next_step(console, f"swiftformer-qnn export --variant l1 --qnn {versions}",
              why="compile with these QNN versions side by side")


@toolchains_app.command("remove")
@guarded
def remove_cmd(versions: VersionsArg) -> None:
    """Delete installed QNN toolchains (the main environment's own one stays)."""
    from ..toolchains import main_environment_spec, parse_qnn_versions, remove_toolchain

    specs = parse_qnn_versions(versions)
    main = main_environment_spec()
    explicit_all = any(v.strip().lower() == "all" for v in versions)
    for spec in specs:
        if spec == main and explicit_all:
            continue  # `remove all` means every removable one
        removed = remove_toolchain(spec)
        console.print(f"QNN {spec.qnn_version}: " + (f"removed {removed}" if removed else "not installed"),
                      highlight=False, soft_wrap=True)
    next_step(console, "swiftformer-qnn cache", why="what the cache and the remaining toolchains take on disk")


# How each column of the cross-version table may adapt to a narrow terminal (others: numbers).
CROSS_VERSION_COLUMNS = {
    "QNN": Col("QNN", "key"),
    "onnxruntime-qnn": Col("onnxruntime-qnn", "label", short="ort-qnn"),
    "status": Col("status", "text", min_width=12),
    "compile (s)": Col("compile (s)", "number", short="compile s"),
    "context binary (MB)": Col("context binary (MB)", "number", short="binary MB"),
    "op types vs previous": Col("op types vs previous", "text", short="op types vs prev.", min_width=20),
    "max abs diff": Col("max abs diff", "number", short="max |diff|"),
}


def render_cross_version(report, directory: Path | None = None) -> None:
    """The cross-version comparison table (used by `toolchains compare`, `export --qnn`, `compile --qnn`)."""
    from rich.text import Text

    from ..core.tables import FitTable
    from .versions_table import NOT_EMULATED, TABLE_COLUMNS, table_rows

    title = f"{report.model}: one compile per QNN version" + (f" ({directory})" if directory else "")
    rows = []
    for row in table_rows(report):
        status = row.get("status", "")
        if not status.startswith("ok"):
            row = {**row, "status": Text(status, style="red")}
        rows.append([row.get(c, "") for c in TABLE_COLUMNS])
    console.print(FitTable([CROSS_VERSION_COLUMNS.get(c, Col(c, "number")) for c in TABLE_COLUMNS], rows,
                           title=title, caption=report.note))
    if not report.emulated:
        console.print(NOT_EMULATED, highlight=False)
    for d in report.diffs:
        if d.ops_added or d.ops_removed:
            console.print(
                f"{d.before} -> {d.after}: {len(d.ops_added)} HTP op name(s) added, {len(d.ops_removed)} removed"
                + (f", e.g. +{d.ops_added[0]}  -{d.ops_removed[0]}" if d.ops_added and d.ops_removed else ""),
                highlight=False,
                soft_wrap=True,
            )
    if directory is not None:
        next_step(console, f"swiftformer-qnn gate structure --baseline BASELINE --candidate {directory}",
                  why="gate these compiles against a structural baseline (profiles/baselines/compile-*)")


@toolchains_app.command("compare")
@guarded
def compare_cmd(
    model: Annotated[Path, typer.Argument(help="A QDQ ONNX model (or a float one with --fp16).", show_default=False)],
    qnn: Annotated[str, typer.Option(help="QNN versions to compile with: 2.47,2.49,2.51 or all.")] = "all",
    output_dir: Annotated[Path | None, typer.Option(help="Where to write qnn-<version>/ and cross_version.json. Default: <model stem>.qnn-versions next to the model.")] = None,
    soc: Annotated[str, typer.Option(help=f"Target Snapdragon ({DEFAULT_SOC} = 8 Gen 2, default).")] = DEFAULT_SOC,
    fp16: Annotated[bool, typer.Option(help="Compile a float model in the HTP's fp16 mode.")] = False,
    jobs: Annotated[int | None, typer.Option(min=1, max=8, help="Parallel compiles, 1-8. Default: every version at once (up to 8); the OS shares the cores.")] = None,
    emulate: Annotated[bool, typer.Option(help="Also run each compiled graph once on the HTP emulator and compare its outputs with the CPU EP's (op counts and types come from the op trace either way).")] = True,
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown instead.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compile again even if a result is cached.")] = False,
    no_install: NoInstallOpt = False,
) -> None:
    """Compile one model with several QNN versions in parallel and compare what each produced."""
    check_compared_model(model, soc)
    specs = qnn_toolchains(qnn, no_install=no_install)
    compare_versions(model, specs, soc=soc, fp16=fp16, output_dir=output_dir, force=force, use_cache=not no_cache,
                     emulate=emulate, jobs=jobs, markdown=markdown)


def check_compared_model(model: Path, soc: str) -> None:
    """The model and the SoC of a comparison across QNN versions, checked before its toolchains:
    a mistyped path must not wait for (or hide behind) the install of every QNN version."""
    from ..core.targets import get_soc
    from ..htp.sweep import require_model_file

    require_model_file(model)  # the graph itself is read once, by the comparison
    get_soc(soc)


def compare_versions(model: Path, specs, *, soc: str, fp16: bool, output_dir: Path | None, force: bool,
                     use_cache: bool = True, emulate: bool = True, jobs: int | None = None,
                     markdown: bool = False) -> None:
    """One model compiled with each QNN toolchain in `specs`, compared, rendered: `toolchains
    compare` and `compile --qnn` are this one path."""
    from ..core.targets import get_soc
    from ..htp.session import HtpTarget
    from ..htp.sweep import compile_versions_into
    from .versions_table import render_markdown

    chip = get_soc(soc)
    target = HtpTarget(soc_model=chip.soc_model, htp_arch=chip.htp_arch, fp16=fp16)
    out = output_dir or model.with_name(f"{model.stem}.qnn-versions")
    report = compile_versions_into(
        model, specs, out, force=force, use_cache=use_cache,
        target=target, emulate=emulate, jobs=jobs, progress=render_progress_event,
    )
    if markdown:
        console.print(render_markdown(report), markup=False, highlight=False, soft_wrap=True)
    else:
        render_cross_version(report, out)
    exit_if_failed(report)


def exit_if_failed(report) -> None:
    """Exit 1 when a QNN version did not compile or failed its emulator check (every version's
    result is already written)."""
    n = len(report.versions)
    if report.failed:
        err_console.print(f"{len(report.failed)} of {n} QNN version(s) did not compile: "
                          + ", ".join(v.qnn_version for v in report.failed))
    if report.emulator_failed:
        err_console.print(f"{len(report.emulator_failed)} of {n} QNN version(s) compiled but failed the emulator "
                          "check: " + ", ".join(v.qnn_version for v in report.emulator_failed))
    if report.failed or report.emulator_failed:
        raise typer.Exit(1)

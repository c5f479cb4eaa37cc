"""Renderers of a gate verdict for CI: Markdown summary, JUnit XML, JSON. They only read the verdict."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from ..core.atomic import unwritable, write_text_atomic
from ..core.errors import OutputDirError
from ..core.tables import TableSpec, table_md
from ..core.text import markdown_code, markdown_safe
from ..gate.verdict import GateVerdict, Method, MetricResult, MetricStatus

REPORT_NAMES = {"markdown": "gate.md", "junit": "gate.junit.xml", "json": "gate.json"}

_MARK = {
    MetricStatus.REGRESSION: "❌",
    MetricStatus.IMPROVEMENT: "🚀",
    MetricStatus.WITHIN_NOISE: "〰️",
    MetricStatus.UNCHANGED: "✅",
    MetricStatus.MISSING_IN_CANDIDATE: "⚠️",
    MetricStatus.MISSING_IN_BASELINE: "➕",
}


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if unit in ("ops", "bytes"):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def fmt_change(r: MetricResult) -> str:
    if r.change is None:
        return "-"
    if r.unit == "fraction":
        return f"{r.change * 100:+.1f} pt"
    rel = f"{r.relative_change * 100:+.1f}%" if r.relative_change is not None else "n/a"
    absolute = f"{int(r.change):+,} {r.unit}" if r.unit in ("ops", "bytes") else f"{r.change:+,.1f} {r.unit}"
    return f"{rel} ({absolute})"


def fmt_interval(r: MetricResult) -> str:
    if r.interval is None:
        if r.method is Method.DETERMINISTIC:
            return "deterministic"
        return "no spread" if r.method is Method.THRESHOLD_ONLY else "-"
    return f"{r.interval.low * 100:+.1f}% .. {r.interval.high * 100:+.1f}%"


def fmt_confidence(r: MetricResult) -> str:
    """How sure the gate is that the candidate is slower (for a latency metric with spread)."""
    return "-" if r.prob_slower is None else f"{r.prob_slower * 100:.1f}%"


def headline(v: GateVerdict) -> str:
    outcome = "passed" if v.passed else "FAILED"
    counts = [f"{len(v.regressions)} regression{'s' * (len(v.regressions) != 1)}",
              f"{len(v.improvements)} improvement{'s' * (len(v.improvements) != 1)}"]
    if v.missing:
        counts.append(f"{len(v.missing)} missing on one side")
    what = "latency" if v.mode == "profile" else "compile structure"
    return f"SwiftFormer {what} gate {outcome}: {', '.join(counts)}"


def describe_sides(v: GateVerdict, esc: Callable[[str], str] = str) -> str:
    """The two sides in one sentence; `esc` escapes what came from the profiles (device, names)
    for the format it goes into."""
    b, c = _escaped(v.baseline, esc), _escaped(v.candidate, esc)
    if v.mode == "structure":
        what = " ".join(str(x) for x in (b.variant, b.precision) if x)
        shape = "x".join(map(str, b.input_shape or []))
        s = v.rules.structure
        return (f"Compile structure{' of ' + what if what else ''}{' ' + shape if shape else ''}: "
                f"baseline QNN {', '.join(b.qnn_versions)}; candidate QNN {', '.join(c.qnn_versions)} "
                f"({c.profiles} compile{'s' * (c.profiles != 1)}), each compiled with CPU fallback disabled; "
                f"limits: HTP op count and context binary growth at most "
                f"{s.max_op_count_growth * 100:g}% / {s.max_context_growth * 100:g}%.")
    qnn = f"QNN {', '.join(b.qnn_versions) or '?'} -> {', '.join(c.qnn_versions) or '?'}"
    shape = "x".join(map(str, c.input_shape or []))
    r = v.rules
    if b.source == c.source == "estimate":
        return (f"{c.variant} {c.precision} {shape}, {c.device} (source `estimate`: estimated, not device "
                f"latency); {qnn}; one deterministic estimate per side, no noise model; "
                f"threshold {r.relative_threshold * 100:g}%, floor {r.absolute_floor_us:g} us.")
    return (
        f"{c.variant} {c.precision} {shape} on {c.device}, latency source `{c.source}`"
        + (f" (baseline `{b.source}`)" if b.source != c.source else "")
        + f"; {qnn}; {r.statistic} of {b.runs} baseline runs ({b.profiles} profile{'s' * (b.profiles != 1)}) "
        f"vs {c.runs} candidate runs ({c.profiles} profile{'s' * (c.profiles != 1)}); "
        f"threshold {r.relative_threshold * 100:g}%, floor {r.absolute_floor_us:g} us, "
        f"{r.confidence * 100:g}% two-stage bootstrap interval."
    )


def _escaped(side, esc: Callable[[str], str]):
    if esc is str:
        return side
    fields = ("variant", "precision", "device", "source")
    return side.model_copy(update={**{k: esc(getattr(side, k)) for k in fields if getattr(side, k, None) is not None},
                                   "qnn_versions": [esc(q) for q in side.qnn_versions]})


def _columns(v: GateVerdict) -> list[str]:
    if v.mode == "structure":
        return ["", "metric", "baseline", "candidate", "change", "status"]
    b, c = markdown_safe(v.baseline.source or ""), markdown_safe(v.candidate.source or "")
    return ["", "metric", f"baseline ({b}, us)", f"candidate ({c}, us)", "change",
            f"{v.rules.confidence * 100:g}% interval", "P(slower)", "status"]


def _row(v: GateVerdict, r: MetricResult) -> list[str]:
    row = [_MARK[r.status], markdown_code(r.metric), fmt_value(r.baseline, r.unit), fmt_value(r.candidate, r.unit),
           fmt_change(r)]
    if v.mode == "profile":
        row += [fmt_interval(r), fmt_confidence(r)]
    return row + [r.status.value + (" (fails)" if r.fails and r.status.is_missing else "")]


def _table(v: GateVerdict, results: list[MetricResult]) -> list[str]:
    cols = _columns(v)
    spec = TableSpec(title="", headers=[(c,) for c in cols], rows=[_row(v, r) for r in results],
                     numeric_from=len(cols))
    return table_md(spec, title=False, escape=lambda cell: cell).rstrip("\n").split("\n")  # cells are Markdown


def render_markdown(v: GateVerdict) -> str:
    # Device, source and metric names come from the profiles: escaped, as is every sentence that names them.
    lines = [f"## {'✅' if v.passed else '❌'} {headline(v)}", "", describe_sides(v, markdown_safe), ""]
    notable = [r for r in v.results if r.status is not MetricStatus.UNCHANGED]
    if notable:
        # Failures first: the reader came for the block that regressed.
        notable.sort(key=lambda r: (not r.fails, r.status is not MetricStatus.IMPROVEMENT))
        lines += _table(v, notable) + [""]
        lines += [f"- {markdown_safe(r.reason)}" for r in notable if r.fails or r.status is MetricStatus.IMPROVEMENT]
        lines.append("")
    else:
        lines += ["No metric changed beyond its limits.", ""]
    if v.notes:
        lines += ["**Notes**", ""] + [f"- {markdown_safe(n)}" for n in v.notes] + [""]
    lines += [f"<details><summary>All {len(v.results)} metrics</summary>", ""]
    lines += _table(v, v.results) + ["", "</details>", ""]
    return "\n".join(lines)


def render_junit(v: GateVerdict) -> str:
    """One test case per gated metric: a regression is a failure, a metric missing on one side is
    skipped (or a failure under fail_on_missing), everything else passes with its reason as output."""
    suite_name = f"swiftformer-qnn gate ({v.mode})"
    subject = (f"{v.candidate.variant}-{v.candidate.precision}" if v.mode == "profile" else "compile")
    failures = sum(r.fails for r in v.results)
    skipped = sum(r.status.is_missing and not r.fails for r in v.results)
    root = ET.Element("testsuites", name="swiftformer-qnn gate", tests=str(len(v.results)),
                      failures=str(failures), errors="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(v.results)), failures=str(failures),
                          errors="0", skipped=str(skipped), timestamp=v.created_at.isoformat())
    props = ET.SubElement(suite, "properties")
    for name, value in (("summary", describe_sides(v)), ("baseline", ", ".join(v.baseline.paths)),
                        ("candidate", ", ".join(v.candidate.paths))):
        ET.SubElement(props, "property", name=name, value=value)
    for r in v.results:
        case = ET.SubElement(suite, "testcase", classname=f"swiftformer_qnn.gate.{subject}", name=r.metric, time="0")
        detail = r.reason
        if r.interval is not None:
            detail += f" P(candidate slower) = {fmt_confidence(r)}."
        if v.mode == "profile" and r.unit == "us":
            detail += f" Latency source: {v.candidate.source}."
        if r.fails:
            ET.SubElement(case, "failure", message=r.reason, type=r.status.value).text = detail
        elif r.status.is_missing:
            ET.SubElement(case, "skipped", message=r.reason)
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_json(v: GateVerdict) -> str:
    return v.model_dump_json(indent=2) + "\n"


def write_outputs(
    v: GateVerdict,
    *,
    report_dir: Path | None = None,
    markdown: Path | None = None,
    junit: Path | None = None,
    json_path: Path | None = None,
    step_summary: Path | None = None,
) -> list[Path]:
    """Write the requested outputs; `report_dir` gets all three. The step summary is appended to,
    as GitHub Actions expects of $GITHUB_STEP_SUMMARY. Returns the paths written."""
    targets: dict[str, list[Path]] = {"markdown": [], "junit": [], "json": []}
    if report_dir is not None:
        for k, name in REPORT_NAMES.items():
            targets[k].append(Path(report_dir) / name)
    for k, p in (("markdown", markdown), ("junit", junit), ("json", json_path)):
        if p is not None:
            targets[k].append(Path(p))
    render = {"markdown": render_markdown, "junit": render_junit, "json": render_json}
    # Every place checked before any is written: a bad --json must not leave the others half done.
    places = [(p, False) for paths in targets.values() for p in paths]
    for p, appended in [*places, *([(Path(step_summary), True)] if step_summary else [])]:
        why = _unwritable(p, appended=appended)
        if why:
            raise OutputDirError(f"Cannot write the gate report {p}: {why}.",
                                 hint="Give each report option a file path in a writable directory; nothing was written.")
    written = []
    p = None
    try:
        for k, paths in targets.items():
            if not paths:
                continue
            text = render[k](v)
            for p in paths:
                p.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(p, text)
                written.append(p)
        if step_summary is not None:
            p = Path(step_summary)
            with open(p, "a", encoding="utf-8") as f:
                f.write(render_markdown(v) + "\n")
            written.append(p)
    except OSError as exc:
        raise OutputDirError(f"Cannot write the gate report {p}: {exc.strerror or exc}.",
                             hint="Check the free space and permissions there.") from None
    return written


def _unwritable(path: Path, *, appended: bool = False) -> str | None:
    """Why a report cannot be written at `path` (None: it can, as far as can be told before writing).
    `appended`: a file added to where it is (the step summary), in a folder that must exist."""
    if path.is_dir():
        return "it is a directory"
    if appended:
        if path.exists():
            return None if os.access(path, os.W_OK) else "it is not writable"
        return None if path.parent.is_dir() else f"{path.parent} is not a directory"
    return unwritable(path)

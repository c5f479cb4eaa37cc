"""Every import inside the package names a module and a name that exist.

Most of the CLI's imports sit inside functions (torch and onnxruntime load only when a command
needs them), so a module moved or renamed breaks them only when that command runs: the redesign
left `profile --json` importing `profiling.schema`, gone to `measure.schema`, and it exited 3."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "swiftformer_qnn"


def _imports(path: Path):
    """(line, module, names) of every `from ... import ...` of the package in `path`, at any depth."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # a module's package; an __init__'s own package
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(package[: len(package) - (node.level - 1)])
            module = ".".join(base + ([node.module] if node.module else []))
        elif node.module and node.module.split(".")[0] == "swiftformer_qnn":
            module = node.module
        else:
            continue
        yield node.lineno, module, [a.name for a in node.names]


def test_every_import_in_the_package_resolves():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module, names in _imports(path):
            try:
                found = importlib.import_module(module)
            except ImportError as exc:
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} ({exc})")
                continue
            for name in names:
                if not hasattr(found, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        broken.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} has no {name}")
    assert not broken, "\n".join(broken)


def test_an_export_without_mixed_precision_never_loads_the_chart_library(tmp_path):
    """Only a mixed export draws a chart: loading matplotlib took about 1 s at the end of every
    export when the summary imported the report package to check for a mixed result."""
    import subprocess
    import sys

    code = (
        "import atexit, sys; from swiftformer_qnn.cli import main\n"
        f"sys.argv = ['swiftformer-qnn', 'export', '--variant', 'encoder', '--resolution', '16', '--until', 'onnx',"
        f" '--calibration-count', '4', '--heldout-count', '2', '--output-dir', {str(tmp_path / 'out')!r}]\n"
        # main ends the process; its exit handlers run first (core.teardown).
        "atexit.register(lambda: print('matplotlib' in sys.modules, file=sys.stderr))\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out" / "manifest.json").is_file()

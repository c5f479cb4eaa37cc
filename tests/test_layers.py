"""The package's layers point one way and nothing imports in a circle: `lint-imports` checks the
contracts in pyproject.toml (a layers contract naming every package, and no cycles between the
modules or subpackages of any package)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import swiftformer_qnn

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_the_layers_name_every_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    root = Path(swiftformer_qnn.__file__).parent
    packages = {p.parent.name for p in root.glob("*/__init__.py")} - {"calibration"}
    assert named == packages
    assert layers["exhaustive"] is True  # and lint-imports refuses a package left out


def test_the_architecture_page_draws_the_orchestrators_stages():
    """docs/architecture.md's stage chain and stage table are the orchestrator's stages, in order."""
    import re

    from swiftformer_qnn.pipeline.orchestrator import STAGE_TITLES, STAGES_UNTIL
    from swiftformer_qnn.pipeline.requests import Until
    from swiftformer_qnn.pipeline.stage_results import STAGE_RESULTS

    page = (REPO / "docs" / "architecture.md").read_text()
    (chain,) = [line for line in page.splitlines() if re.match(r"^\s*export ─>", line)]
    stages = STAGES_UNTIL[Until.VERIFY]
    assert tuple(s.strip() for s in chain.split("─>")) == stages
    # Every stage any export runs (--precision mixed adds two before quantize), in order.
    every_stage = tuple(STAGE_RESULTS)
    assert tuple(STAGE_TITLES) == every_stage
    assert tuple(s for s in every_stage if s in stages) == stages
    rows = re.findall(r"^\| (\w+) \| `([\w/]+)\.(\w+)`[^|]*\| [^|]* \| `(\w+)` \|$", page, re.M)
    assert [r[0] for r in rows] == list(every_stage)
    for stage, module, function, results in rows:
        assert (REPO / "swiftformer_qnn" / f"{module}.py").is_file(), module
        assert f"def {function}(" in (REPO / "swiftformer_qnn" / f"{module}.py").read_text(), function
        assert STAGE_RESULTS[stage].__name__ == results

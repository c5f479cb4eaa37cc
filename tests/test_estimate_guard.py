"""Issue 22's guard (slow tier): SwiftFormer-L1 at 224 and the encoder block 1x96x64x64 (w8a8,
float and native I/O) are estimated no slower than the committed figures.

The figures are QNN's estimator's (SA8255P proxy for SM8550, deterministic cycles), committed by
`tests/bench/estimate_breakdown.py` under `profiles/reports/estimate-breakdown/`; this test makes
the same exports (the tool's own pipeline, realistic random weights, the shipped photographs),
estimates them the same way and compares cycles. A graph or compile option change that makes
either slower fails here; one that makes them faster should be committed with new figures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from swiftformer_qnn.htp.session import HtpTarget, qnn_sdk_version
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.compile import native_io_model

REPORTS = Path(__file__).resolve().parents[1] / "profiles" / "reports" / "estimate-breakdown"
RUNS = {"float-nchw": "after.json", "uint8-nhwc": "after-native-io.json"}


def _bench():
    path = Path(__file__).resolve().parent / "bench" / "estimate_breakdown.py"
    spec = importlib.util.spec_from_file_location("estimate_breakdown", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed(io: str, variant: str) -> dict:
    run = json.loads((REPORTS / RUNS[io]).read_text())
    return next(m for m in run["models"] if m["variant"] == variant)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("estimate-guard")
    return {v: run_export(ExportRequest(variant=v, until=Until.QUANTIZE, output_dir=out / v)) for v in ("l1", "encoder")}


@pytest.mark.slow
@pytest.mark.parametrize("io", list(RUNS))
@pytest.mark.parametrize("variant", ["l1", "encoder"])
def test_estimated_no_slower_than_committed(exports, variant, io, tmp_path):
    committed = _committed(io, variant)
    assert committed["qnn_version"] == qnn_sdk_version(), "figures committed with another QNN: re-run the bench"
    qdq = exports[variant].artifact("quantize", "model.qdq.onnx")
    if io == "uint8-nhwc":
        qdq, _ = native_io_model(qdq, tmp_path)
    bench = _bench()
    options = {k: v for k, v in HtpTarget().provider_options().items() if k not in ("backend_path", "soc_model", "htp_arch")}
    bench.run_worker(sys.executable, qdq, tmp_path / "estimate", "detailed", options, names=False)
    fresh = bench.graph_totals(tmp_path / "estimate" / "estimate.csv")
    print(f"{variant} {io}: estimated {fresh['cycles']} cycles ({fresh.get('us')} us), committed {committed['totals']['cycles']}")
    assert fresh["cycles"] <= committed["totals"]["cycles"]
    assert fresh.get("missing_ops", 0) == 0

"""QNN's HTP performance estimator (htp/estimate.py) on outputs the real library writes in the test.

Every fixture here is made by onnxruntime-qnn during the test: a real QDQ SwiftFormer graph,
compiled for the estimator's proxy SoC, whose CSV rows, binary log (with the embedded trace)
and schematic the readers parse. Nothing is hand-written.
"""

from __future__ import annotations

import csv
import re
import tempfile

import numpy as np
import pytest
from qdq_fixtures import input_name, make_qdq_model

from swiftformer_qnn.core.errors import ProfileError, UsageError
from swiftformer_qnn.htp.compile import compile_model
from swiftformer_qnn.htp.estimate import (
    ESTIMATE_CSV,
    ESTIMATE_LOG,
    ESTIMATOR_SOCS,
    critical_path_shares,
    estimate_label,
    estimate_model,
    estimator_soc,
    read_graph_estimate,
    trace_from_qnn_log,
    trace_slices,
)
from swiftformer_qnn.htp.record import CompileSpec
from swiftformer_qnn.htp.session import HtpTarget, htp_session, qnn_sdk_version

RESOLUTION = 32  # the standalone block at 32x32: a ~1 s compile


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    return make_qdq_model("encoder", RESOLUTION, tmp_path_factory.mktemp("enc-qdq"))


@pytest.fixture(scope="module")
def estimates(qdq, tmp_path_factory):
    """Two estimates of the same graph, each its own compile in its own worker."""
    return [estimate_model(qdq, tmp_path_factory.mktemp(f"estimate-{i}")) for i in range(2)], tmp_path_factory


def test_graph_rows_of_the_real_csv(estimates):
    (est, _), _ = estimates
    assert est.qnn_version == qnn_sdk_version()
    assert (est.proxy_soc, est.soc_model, est.htp_arch) == ("SA8255P", 52, 73)
    assert est.cycles_lower < est.cycles < est.cycles_upper
    # QNN 2.50+ prints microseconds itself; they are the cycles at the simulated core clock.
    assert est.simulated.core_mhz == pytest.approx(1497.6)
    assert est.simulated.sim_base_soc == "Kailua"
    assert est.reported_us is not None and not est.us_converted
    assert est.us == pytest.approx(est.cycles / est.simulated.core_mhz, abs=1.0)
    assert est.us_lower <= est.us <= est.us_upper
    assert est.input_fill_bytes and est.output_spill_bytes
    assert est.label == "estimated (QNN Hextimate, SA8255P proxy for SM8550)"


def test_span_of_the_trace_is_the_graph_estimate(estimates):
    (est, _), _ = estimates
    # The simulated schedule's span is QNN's total (a few cycles of rounding apart); summing
    # slices over parallel threads would be far more.
    assert abs(est.span_cycles - est.cycles) <= max(10, est.cycles * 1e-4)
    assert sum(op.busy_cycles for op in est.ops) > 1.5 * est.span_cycles
    # Shares of the span add up to it, with the idle cycles.
    assert sum(op.span_cycles for op in est.ops) + est.idle_cycles == pytest.approx(est.span_cycles, abs=0.01)


def test_every_traced_op_is_named_and_traced_to_onnx(estimates):
    (est, _), _ = estimates
    assert est.unmapped_cycles == 0 and all(op.named for op in est.ops)
    for op in est.ops:
        if op.name in ("Input", "Output"):  # the HTP graph's own I/O ops
            continue
        assert op.onnx_nodes, op.name
        assert op.qnn_type, op.name
    assert any(op.qnn_type == "Conv2d" and "q::ConvLayer" in " ".join(op.kernels) for op in est.ops)
    # DRAM traffic of the ops adds up to what the DMA engine moved.
    assert sum(op.dram_read_bytes for op in est.ops) == est.dma_read_bytes


def test_two_compiles_estimate_the_same(estimates):
    (a, b), _ = estimates
    assert (a.cycles, a.cycles_lower, a.cycles_upper, a.span_cycles) == (b.cycles, b.cycles_lower, b.cycles_upper,
                                                                          b.span_cycles)
    assert [(o.op_id, o.name, o.span_cycles) for o in a.ops] == [(o.op_id, o.name, o.span_cycles) for o in b.ops]


def test_op_ids_are_the_emulators_op_ids(estimates, qdq, tmp_path):
    """The low 32 bits of a trace slice's id are the QNN op id: the emulator's detailed profile of
    the same graph names each op `<name>:OpId_N`, and the estimate gives that op the same N."""
    (est, _), _ = estimates
    csv_path = tmp_path / "emulator.csv"
    session = htp_session(qdq, HtpTarget(soc_model=52, htp_arch=73), profile_csv=csv_path)
    x = np.random.default_rng(0).standard_normal((1, 96, RESOLUTION, RESOLUTION)).astype(np.float32)
    session.run(None, {input_name("encoder"): x})
    del session
    with csv_path.open(newline="") as f:
        ids = {m.group(1): int(m.group(2)) for row in csv.DictReader(f)
               if (m := re.match(r"^(.*):OpId_(\d+) \(cycles\)$", row["Event Identifier"]))}
    by_name = {op.name: op.op_id for op in est.ops}
    shared = set(ids) & set(by_name)
    assert len(shared) >= len(est.ops) - 2  # all but the graph's Input/Output ops, named apart
    # QNN numbers ops per process: the estimate's worker starts at its own first id, this
    # process at one past every graph it built before (earlier tests' sessions). The same op
    # is the same number of ops after the graph's first.
    first_emulated, first_estimated = min(ids[n] for n in shared), min(by_name[n] for n in shared)
    assert {n: ids[n] - first_emulated for n in shared} == {n: by_name[n] - first_estimated for n in shared}


def test_readers_on_the_real_files(estimates):
    (est, _), factory = estimates
    work = next(p for p in factory.getbasetemp().iterdir() if p.name.startswith("estimate-0"))
    rows = read_graph_estimate(work / ESTIMATE_CSV)
    assert rows["cycles"] == est.cycles and rows["input_fill_bytes"] == est.input_fill_bytes
    trace = trace_from_qnn_log(work / ESTIMATE_LOG)
    assert trace["Hextimate Configuration"]["soc_type"] == "SA8255"
    shares, idle, span = critical_path_shares(trace_slices(trace))
    assert span == est.span_cycles and sum(shares.values()) + idle == pytest.approx(span)


def test_a_phone_soc_gets_no_estimate_from_qnn(qdq, tmp_path, monkeypatch):
    """SM8550 itself has no estimator in this QNN: the same profiling compile writes no estimate
    rows, and the reader says so instead of returning zeros."""
    monkeypatch.chdir(tmp_path)  # QNN writes its schematic into the working directory
    compile_model(CompileSpec(model=qdq, out_dir=tmp_path, target=HtpTarget(soc_model=43, htp_arch=73),
                                 profile_csv=tmp_path / "p.csv", profiling_level="optrace"))
    with pytest.raises(ProfileError, match="QNN made no estimate"):
        read_graph_estimate(tmp_path / "p.csv")


def test_a_model_qnn_cannot_read_is_one_line_and_the_workers_log_stays(tmp_path, monkeypatch):
    from swiftformer_qnn.core.errors import SwiftFormerQnnError
    from swiftformer_qnn.htp import workers

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the worker's own folder goes here
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an ONNX model")
    workers.discard_ahead("estimate")  # one an earlier test left waiting would have its folder elsewhere
    workers.start_ahead("estimate")  # as an export's quantize stage starts it
    with pytest.raises(SwiftFormerQnnError, match=r"QNN (\S+|of this environment) made no estimate of bad.onnx: "
                                                  r".*Protobuf parsing failed") as info:
        estimate_model(bad, tmp_path / "work")
    assert "\n" not in info.value.one_line()
    assert (tmp_path / "work" / "estimate_worker.log").is_file()  # beside QNN's raw outputs, as before
    assert not workers._ahead.get("estimate")  # taken, and ended with its folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "work"]


@pytest.mark.parametrize("arch", [75, 79, 69])
def test_no_estimator_soc_is_refused_before_any_work(arch, tmp_path):
    with pytest.raises(UsageError, match=f"No SoC of HTP v{arch} has QNN's performance estimator"):
        estimate_model(tmp_path / "missing.onnx", tmp_path / "work", htp_arch=arch)
    assert not (tmp_path / "work").exists()


def test_proxies():
    assert estimator_soc(73).name == "SA8255P" and estimator_soc(73, 77).name == "QCS9100"
    assert estimator_soc(68).soc_model == 62 and estimator_soc(81).soc_model == 72
    with pytest.raises(UsageError, match="soc_model 43 is no estimator SoC"):
        estimator_soc(73, 43)
    assert set(ESTIMATOR_SOCS) == {68, 73, 81}
    assert estimate_label("SA8540", None, 68) == "estimated (QNN Hextimate, SA8540 proxy for HTP v68)"

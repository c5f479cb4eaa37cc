"""The fault battery, second round: an export directory is the tool's own only for the files its
manifest lists; nothing read back from the cache or an export is used unless its record vouches
for it (path inside its directory, size and SHA-256 as recorded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fault_checks import dead_pid, one_error_line
from pydantic import ValidationError
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core import output_dir as od
from swiftformer_qnn.core.atomic import sha256_file
from swiftformer_qnn.core.cache import FileRecord
from swiftformer_qnn.core.errors import OutputDirError
from swiftformer_qnn.pipeline.artifacts import StageCache, read_manifest

runner = CliRunner()
ONNX_ONLY = ["--variant", "encoder", "--resolution", "16", "--calibration-count", "4", "--heldout-count", "2",
             "--until", "onnx"]


def _export(out: Path, *extra: str):
    res = runner.invoke(app, ["export", *ONNX_ONLY, *extra, "--output-dir", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    return res


def _damage(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)


# --------------------------------------------------------------------------- 1. a repair keeps the user's files


def test_a_repair_rerun_keeps_every_file_the_manifest_does_not_list(tmp_path):
    out = tmp_path / "enc"
    _export(out)
    mine = {
        "notes.md": b"# my notes\n",
        "profiles/xs-emulator.profile.json": b'{"mine": true}',
        "diagnose/report.md": b"the tool's diagnose output, not in the export's manifest",
        ".hidden": b"dotfile",
    }
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    (out / "empty").mkdir()
    os.symlink("notes.md", out / "link-to-notes")
    _damage(out / "model.sim.onnx")

    res = _export(out)
    assert read_manifest(out) is not None
    for rel, data in mine.items():
        assert (out / rel).read_bytes() == data, rel
    assert (out / "empty").is_dir() and os.readlink(out / "link-to-notes") == "notes.md"
    said = " ".join(res.output.split())
    assert "model.sim.onnx was changed" in said and "rebuilt" in said
    assert "Kept 6 files" in said and "diagnose/report.md" in said
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_forced_replace_of_another_request_keeps_the_users_files(tmp_path):
    out = tmp_path / "enc"
    _export(out)
    (out / "my.profile.json").write_text("{}")
    _export(out, "--heldout-count", "3", "--force")
    assert read_manifest(out).request.heldout.count == 3
    assert (out / "my.profile.json").read_text() == "{}"


def test_a_user_file_where_the_new_output_writes_is_refused_by_name(tmp_path):
    """The new output writes a path the old manifest did not list and the user's file holds."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    (target / "result.bin").write_text("the user's, at a path the new output writes")
    owned = frozenset({"manifest.json"})

    def inspect(_d):
        return od.Found(od.Occupant.SAME, owned=owned)

    with pytest.raises(OutputDirError, match=r"result\.bin.*lose"):
        with od.staged_output_dir(target, force=False, inspect=inspect) as work:
            (work / "manifest.json").write_text("new")
            (work / "result.bin").write_text("new")
    assert (target / "result.bin").read_text().startswith("the user's")
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_carried_files_survive_a_crash_before_the_swap(tmp_path, monkeypatch):
    """The user's files are linked into the new directory, not moved: a crash between the link
    and the swap leaves them where they were, and the next run's cleanup of the dead partial
    directory does not take them."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    (target / "mine.txt").write_text("keep")

    def crash(work, tgt):
        raise KeyboardInterrupt

    monkeypatch.setattr(od, "swap_in", crash)
    with pytest.raises(KeyboardInterrupt):
        with od.staged_output_dir(target, force=False,
                                  inspect=lambda _d: od.Found(od.Occupant.SAME, owned=frozenset({"manifest.json"}))) as w:
            (w / "manifest.json").write_text("new")
    assert (target / "mine.txt").read_text() == "keep"


# --------------------------------------------------------------------------- 13. leftovers beside an up-to-date export


def test_a_partial_directory_of_a_killed_swap_is_removed_by_a_rerun_that_reuses_the_export(tmp_path):
    out = tmp_path / "enc"
    _export(out)
    partial = tmp_path / f".enc.partial-{dead_pid()}-x1y2"
    (partial / "sub").mkdir(parents=True)
    (partial / "sub" / "model.onnx").write_bytes(b"\0" * 4096)
    res = _export(out)
    assert "Up to date" in res.output
    assert not partial.exists()


# --------------------------------------------------------------------------- 3. records confined to their directory


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "..", ".", "", "a\\..\\x", "C:/x"])
def test_a_record_path_outside_its_directory_is_refused(path):
    with pytest.raises(ValidationError):
        FileRecord(path=path, sha256="0" * 64, bytes=0)


def test_record_paths_are_normalised():
    assert FileRecord(path="./a//b/../c.onnx", sha256="0" * 64, bytes=0).path == "a/c.onnx"


def test_a_cache_entry_naming_a_file_outside_the_output_cannot_write_there(tmp_path, monkeypatch):
    """A stage.json (say, of a CI cache restored from another branch) whose output path climbs
    out of the directory: the entry is a miss, the stage runs again, nothing outside is written."""
    cache = tmp_path / "x" / "cache"
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(cache))
    out = tmp_path / "a" / "b" / "c" / "enc"
    _export(out)
    (entry,) = (cache / "stages" / "export").iterdir()
    # From the cache entry, ../../../../ is tmp/x; from the output's work directory it is tmp.
    planted = tmp_path / "x" / "victim" / "model.onnx"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"attacker's bytes")
    victim = tmp_path / "victim" / "model.onnx"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"the user's model")
    meta = json.loads((entry / "stage.json").read_text())
    meta["outputs"]["model.onnx"] = {"path": "../../../../victim/model.onnx", "sha256": sha256_file(planted),
                                     "bytes": planted.stat().st_size}
    (entry / "stage.json").write_text(json.dumps(meta))
    import shutil

    shutil.rmtree(out)
    _export(out)
    assert victim.read_bytes() == b"the user's model"
    assert (out / "model.onnx").read_bytes()[:4] != b"atta"
    assert read_manifest(out).stage("export").outputs["model.onnx"].path == "model.onnx"


def test_a_cache_file_reached_through_a_symlink_out_of_the_entry_is_a_miss(tmp_path):
    cache = StageCache(root=tmp_path / "cache")
    from swiftformer_qnn.pipeline.stage_results import SimplifyResults

    def produce(d: Path):
        (d / "model.sim.onnx").write_bytes(b"graph")
        return SimplifyResults(nodes_before=1, nodes=1, op_types={})

    rec, d = cache.run("simplify", options={}, inputs={}, produce=produce, outputs=("model.sim.onnx",))
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"graph")
    (d / "model.sim.onnx").unlink()
    os.symlink(outside, d / "model.sim.onnx")
    assert cache.lookup("simplify", rec.key) is None


# --------------------------------------------------------------------------- 4. artifacts vouched for by the manifest


def test_an_artifact_that_is_not_the_exports_is_never_used(tmp_path):
    out = tmp_path / "enc"
    _export(out)
    m = read_manifest(out)
    assert m.artifact(out, "simplify", "model.sim.onnx") == out / "model.sim.onnx"
    _damage(out / "model.sim.onnx")
    with pytest.raises(OutputDirError, match="model.sim.onnx was changed .against the size and SHA-256"):
        m.artifact(out, "simplify", "model.sim.onnx")
    (out / "model.sim.onnx").unlink()
    with pytest.raises(OutputDirError, match="model.sim.onnx is missing"):
        m.artifact(out, "simplify", "model.sim.onnx")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """A real export of the block at 16 px through its compile stage."""
    from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

    root = tmp_path_factory.mktemp("trust-compiled")
    return run_export(ExportRequest(variant="encoder", resolution=16, calibration_count=4, heldout_count=2,
                                    until=Until.COMPILE, output_dir=root / "export")).directory


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _foreign_qdq(d: Path) -> None:
    """Another (valid) QDQ model where the export's was: the same graph, one weight changed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(d / "model.qdq.onnx"))
    init = next(t for t in model.graph.initializer if numpy_helper.to_array(t).size > 4)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = arr.flat[1]
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(d / "model.qdq.onnx"))


def test_diagnose_refuses_a_model_that_is_not_the_exports(compiled, tmp_path):
    d = _copy(compiled, tmp_path / "export")
    _foreign_qdq(d)
    line = one_error_line(runner.invoke(app, ["diagnose", str(d)]), 2)
    assert "model.qdq.onnx was changed" in line and "export" in line
    assert not (d / "diagnose").exists()


def test_the_emulator_profile_refuses_a_model_that_is_not_the_exports(compiled, tmp_path):
    """Deleting the binary (what an earlier hint advised) leaves the QDQ model, which must still be the export's."""
    d = _copy(compiled, tmp_path / "export")
    _foreign_qdq(d)
    (d / "model.ctx_qnn.bin").unlink()
    res = runner.invoke(app, ["profile", "emulator", "--from", str(d), "--out", str(tmp_path / "p")])
    line = one_error_line(res, 2)
    assert "model.qdq.onnx was changed" in line
    assert not list((tmp_path / "p").glob("*.profile.json")) if (tmp_path / "p").exists() else True


def test_gate_structure_refuses_an_edited_compile_record(compiled, tmp_path):
    d = _copy(compiled, tmp_path / "export")
    record = json.loads((d / "compile.json").read_text())
    record["htp_op_count"] = max(1, record["htp_op_count"] // 2)
    record["context_binary_bytes"] = record["context_binary_bytes"] // 2
    (d / "compile.json").write_text(json.dumps(record))
    res = runner.invoke(app, ["gate", "structure", "--baseline", str(compiled), "--candidate", str(d)])
    line = one_error_line(res, 2)
    assert "compile.json" in line
    # Without the manifest (a bare compile directory), the binary and the op trace beside it speak.
    (d / "manifest.json").unlink()
    line = one_error_line(runner.invoke(app, ["gate", "structure", "--baseline", str(compiled),
                                                "--candidate", str(d)]), 2)
    assert "model.ctx_qnn.bin is not the binary it records" in line and "HTP ops where it records" in line

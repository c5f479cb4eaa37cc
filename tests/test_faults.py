"""The fault battery: hostile or unlucky inputs and environments, each asserting the exit
code, the one line on stderr (no traceback), and what is on disk afterwards: nothing of the
user's lost, nothing half-written, nothing that looks complete.

Interrupts (real SIGINT / SIGTERM / SIGKILL to a real `swiftformer-qnn` process) are in
test_faults_signals.py."""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_checks import dead_pid, one_error_line
from PIL import Image
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core import output_dir as od
from swiftformer_qnn.core.errors import CalibrationError, OutputDirError, ProfileError
from swiftformer_qnn.core.redact import MASK
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.artifacts import StageCache, read_manifest
from swiftformer_qnn.pipeline.images import (
    MAX_IMAGE_PIXELS,
    ImageSet,
    UnusableImage,
    default_heldout_images,
    find_images,
    preprocess,
    preprocess_all,
)

runner = CliRunner()
SMALL = ["--variant", "encoder", "--resolution", "16", "--calibration-count", "4", "--heldout-count", "2"]
ONNX_ONLY = [*SMALL, "--until", "onnx"]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def no_leftovers(parent: Path) -> None:
    hidden = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden


# --------------------------------------------------------------------------- ownership of outputs


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """An encoder export until ONNX (cheap), reused read-only by the tests below."""
    out = tmp_path_factory.mktemp("own") / "enc"
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _data_folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "notes.txt").write_text("mine")
    (data / "sub" / "photo.jpg").write_bytes(b"\xff\xd8 not really")
    return data


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_the_tool_did_not_make_is_never_replaced(tmp_path, force):
    data = _data_folder(tmp_path)
    before = snapshot(data)
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(data), *(["--force"] if force else [])])
    line = one_error_line(res, 2)
    assert "holds 2 entries (notes.txt, sub/)" in line and "replaces only what it made" in line
    assert "--force" not in line  # the refusal must not suggest deleting the folder
    assert snapshot(data) == before
    no_leftovers(tmp_path)


def test_a_file_at_the_output_path_is_never_replaced(tmp_path):
    f = tmp_path / "out"
    f.write_text("precious")
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(f), "--force"]), 2)
    assert "is a file" in line and "--force" not in line
    assert f.read_text() == "precious"


def test_output_dir_dot_with_force_is_refused(tmp_path, monkeypatch, small_export):
    # Even a directory holding an export of ours: the tool never replaces the directory it runs in.
    monkeypatch.chdir(small_export)
    before = snapshot(small_export)
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--calibration-count", "5", "--heldout-count", "3",
                              "--output-dir", ".", "--force"])
    line = one_error_line(res, 2)
    assert "is the current directory" in line and "--force" not in line
    assert snapshot(small_export) == before


def test_another_request_of_ours_needs_force_and_then_is_replaced(tmp_path, small_export):
    out = tmp_path / "enc"
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out)])
    assert res.exit_code == 0
    before = snapshot(out)
    other = ["export", "--variant", "encoder", "--resolution", "16", "--heldout-count", "3", "--until", "onnx",
             "--output-dir", str(out)]
    line = one_error_line(runner.invoke(app, other), 2)
    assert "an export of a different request" in line and "--force" in line
    assert snapshot(out) == before
    res = runner.invoke(app, [*other, "--force"])
    assert res.exit_code == 0, res.output
    assert read_manifest(out).request.heldout.count == 3
    no_leftovers(tmp_path)


def test_an_export_of_an_earlier_version_is_ours_and_force_replaces_it(tmp_path, small_export):
    # A manifest of an earlier format (here: its request lacks a field this version requires) is
    # still this tool's output: refused without --force like another request, replaced with it.
    out = tmp_path / "old"
    assert runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out)]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["request"]["kind"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(out) is None
    before = snapshot(out)
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out)]), 2)
    assert "made by another swiftformer-qnn version" in line and "--force" in line
    assert snapshot(out) == before
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert read_manifest(out) is not None
    no_leftovers(tmp_path)


def test_an_empty_directory_is_used_without_force(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert read_manifest(out) is not None


def _foreign(d: Path) -> od.Found:
    return od.Found(od.Occupant.FOREIGN, od.holds(d))


def _ours(d: Path) -> od.Found:
    return od.Found(od.Occupant.OURS, "an output of another request")


def test_a_folder_created_meanwhile_is_judged_again_at_the_rename(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(OutputDirError, match="now holds 1 entry") as err:
        with od.staged_output_dir(target, force=True, inspect=_foreign) as work:
            (work / "result.txt").write_text("new")
            target.mkdir()  # somebody puts their data there while the tool works
            (target / "theirs.txt").write_text("theirs")
    assert "--force" not in err.value.one_line()
    assert snapshot(target) == {"theirs.txt": b"theirs"}
    no_leftovers(tmp_path)


def test_an_output_of_another_run_written_meanwhile_is_not_clobbered_without_force(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(OutputDirError, match="meanwhile another run wrote an output of another request"):
        with od.staged_output_dir(target, force=False, inspect=_ours) as work:
            (work / "result.txt").write_text("mine")
            target.mkdir()
            (target / "result.txt").write_text("the other run's")
    assert (target / "result.txt").read_text() == "the other run's"
    no_leftovers(tmp_path)


def test_the_decision_and_the_rename_happen_under_the_lock(tmp_path, monkeypatch):
    import fcntl

    seen = []
    real = od.swap_in

    def probe(work, target):
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):  # another process (or descriptor) would wait here
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(True)
        finally:
            os.close(fd)
        real(work, target)

    monkeypatch.setattr(od, "swap_in", probe)
    with od.staged_output_dir(tmp_path / "out", force=False) as work:
        (work / "a").write_text("a")
    assert seen == [True] and (tmp_path / "out" / "a").read_text() == "a"


def test_two_processes_racing_for_one_folder_one_wins_the_other_refuses(tmp_path):
    """Two real processes finish at the same moment (released by one file); exactly one output
    survives whole, the other process refuses with one line."""
    go = tmp_path / "go"
    script = f"""
import sys, time
from pathlib import Path
from swiftformer_qnn.core import output_dir as od
from swiftformer_qnn.core.errors import OutputDirError
def ours(d):
    return od.Found(od.Occupant.OURS, "an output of another request")
try:
    with od.staged_output_dir(Path({str(tmp_path / 'out')!r}), force=False, inspect=ours) as work:
        (work / "who").write_text(sys.argv[1])
        Path({str(tmp_path)!r}, "ready-" + sys.argv[1]).write_text("")  # both are past the first check
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
except OutputDirError as e:
    print(e.one_line()); sys.exit(2)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    while not all((tmp_path / f"ready-{n}").exists() for n in "ab") and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.write_text("")
    outs = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    codes = sorted(c for c, _ in outs)
    assert codes == [0, 2], outs
    assert "meanwhile another run wrote" in next(o for c, o in outs if c == 2)
    assert (tmp_path / "out" / "who").read_text() in ("a", "b")
    no_leftovers(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out", "ready-a", "ready-b"]


def test_a_replace_interrupted_between_its_renames_is_restored_by_the_next_run(tmp_path, monkeypatch):
    """Where the filesystem cannot swap atomically, the old directory is renamed aside first:
    a crash right then leaves `.out.old-PID`; the next run puts it back."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "v").write_text("old")
    monkeypatch.setattr(od, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two renames
        real_rename(src, dst)

    monkeypatch.setattr(od.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        with od.staged_output_dir(target, force=True, inspect=_ours) as work:
            (work / "v").write_text("new")
    monkeypatch.setattr(od.os, "rename", real_rename)
    assert not target.exists()
    (old,) = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    os.rename(old, tmp_path / f".out.old-{dead_pid()}")  # as if this process had been killed

    done = od.recover_leftovers(tmp_path, "out")
    assert done and done[0].startswith("Restored")
    assert (target / "v").read_text() == "old"
    no_leftovers(tmp_path)


def test_a_forced_replace_swaps_atomically_and_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "v").write_text("old")
    states = []
    real = od._exchange

    def watch(a, b):
        ok = real(a, b)
        states.append(ok and (target / "v").read_text())  # right after the swap: the new one, whole
        return ok

    monkeypatch.setattr(od, "_exchange", watch)
    with od.staged_output_dir(target, force=True, inspect=_ours) as work:
        (work / "v").write_text("new")
    assert states == ["new"]  # renameat2(RENAME_EXCHANGE) worked on this filesystem
    assert (target / "v").read_text() == "new"
    no_leftovers(tmp_path)


def test_leftovers_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    dead, live = dead_pid(), os.getppid()
    for name in (f".out.partial-{dead}-abc", f".out.partial-{live}-def", f".x.tmp-{dead}-1", "keep.partial-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "out").mkdir()
    od.recover_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.partial-{live}-def", "keep.partial-1", "out"]


# --------------------------------------------------------------------------- outputs vs cache


def test_outputs_are_files_of_their_own_and_reuse_verifies_every_hash(tmp_path):
    req = ExportRequest(variant="encoder", resolution=16, until=Until.ONNX, output_dir=tmp_path / "a",
                        calibration_count=4, heldout_count=2)
    first = run_export(req)
    onnx_file = first.directory / "model.sim.onnx"
    assert onnx_file.stat().st_nlink == 1  # not a hard link into the cache
    # This request's own cache entry (other tests of the session cache other simplify results).
    cached = StageCache().root / "simplify" / first.manifest.stage("simplify").key[:32] / "model.sim.onnx"
    cached_bytes = cached.read_bytes()

    with open(onnx_file, "r+b") as f:  # the user edits the export in place
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    (first.directory / "heldout.npy").unlink()
    assert cached.read_bytes() == cached_bytes  # the cache did not change with it

    again = run_export(req)
    assert not again.reused
    assert any("model.sim.onnx was changed" in n and "heldout.npy is missing" in n and "rebuilt" in n
               for n in again.notes), again.notes
    assert onnx_file.read_bytes() == cached_bytes and (first.directory / "heldout.npy").is_file()
    assert run_export(req).reused


def test_stale_temporary_directories_in_the_cache_are_cleaned(tmp_path):
    cache = StageCache(root=tmp_path)
    from swiftformer_qnn.pipeline.stage_results import SimplifyResults

    stale = cache.root / "simplify" / f".abc.tmp-{dead_pid()}-x"
    stale.mkdir(parents=True)
    cache.run("simplify", options={"n": 1}, inputs={}, outputs=("o",),
              produce=lambda d: (d / "o").write_text("o") and SimplifyResults(nodes_before=1, nodes=1, op_types={}))
    assert not stale.exists()
    assert [p.name for p in (cache.root / "simplify").iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- images


def _png16(path: Path, gray: np.ndarray) -> None:
    Image.fromarray(gray.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")


@pytest.fixture
def gradient() -> np.ndarray:
    """An 8-bit photograph-like gray gradient, 96 x 128."""
    y, x = np.mgrid[0:96, 0:128]
    return ((x * 2 + y) % 256).astype(np.uint8)


def _reference(gray8: np.ndarray, tmp_path: Path, size: int = 64) -> np.ndarray:
    p = tmp_path / "ref.png"
    Image.fromarray(np.stack([gray8] * 3, axis=-1)).save(p)
    return preprocess(p, size)


@pytest.mark.parametrize("mode", ["I;16", "F", "P", "LA", "RGBA", "CMYK", "1", "L"])
def test_every_image_mode_becomes_the_same_8bit_rgb(tmp_path, gradient, mode):
    """Each mode is compared with the same picture saved as plain 8-bit RGB (made with numpy,
    not with the code under test)."""
    gray8 = gradient
    p = tmp_path / f"img.{'tif' if mode == 'F' else 'jpg' if mode == 'CMYK' else 'png'}"
    tol = 0.02
    if mode == "I;16":
        _png16(p, gray8.astype(np.uint16) * 257)  # 8-bit values spread over the full 16-bit range
    elif mode == "F":
        Image.fromarray(gray8.astype(np.float32) / 255.0).save(p)
    elif mode == "P":
        Image.fromarray(np.stack([gray8] * 3, -1)).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(p)
        tol = 0.1  # the palette quantizes
    elif mode in ("LA", "RGBA"):
        alpha = np.full_like(gray8, 255)
        alpha[:10, :10] = 0  # a transparent corner (cropped away below) composited over white
        base = gray8 if mode == "LA" else np.stack([gray8] * 3, -1)
        Image.fromarray(np.dstack([base, alpha]) if mode == "RGBA" else np.dstack([gray8, alpha]), mode).save(p)
    elif mode == "CMYK":
        k = 255 - gray8
        z = np.zeros_like(k)
        Image.fromarray(np.dstack([z, z, z, k]), "CMYK").save(p, quality=100)
        tol = 0.1  # JPEG
    elif mode == "1":
        gray8 = np.where(gray8 > 127, 255, 0).astype(np.uint8)
        Image.fromarray(gray8 > 127).save(p)
    else:
        Image.fromarray(gray8).save(p)
    assert Image.open(p).mode == mode
    got, want = preprocess(p, 64), _reference(gray8, tmp_path)
    # In units of the 8-bit range: a 16-bit image read as Pillow's convert("RGB") would be ~white (error ~4).
    err = np.abs(got - want).mean() * 0.226
    assert err < tol, err


def test_transparent_pixels_are_composited_over_white(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    pixels = preprocess(tmp_path / "t.png", 32)[0] * np.array([0.229, 0.224, 0.225])[:, None, None] \
        + np.array([0.485, 0.456, 0.406])[:, None, None]
    np.testing.assert_allclose(pixels, 1.0, atol=1e-5)


@pytest.mark.parametrize("values, reason", [
    (np.full((8, 8), 3.5, np.float32), "float pixels outside 0..1"),
    (np.full((8, 8), np.nan, np.float32), "NaN or infinite"),
])
def test_float_images_of_unknown_scale_are_skipped_with_the_reason(tmp_path, values, reason):
    p = tmp_path / "f.tif"
    Image.fromarray(values).save(p)
    with pytest.raises(UnusableImage, match=reason):
        preprocess(p, 32)


def test_a_one_pixel_strip_costs_little_memory(tmp_path):
    """1 x 60000 pixels (a few hundred bytes of PNG) once needed 8.8 GB: resized whole to 235 x 14 M."""
    p = tmp_path / "strip.png"
    Image.fromarray(np.full((60000, 1), 128, np.uint8)).save(p, optimize=True)
    assert p.stat().st_size < 2000
    code = f"""
import resource, numpy as np
from pathlib import Path
from swiftformer_qnn.pipeline.images import preprocess
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = preprocess(Path({str(p)!r}), 224)
assert x.shape == (1, 3, 224, 224) and np.isfinite(x).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    grown_kb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown_kb < 200_000, grown_kb  # the old path grew by ~8.8 GB


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h", [(20000, 20000), (100000, 100000)])  # above our limit / Pillow's bomb limit
def test_huge_and_decompression_bomb_images_are_skipped_before_decoding(tmp_path, w, h):
    folder = tmp_path / "cal"
    folder.mkdir()
    _png_header_only(folder / "bomb.png", w, h)
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(folder / "ok.png")
    found = find_images(folder)
    assert [f.name for f in found.files] == ["ok.png"]
    (path, why), = found.skipped
    assert path.name == "bomb.png" and ("limit" in why or "too many pixels" in why), why
    assert w * h > MAX_IMAGE_PIXELS


def test_truncated_images_are_skipped_and_counted_and_none_left_is_one_line(tmp_path):
    folder = tmp_path / "cal"
    folder.mkdir()
    src = sorted(default_heldout_images().glob("*.jpg"))[:2]
    for s in src:
        data = s.read_bytes()
        (folder / s.name).write_bytes(data[: len(data) // 3])  # a download cut short
    good = folder / "zz_good.png"
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(good)
    images = find_images(folder)
    x = preprocess_all(images, 32)
    assert x.shape[0] == 1 and images.files == [good]
    assert len(images.skipped) == 2 and all("unreadable" in why for _, why in images.skipped)

    good.unlink()
    with pytest.raises(CalibrationError, match="No usable image"):
        preprocess_all(find_images(folder), 32)


def test_fewer_images_than_requested_is_said(tmp_path):
    folder = tmp_path / "cal"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(folder / f"{i}.png")
    images = find_images(folder, 64)
    assert images.shortfall("calibration") == f"Only 3 usable calibration image(s) in {folder} (64 requested)."
    assert isinstance(images, ImageSet) and find_images(folder, 2).shortfall("calibration") is None


def test_a_truncated_jpeg_in_the_heldout_folder_exits_0_and_says_so(tmp_path):
    folder = tmp_path / "held"
    folder.mkdir()
    for i, s in enumerate(sorted(default_heldout_images().glob("*.jpg"))[:3]):
        data = s.read_bytes()
        (folder / s.name).write_bytes(data if i else data[: len(data) // 3])
    res = runner.invoke(app, ["export", *ONNX_ONLY, "--heldout", str(folder), "--heldout-count", "5",
                              "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    inputs = read_manifest(tmp_path / "o").stage("inputs").results
    assert inputs.heldout.count == 2 and len(inputs.heldout.skipped) == 1
    assert any("Only 2 usable held-out image(s)" in n for n in inputs.notes)


# --------------------------------------------------------------------------- other inputs


@pytest.mark.parametrize("args, text", [
    (["--variant", "l1", "--resolution", "1048576"], "--resolution 1048576 is above 1024"),
    (["--variant", "encoder", "--resolution", "100000"], "--resolution 100000 is above 256"),
])
def test_resolution_has_an_upper_bound(tmp_path, args, text):
    line = one_error_line(runner.invoke(app, ["export", *args, "--output-dir", str(tmp_path / "o")]), 2)
    assert text in line
    assert not (tmp_path / "o").exists()


def _xs_state_dict() -> dict[str, torch.Tensor]:
    from swiftformer_qnn.model.swiftformer import build_model
    from swiftformer_qnn.model.variants import get_variant

    torch.manual_seed(0)
    return build_model(get_variant("xs")).state_dict()


def test_nan_and_inf_in_weights_are_named_by_tensor(tmp_path):
    sd = _xs_state_dict()
    names = [k for k, v in sd.items() if v.is_floating_point()]
    sd[names[3]][0] = float("nan")
    sd[names[7]].view(-1)[0] = float("inf")
    p = tmp_path / "bad.pth"
    torch.save(sd, p)
    line = one_error_line(runner.invoke(app, ["export", "--variant", "xs", "--weights", str(p), "--until", "onnx",
                                              "--resolution", "64", "--output-dir", str(tmp_path / "o")]), 2)
    assert "NaN or infinite values in 2 tensor(s)" in line and names[3] in line and names[7] in line
    assert not (tmp_path / "o").exists()
    no_leftovers(tmp_path)


@pytest.mark.parametrize("fraction", [0.002, 0.3, 0.999])
def test_truncated_legacy_pth_is_one_line(tmp_path, fraction):
    p = tmp_path / "w.pth"
    torch.save(_xs_state_dict(), p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * fraction)])
    line = one_error_line(runner.invoke(app, ["export", "--variant", "xs", "--weights", str(p), "--until", "onnx",
                                              "--output-dir", str(tmp_path / "o")]), 2)
    assert "w.pth" in line and ("truncated" in line or "not a readable PyTorch checkpoint" in line), line


@pytest.mark.parametrize("option", ["--weights", "--calibration"])
def test_a_directory_where_a_file_is_expected_and_the_reverse(tmp_path, option):
    if option == "--weights":
        (tmp_path / "w.pth").mkdir()
        arg, text = tmp_path / "w.pth", "is a directory"
    else:
        (tmp_path / "photos").write_text("x")
        arg, text = tmp_path / "photos", "is a file, not a folder"
    args = ["export", *SMALL, "--until", "quantize", option, str(arg), "--output-dir", str(tmp_path / "o")]
    line = one_error_line(runner.invoke(app, args), 2)
    assert text in line


# --------------------------------------------------------------------------- environment


def test_a_file_where_the_cache_should_be_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(blocker))
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(tmp_path / "o")]), 2)
    assert str(blocker) in line and "SWIFTFORMER_QNN_CACHE" in line
    assert blocker.read_text() == "not a directory"
    assert not (tmp_path / "o").exists()
    no_leftovers(tmp_path)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    import swiftformer_qnn.pipeline.calibrate as calibrate

    def full(path, *_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(calibrate.np, "save", full)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(cache))
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(tmp_path / "o")]), 2)
    assert "No space left on device" in line and "SWIFTFORMER_QNN_CACHE" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert [p for p in cache.rglob(".*")] == []  # no cache temp dir left either


def test_an_unexpected_error_is_one_line_naming_the_traceback_file(tmp_path, monkeypatch):
    import swiftformer_qnn.pipeline.orchestrator as orch

    def bug(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(orch, "_stage_notes", bug)
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(tmp_path / "o")]), 3)
    assert "ZeroDivisionError: a bug" in line and "This is a bug" in line
    log = Path(line.split("the full traceback is in ")[1].split(": please")[0])
    assert log.parent == tmp_path / "cache" / "logs"
    assert "Traceback (most recent call last)" in log.read_text() and "ZeroDivisionError" in log.read_text()


# --------------------------------------------------------------------------- profiles and JSON


@pytest.fixture
def profile_data() -> dict:
    from tests.report_synthetic import make_profile

    return json.loads(make_profile(run_count=5).model_dump_json())


@pytest.mark.parametrize("field, value, text", [
    ("runs_us", "negative", "greater than 0"),
    ("median_us", -5.0, "greater than 0"),
    ("median_us", "Infinity", "finite"),
    ("min_us", "NaN", "finite"),
    ("median_us", "shifted", "median_us="),
])
def test_profiles_with_impossible_latencies_are_refused(tmp_path, profile_data, field, value, text):
    lat = profile_data["latency"]
    if field == "runs_us":
        lat["runs_us"] = [-1.0] + [100.0] * (lat["run_count"] - 1)
    elif value == "shifted":  # the summary says one thing, the runs another
        lat["runs_us"] = [100.0 + i for i in range(lat["run_count"])]
        lat["min_us"], lat["median_us"], lat["max_us"] = 100.0, 1.0e6, 100.0 + lat["run_count"]
    else:
        lat[field] = value
    p = tmp_path / "x.profile.json"
    p.write_text(json.dumps(profile_data).replace('"Infinity"', "Infinity").replace('"NaN"', "NaN"))
    with pytest.raises(ProfileError, match=text):
        from swiftformer_qnn.measure.schema import load_profile

        load_profile(p)
    from swiftformer_qnn.gate.profile_gate import load_side

    with pytest.raises(ProfileError, match=text):  # what gate and gate's baseline update read
        load_side([p], side="candidate")
    one_error_line(runner.invoke(app, ["report", str(p), "--out", str(tmp_path / "r")]), 2)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"kind": 1' + "0" * 5000 + "}", "\xff\xfe"])
def test_hostile_json_is_one_line(tmp_path, text):
    p = tmp_path / "x.profile.json"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    line = one_error_line(runner.invoke(app, ["report", str(p), "--out", str(tmp_path / "r")]), 2)
    assert str(p) in line
    assert not (tmp_path / "r").exists()


def test_infinite_weights_json_numbers_never_reach_a_finite_report():
    from swiftformer_qnn.measure.schema import LatencySummary

    with pytest.raises(ValueError):
        LatencySummary(min_us=1.0, median_us=math.inf, run_count=1)


def test_compiling_an_onnx_with_no_nodes_or_a_directory_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    model = helper.make_model(helper.make_graph([], "empty", [x], [x]), opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, tmp_path / "empty.onnx")
    line = one_error_line(runner.invoke(app, ["compile", str(tmp_path / "empty.onnx"), "--output-dir",
                                              str(tmp_path / "o")]), 2)
    assert "no nodes" in line
    (tmp_path / "dir.onnx").mkdir()
    line = one_error_line(runner.invoke(app, ["compile", str(tmp_path / "dir.onnx")]), 2)
    assert "is a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "empty.onnx"]


def test_profile_out_pointing_at_a_file_is_refused_before_any_work(tmp_path, small_export):
    f = tmp_path / "profiles"
    f.write_text("keep")
    line = one_error_line(runner.invoke(app, ["profile", "emulator", "--from", str(small_export),
                                              "--out", str(f)]), 2)
    assert "is a file, not a directory" in line and f.read_text() == "keep"


def test_an_unexpected_error_echoing_a_token_is_scrubbed_on_screen_and_in_the_file(tmp_path, monkeypatch):
    import swiftformer_qnn.pipeline.orchestrator as orch

    secret = "Authorization: token 0123456789abcdef0123456789abcdef"

    def leak(*_a, **_k):
        raise RuntimeError(f"server said: 500, request headers {{{secret}}}")

    monkeypatch.setattr(orch, "_stage_notes", leak)
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    line = one_error_line(runner.invoke(app, ["export", *ONNX_ONLY, "--output-dir", str(tmp_path / "o")]), 3)
    assert "0123456789abcdef" not in line and MASK in line
    (log,) = (tmp_path / "cache" / "logs").iterdir()
    assert "0123456789abcdef" not in log.read_text() and "RuntimeError" in log.read_text()


def test_temp_dirs_of_older_versions_are_removed_once_a_day_old(tmp_path):
    cache = StageCache(root=tmp_path)
    from swiftformer_qnn.pipeline.stage_results import SimplifyResults

    d = cache.root / "simplify"
    old, fresh = d / f".{'a' * 32}.k2j_x9q1", d / f".{'b' * 32}.p0o9i8u7"
    for t in (old, fresh):
        t.mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    cache.run("simplify", options={"n": 2}, inputs={}, outputs=("o",),
              produce=lambda w: (w / "o").write_text("o") and SimplifyResults(nodes_before=1, nodes=1, op_types={}))
    assert not old.exists() and fresh.exists()  # a run of an older version may still be writing the fresh one


def test_a_compile_never_replaces_the_folder_that_holds_its_own_input(tmp_path):
    """`compile build/x/model.qdq.onnx --output-dir build/x --force` replaced the export and with it
    the QDQ graph it was compiling (and the export's other files); the refusal also named the
    export "a compile"."""
    out = tmp_path / "enc"
    res = runner.invoke(app, ["export", *SMALL, "--until", "quantize", "--output-dir", str(out)])
    assert res.exit_code == 0, res.output
    before = snapshot(out)
    compile_it = ["compile", str(out / "model.qdq.onnx"), "--output-dir", str(out)]
    for force in ([], ["--force"]):
        line = one_error_line(runner.invoke(app, [*compile_it, *force]), 2)
        assert "holds model.qdq.onnx, this compile's input: replacing the folder would delete it" in line
    assert snapshot(out) == before
    # Its input elsewhere, the folder is named for what it holds: an export, not a compile.
    elsewhere = tmp_path / "model.qdq.onnx"
    elsewhere.write_bytes((out / "model.qdq.onnx").read_bytes())
    line = one_error_line(runner.invoke(app, ["compile", str(elsewhere), "--output-dir", str(out)]), 2)
    assert "holds an export of a different request" in line and "--force" in line
    assert snapshot(out) == before
    # An earlier version's manifest (one this version cannot read) is still ours: the same refusal.
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["request"]["kind"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(out)
    line = one_error_line(runner.invoke(app, [*compile_it, "--force"]), 2)
    assert "holds model.qdq.onnx, this compile's input" in line
    assert snapshot(out) == before
    no_leftovers(tmp_path)

"""Finding and preprocessing images, shared by calibration, validation and fidelity checks.

The preprocessing is the one the released SwiftFormer models were trained with (timm's
eval transform): bicubic resize of the short side to floor(size / crop_pct), centre crop,
ImageNet mean/std.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import CalibrationError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CROP_PCT = 0.95
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm"}
CALIBRATION_ENV = "SWIFTFORMER_QNN_CALIBRATION"


def shipped_calibration_dir() -> Path:
    """$SWIFTFORMER_QNN_CALIBRATION, else the shipped photographs: `calibration/` of the source
    tree this package runs from, or the package data of an installed wheel."""
    env = os.environ.get(CALIBRATION_ENV)
    if env:
        return Path(env)
    # The source tree first: a checkout run via PYTHONPATH must not pick up the photographs of
    # some other installed copy.
    source_tree = Path(__file__).resolve().parents[2] / "calibration"
    if (source_tree / "provenance.json").is_file():
        return source_tree
    return Path(str(importlib.resources.files("swiftformer_qnn.calibration")))


def default_calibration_images() -> Path:
    return shipped_calibration_dir() / "images"


def default_heldout_images() -> Path:
    return shipped_calibration_dir() / "heldout"


@dataclass
class ImageSet:
    """Images found under a folder, in a stable order, and what was skipped."""

    root: Path
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    requested: int | None = None  # how many were asked for

    def shortfall(self, what: str) -> str | None:
        """`only 10 usable calibration images in DIR (64 requested; 3 skipped)`, or None."""
        if self.requested is None or len(self.files) >= self.requested:
            return None
        return (f"Only {len(self.files)} usable {what} image(s) in {self.root} ({self.requested} requested"
                + (f"; {len(self.skipped)} skipped" if self.skipped else "") + ").")

    def fingerprint(self) -> str:
        """Hash of the chosen files' names and bytes: the cache key of anything derived from them."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(str(f.relative_to(self.root)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()


# Larger photographs are skipped before decoding (the model sees 224 px; a 8192 x 8192 RGB image
# already takes 200 MB to decode). Pillow's own decompression-bomb limit is higher (89 MP).
MAX_IMAGE_PIXELS = 8192 * 8192


class UnusableImage(Exception):
    """An image that cannot become a model input; the message is the stated reason."""


def _header_problem(im) -> str | None:
    w, h = im.size
    if w < 1 or h < 1:
        return f"empty ({w}x{h} pixels)"
    if w * h > MAX_IMAGE_PIXELS:
        return (f"{w}x{h} pixels ({w * h / 1e6:.0f} MP), above the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit; "
                "downscale it first")
    return None


def _open(path: Path):
    """Open an image lazily (header only), turning Pillow's bomb check into a stated reason."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnusableImage(f"too many pixels for a photograph ({exc})") from None


def find_images(root: Path, limit: int | None = None, *, what: str = "calibration") -> ImageSet:
    """Readable images under `root` (recursive, sorted); unreadable files are skipped and counted."""
    from PIL import UnidentifiedImageError

    root = Path(root)
    option = "--calibration" if what == "calibration" else "--heldout"
    if not root.is_dir():
        if root.exists():
            raise CalibrationError(f"The {what} folder {root} is a file, not a folder.",
                                   hint=f"Pass {option} a folder of images (jpg, png, webp, ...).")
        if root.parent == shipped_calibration_dir():
            # The photographs live in the repository's calibration/, which a wheel does not carry.
            raise CalibrationError(
                f"The shipped {what} photographs are not at {root} (installed from a wheel, not `pip install -e`?).",
                hint=f"Pass {option} DIR, or set {CALIBRATION_ENV} to a checkout's calibration/ folder.",
            )
        raise CalibrationError(
            f"The {what} folder {root} does not exist.", hint="Pass a folder of images (jpg, png, webp, ...)."
        )
    files, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if limit is not None and len(files) >= limit:
            break
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if not path.name.startswith(".") and path.suffix.lower() not in {".md", ".json", ".py", ".txt"}:
                skipped.append((path, "not an image file type"))
            continue
        try:
            with _open(path) as im:
                problem = _header_problem(im)
                if problem:
                    raise UnusableImage(problem)
                im.verify()  # cheap structure check; a truncated JPEG shows only when decoded (preprocess)
            files.append(path)
        except UnusableImage as exc:
            skipped.append((path, str(exc)))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            skipped.append((path, f"unreadable: {exc}"))
    if not files:
        raise CalibrationError(
            f"No usable image in {root} ({len(skipped)} file(s) skipped"
            + (f", e.g. {skipped[0][0].name}: {skipped[0][1]}" if skipped else "") + ").",
            hint="Pass a folder with jpg/png/webp photographs, or omit the option to use the shipped set.",
        )
    return ImageSet(root, files, skipped, requested=limit)


def to_rgb8(im):
    """Any mode Pillow opens as 8-bit RGB, with the mode's own value range (Pillow's
    `convert("RGB")` clips 16-bit and float pixels to 0..255: a 16-bit photograph comes out
    white, a 0..1 float one black). Transparent pixels are composited over white."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if a.ndim != 2:
            raise UnusableImage(f"{mode} pixels with {a.ndim} dimensions")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise UnusableImage("NaN or infinite pixel values")
        lo, hi = float(a.min()), float(a.max())
        if mode == "F":
            if lo < 0 or hi > 1:
                raise UnusableImage(f"float pixels outside 0..1 (range {lo:g}..{hi:g}): their scale is unknown")
            full = 1.0
        elif mode.startswith("I;16") or hi > 255:
            if lo < 0 or hi > 65535:
                raise UnusableImage(f"integer pixels outside 0..65535 (range {lo:g}..{hi:g}): their scale is unknown")
            full = 65535.0
        else:
            full = 255.0  # a 32-bit integer image holding 8-bit values
        gray = np.clip(np.rint(a * (255.0 / full)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im  # no copy: a large photograph is already the biggest thing in memory
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise UnusableImage(f"{mode} pixels cannot be converted to RGB ({exc})") from None


def _resize_and_crop(im, size: int, crop_pct: float):
    """timm's eval transform: bicubic resize of the short side to floor(size / crop_pct), centre crop."""
    from PIL import Image

    scale = math.floor(size / crop_pct)
    w, h = im.size
    if w <= h:
        nw, nh = scale, max(scale, round(h * scale / w))
    else:
        nw, nh = max(scale, round(w * scale / h)), scale
    left, top = (nw - size) // 2, (nh - size) // 2
    if nw * nh <= 16 * scale * scale:
        return im.resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + size, top + size))
    # An extreme strip (1 x 60000 would resize to 235 x 14 million): resize only the centre
    # crop's source region. Pillow still filters with the region's neighbours, so the pixels
    # match resize-then-crop to within float rounding (rarely 1-2 levels of 255).
    sx, sy = w / nw, h / nh
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return im.resize((size, size), Image.Resampling.BICUBIC, box=box)


def preprocess(path: Path, size: int = 224, crop_pct: float = CROP_PCT) -> np.ndarray:
    """One image as a 1x3xSxS float32 tensor, exactly as the released models expect.

    Raises UnusableImage (with the reason) for an image that cannot be decoded or converted.
    """
    try:
        with _open(path) as src:
            problem = _header_problem(src)
            if problem:
                raise UnusableImage(problem)
            src.load()  # decode now: a truncated or corrupt file fails here, as unreadable
            im = _resize_and_crop(to_rgb8(src), size, crop_pct)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data, found while decoding
        raise UnusableImage(f"unreadable: {exc}") from None
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return arr.transpose(2, 0, 1)[None].astype(np.float32)


def preprocess_all(images: ImageSet, size: int = 224) -> np.ndarray:
    """N x 3 x S x S of the usable images; one that fails to decode is moved to `images.skipped`."""
    arrays, usable = [], []
    for p in images.files:
        try:
            arrays.append(preprocess(p, size))
            usable.append(p)
        except UnusableImage as exc:
            images.skipped.append((p, str(exc)))
    if not arrays:
        raise CalibrationError(
            f"No usable image in {images.root} ({len(images.skipped)} file(s) skipped, e.g. "
            f"{images.skipped[0][0].name}: {images.skipped[0][1]}).",
            hint="Pass a folder with jpg/png/webp photographs, or omit the option to use the shipped set.",
        )
    images.files = usable
    return np.concatenate(arrays, axis=0)

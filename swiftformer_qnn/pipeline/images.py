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

from ..errors import CalibrationError

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

    def fingerprint(self) -> str:
        """Hash of the chosen files' names and bytes: the cache key of anything derived from them."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(str(f.relative_to(self.root)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()


def find_images(root: Path, limit: int | None = None, *, what: str = "calibration") -> ImageSet:
    """Readable images under `root` (recursive, sorted); unreadable files are skipped and counted."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        if root.parent == shipped_calibration_dir():
            # The photographs live in the repository's calibration/, which a wheel does not carry.
            raise CalibrationError(
                f"The shipped {what} photographs are not at {root} (installed from a wheel, not `pip install -e`?).",
                hint=f"Pass --{'calibration' if what == 'calibration' else 'heldout'} DIR, or set {CALIBRATION_ENV} "
                "to a checkout's calibration/ folder.",
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
            with Image.open(path) as im:
                im.verify()  # cheap header + structure check; decoding happens at preprocessing
            files.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            skipped.append((path, f"unreadable: {exc}"))
    if not files:
        raise CalibrationError(
            f"No usable image in {root} ({len(skipped)} file(s) skipped).",
            hint="Pass a folder with jpg/png/webp photographs, or omit the option to use the shipped set.",
        )
    return ImageSet(root, files, skipped)


def preprocess(path: Path, size: int = 224, crop_pct: float = CROP_PCT) -> np.ndarray:
    """One image as a 1x3xSxS float32 tensor, exactly as the released models expect."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = math.floor(size / crop_pct)
        w, h = im.size
        if w <= h:
            nw, nh = scale, max(scale, round(h * scale / w))
        else:
            nw, nh = max(scale, round(w * scale / h)), scale
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return arr.transpose(2, 0, 1)[None].astype(np.float32)


def preprocess_all(images: ImageSet, size: int = 224) -> np.ndarray:
    """N x 3 x S x S."""
    return np.concatenate([preprocess(p, size) for p in images.files], axis=0)

"""Regenerate the calibration and held-out photographs from the packages that ship them.

Sources are the sample photographs bundled with scikit-image and matplotlib, all CC0 or
public domain (see PROVENANCE.md). Each source photo gives several square crops at
different scales, saved as JPEG with the short side at 256 px (the tool resizes to 235 and
centre-crops 224). Held-out images come from source photos that are NOT used for
calibration, so the fidelity check never sees a calibration scene.

Usage: python calibration/make_calibration_set.py   (deterministic; needs scikit-image, matplotlib)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
SKIMAGE_LICENSES = {
    "astronaut": ("NASA (Flickr r9qvLn)", "public domain"),
    "chelsea": ("Stefan van der Walt", "CC0"),
    "rocket": ("SpaceX", "public domain"),
    "hubble_deep_field": ("NASA", "public domain"),
    "camera": ("Lav Varshney", "CC0"),
    "coins": ("Brooklyn Museum", "no known copyright restrictions"),
    "retina": ("Wikimedia Commons, Fundus photograph of normal left eye", "CC0 1.0"),
    "motorcycle_left": ("Middlebury stereo 2014 (skimage stereo_motorcycle)", "as bundled in scikit-image"),
    "brick": ("CC0Textures Bricks25", "CC0"),
    "grass": ("DeviantArt linolafett Grass-01", "CC0"),
    "gravel": ("CC0Textures Gravel04", "CC0"),
    "clock_motion": ("Stefan van der Walt (skimage clock)", "public domain"),
    "cell": ("Guck lab (skimage cell)", "CC0"),
    # held-out sources
    "coffee": ("Rachel Michetti, Pikolo Espresso Bar", "CC0"),
    "motorcycle_right": ("Middlebury stereo 2014 (skimage stereo_motorcycle)", "as bundled in scikit-image"),
    "ihc": ("skimage immunohistochemistry", "no known copyright restrictions"),
}
HELDOUT_SOURCES = {"coffee", "motorcycle_right", "ihc", "grace_hopper"}


def _sources() -> dict[str, tuple[Path, str, str]]:
    import matplotlib
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    found = {}
    for name, (author, lic) in SKIMAGE_LICENSES.items():
        for ext in (".png", ".jpg"):
            if (sk / f"{name}{ext}").is_file():
                found[name] = (sk / f"{name}{ext}", f"scikit-image {skimage.__version__} data: {author}", lic)
    mpl = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    found["grace_hopper"] = (mpl, f"matplotlib {matplotlib.__version__} sample_data: US Navy photograph", "public domain")
    return found


def _crops(img: Image.Image, n: int) -> list[tuple[Image.Image, tuple[int, int, int, int]]]:
    """n deterministic square crops: the centre, then smaller ones spread over the image."""
    w, h = img.size
    side = min(w, h)
    boxes = [((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)]
    rng = np.random.default_rng(abs(hash((w, h, n))) % (2**32))
    while len(boxes) < n:
        s = int(side * rng.uniform(0.5, 0.85))
        x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        boxes.append((x, y, x + s, y + s))
    return [(img.crop(b), b) for b in boxes]


def main(n_calibration: int = 64, n_heldout: int = 16) -> None:
    sources = _sources()
    calib = [k for k in sources if k not in HELDOUT_SOURCES]
    held = [k for k in sources if k in HELDOUT_SOURCES]
    records = []
    for subset, names, total in (("images", calib, n_calibration), ("heldout", held, n_heldout)):
        out = HERE / subset
        out.mkdir(exist_ok=True)
        for old in out.glob("*.jpg"):
            old.unlink()
        per = [total // len(names) + (i < total % len(names)) for i in range(len(names))]
        for name, count in zip(names, per, strict=True):
            path, source, lic = sources[name]
            img = Image.open(path).convert("RGB")
            for k, (crop, box) in enumerate(_crops(img, count)):
                crop = crop.resize((256, 256), Image.Resampling.BICUBIC)
                fname = f"{name}_{k:02d}.jpg"
                crop.save(out / fname, quality=90)
                records.append({"file": f"{subset}/{fname}", "source": source, "original": path.name,
                                "crop_box": list(box), "license": lic})
    (HERE / "provenance.json").write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()

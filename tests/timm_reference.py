"""timm's SwiftFormer as an independent reference of the normalize attention form.

timm (`timm/models/swiftformer.py`) follows upstream's July 2023 fix (`normalize(A, dim=1)`),
which HF transformers' port does not. `import timm` imports torchvision at package import
(`timm.layers.create_norm`: `from torchvision.ops.misc import FrozenBatchNorm2d`, `timm.data`:
transforms and datasets), but PyPI's torchvision for torch 2.13 is a CUDA build that cannot
import beside the CPU torch these machines use (`RuntimeError: operator torchvision::nms does
not exist`), and no CPU torchvision exists for it. SwiftFormer's model code uses nothing from
torchvision, so timm is imported here with a stand-in `torchvision` that holds only the names
timm imports at import time; every one of them raises when called or instantiated, so a
comparison that passes cannot have run any of it. The stand-in leaves `sys.modules` as soon as
timm is imported, so nothing else in the test session ever sees it.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

from torch import nn


class StandInUsed(RuntimeError):
    """timm reached into torchvision after all: the comparison would not be independent of it."""


def _refuse(what: str):
    raise StandInUsed(f"torchvision stand-in: {what} was used; timm's SwiftFormer must not need torchvision")


class _Unavailable:
    """A class timm imports from torchvision (to subclass, or to list in isinstance checks)."""

    def __new__(cls, *args, **kwargs):
        _refuse(f"{cls.__module__}.{cls.__qualname__}()")


class _InterpolationModeMeta(type):
    def __call__(cls, *args, **kwargs):
        _refuse("torchvision.transforms.functional.InterpolationMode()")


class _InterpolationMode(metaclass=_InterpolationModeMeta):
    """timm.data keys dicts by these members at import; only a transform would ever use one."""


def _unavailable(module: str, name: str) -> type:
    return type(name, (_Unavailable,), {"__module__": module})


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name, "Stand-in: see tests/timm_reference.py")
    module.__dict__.update(attrs)
    return module


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """Exactly what timm 1.0.31 imports from torchvision when `timm` and its models are imported."""
    fn = "torchvision.transforms.functional"
    mode = type("InterpolationMode", (_InterpolationMode,), {"__module__": fn})
    for member in ("NEAREST", "BILINEAR", "BICUBIC", "BOX", "HAMMING", "LANCZOS"):
        setattr(mode, member, object())  # unique and hashable; does nothing
    functional = _module(fn, InterpolationMode=mode)
    transforms = _module("torchvision.transforms", ToTensor=_unavailable("torchvision.transforms", "ToTensor"),
                         functional=functional)
    datasets = _module("torchvision.datasets", **{n: _unavailable("torchvision.datasets", n) for n in (
        "CIFAR100", "CIFAR10", "MNIST", "KMNIST", "FashionMNIST", "ImageFolder")})
    misc = _module("torchvision.ops.misc", FrozenBatchNorm2d=_unavailable("torchvision.ops.misc", "FrozenBatchNorm2d"))
    ops = _module("torchvision.ops", misc=misc)
    root = _module("torchvision", transforms=transforms, datasets=datasets, ops=ops)
    for package in (root, transforms, ops):
        package.__path__ = []  # `import torchvision.x.y` looks for children in sys.modules
    # timm's optional imports (torchvision.models.feature_extraction, more datasets) sit in
    # try/except ImportError blocks: left out, timm records them as unavailable.
    return {m.__name__: m for m in (root, transforms, functional, datasets, ops, misc)}


def import_timm() -> types.ModuleType:
    """timm, imported once, with the torchvision stand-in in place only during its import."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    modules = _stand_in_modules()
    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    for k in saved:
        del sys.modules[k]
    sys.modules.update(modules)
    try:
        import timm
        import timm.models.swiftformer  # noqa: F401
    finally:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return timm


def timm_from_checkpoint(variant_name: str, path: str | Path) -> nn.Module:
    """timm's `swiftformer_<variant>` loaded from a checkpoint file by timm's own pretrained path
    (its `checkpoint_filter_fn` converts upstream keys), strictly, in eval mode."""
    timm = import_timm()
    with _no_network():
        model = timm.create_model(
            f"swiftformer_{variant_name}", pretrained=True, pretrained_cfg_overlay={"file": str(path)}
        )
    return model.eval()


@contextlib.contextmanager
def _no_network():
    """A checkpoint file must be enough: fail loudly rather than reach for the Hugging Face hub."""
    import os

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old

"""Precisions, Snapdragon SoCs and devices, declared once.

Kept free of heavy imports: the cross-version compile worker imports it inside a toolchain
environment that holds only onnxruntime, onnxruntime-qnn, onnx and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import UsageError


class Precision(str, Enum):
    """Weight/activation precision of the compiled model."""

    W8A8 = "w8a8"  # int8 weights and activations: the HTP's fastest path
    W8A16 = "w8a16"  # int8 weights, int16 activations: more accurate, slower
    FP16 = "fp16"  # float graph run with the HTP's fp16 mode (provider option enable_htp_fp16_precision)
    # int8 weights; per block 8- or 16-bit activations, chosen by measuring each block on the HTP emulator
    MIXED = "mixed"

    @property
    def is_quantized(self) -> bool:
        return self is not Precision.FP16

    @property
    def aihub_quantize_full_type(self) -> str:
        # Only a float export asks AI Hub to quantize; a mixed export is submitted already quantized.
        return {"w8a8": "int8", "w8a16": "w8a16", "fp16": "float16"}[self.value]


def get_precision(name: str) -> Precision:
    try:
        return Precision(name.lower().strip())
    except ValueError:
        raise UsageError(
            f"Unknown precision {name!r}.", hint=f"Choose one of: {', '.join(p.value for p in Precision)}."
        ) from None


class CalibrationMethod(str, Enum):
    """How the activation ranges are chosen from the calibration inputs (`pipeline.ranges`)."""

    MINMAX = "minmax"  # the lowest and highest value seen: onnxruntime's MinMax (default)
    PERCENTILE = "percentile"  # onnxruntime's Percentile: |x| at the 99.999th percentile (2048 bins)
    ENTROPY = "entropy"  # onnxruntime's Entropy: the KL-divergence threshold (2048 bins, 128 quantized)
    MSE = "mse"  # per tensor, the clipping range of least quantization MSE at the precision's bit width


def get_calibration_method(name: str) -> CalibrationMethod:
    try:
        return CalibrationMethod(name.lower().strip())
    except ValueError:
        raise UsageError(
            f"Unknown --calibration-method {name!r}.",
            hint=f"Choose one of: {', '.join(m.value for m in CalibrationMethod)}.",
        ) from None


@dataclass(frozen=True)
class Soc:
    """A Snapdragon SoC as the QNN HTP backend names it (`soc_model`, `htp_arch`)."""

    name: str  # e.g. "sm8550"
    marketing_name: str
    soc_model: int  # QNN HTP `soc_model` provider option
    htp_arch: int  # Hexagon HTP architecture version (v73 -> 73)
    aihub_chipset: str | None = None  # AI Hub's chipset attribute value
    example_device: str | None = None


# soc_model numbers as QNN's QcomChipset enum gives them.
SOCS: dict[str, Soc] = {
    s.name: s
    for s in (
        Soc("sm8450", "Snapdragon 8 Gen 1", 36, 69, "qualcomm-snapdragon-8gen1", "Samsung Galaxy S22 Ultra 5G"),
        Soc("sm8475", "Snapdragon 8+ Gen 1", 42, 69, "qualcomm-snapdragon-8plusgen1", None),
        Soc("sm8550", "Snapdragon 8 Gen 2", 43, 73, "qualcomm-snapdragon-8gen2", "Samsung Galaxy S23 Ultra"),
        Soc("sm8650", "Snapdragon 8 Gen 3", 57, 75, "qualcomm-snapdragon-8gen3", "Samsung Galaxy S24 Ultra"),
        # AI Hub's `qualcomm-snapdragon-8-elite` is the QRD; the S25 Ultra reports its own chipset
        # (`qualcomm-snapdragon-8-elite-for-galaxy`), so it is no reference phone for this one.
        Soc("sm8750", "Snapdragon 8 Elite", 69, 79, "qualcomm-snapdragon-8-elite", None),
    )
}
DEFAULT_SOC = "sm8550"

_SOC_ALIASES = {
    "8gen1": "sm8450",
    "8+gen1": "sm8475",
    "8gen2": "sm8550",
    "8gen3": "sm8650",
    "8elite": "sm8750",
}


def get_soc(name: str) -> Soc:
    """Resolve `sm8550`, `SM8550`, `8gen2`, `Snapdragon 8 Gen 2` or `43` to a Soc."""
    key = name.lower().replace("snapdragon", "").replace(" ", "").replace("-", "").strip()
    key = _SOC_ALIASES.get(key, key)
    if key in SOCS:
        return SOCS[key]
    for soc in SOCS.values():
        if key == str(soc.soc_model):
            return soc
    known = ", ".join(f"{s.name} ({s.marketing_name})" for s in SOCS.values())
    raise UsageError(f"Unknown SoC {name!r}.", hint=f"Known: {known}.")

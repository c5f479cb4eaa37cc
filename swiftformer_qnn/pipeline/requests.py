"""What an export or a compile is asked to do, and what its manifest records of it.

`ExportRequest` / `CompileRequest` are what the CLI (and `profile`, the bench, the tests)
build and the orchestrator runs. Once the orchestrator has resolved one (checked every
option, hashed the weights and image sets, read the SoC), `ExportedRequest` /
`CompiledRequest` is what the manifest records as `request` and what the output directory's
key hashes: the same typed model is written, compared and read back by `profile`, `diagnose`
and the renderer. Imports only pydantic: `artifacts` (and so toolchain code) reads manifests.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Until(str, Enum):
    """The last stage to run."""

    ONNX = "onnx"  # validated, simplified float ONNX
    QUANTIZE = "quantize"  # + QDQ model
    COMPILE = "compile"  # + QNN context binary
    VERIFY = "verify"  # + fidelity of the quantized model and of the binary on the emulator (default)


class IoFormat(str, Enum):
    """What a compiled binary's inputs and outputs are (`export --io`, `pipeline.native_io`)."""

    FLOAT_NCHW = "float-nchw"  # float32, channel-first: what PyTorch gives (default)
    UINT8_NHWC = "uint8-nhwc"  # the quantized tensors, uint8, 4-D ones channel-last


class _Asked(BaseModel):
    # Values are checked by the orchestrator (`_resolve`), which says what is wrong and what to
    # do in one line; the model only carries them.
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExportRequest(_Asked):
    """Everything that determines an export's result, plus where to write it."""

    variant: str = "l1"
    weights: Path | None = None
    attention: str | None = None  # None: what the weights imply (normalize for random init)
    precision: str = "w8a8"
    soc: str = "sm8550"
    # Input HxW override: the image for full models (multiple of 32), the feature map for the
    # standalone block (default 64). Tests use small ones.
    resolution: int | None = None
    encoder_dim: int | None = None
    calibration: Path | None = None
    calibration_count: int = 64
    # How the activation ranges are chosen: minmax, percentile, entropy or mse (core.targets.CalibrationMethod).
    calibration_method: str = "minmax"
    heldout: Path | None = None
    heldout_count: int = 16
    min_sqnr: float | None = None
    # --precision mixed: the largest estimated time (bit-ops where no estimate exists) relative to
    # uniform w8a8; with neither this nor min_sqnr, the default target (pipeline.mixed_search).
    max_time_ratio: float | None = None
    opset: int = 20
    graph: str = "htp"  # "htp": HTP-ready form (default); "faithful": the literal upstream graph
    io: str = "float-nchw"  # the compiled binary's inputs/outputs: float-nchw, or uint8-nhwc (pipeline.native_io)
    until: Until = Until.VERIFY
    output_dir: Path | None = None
    force: bool = False
    use_cache: bool = True


class CompileRequest(_Asked):
    """Compile an existing ONNX (QDQ, or float with fp16) on its own."""

    model: Path
    soc: str = "sm8550"
    fp16: bool = False
    output_dir: Path | None = None
    force: bool = False
    use_cache: bool = True


class _Recorded(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSetId(_Recorded):
    """A set of images by content: where they were found, how many, and the hash of them all."""

    root: str
    count: int
    sha256: str
    skipped: int


class ExportedRequest(_Recorded):
    """An export's request as its manifest records it, resolved: the weights by content, the
    input shape, the SoC's numbers, the image sets by fingerprint."""

    kind: Literal["export"] = "export"
    variant: str
    input_shape: list[int]
    precision: str
    soc: str
    soc_model: int
    htp_arch: int
    weights: str  # "sha256:<hex>" of the checkpoint, or the random initialisation's name
    weights_path: str | None = None  # where the checkpoint was; not part of the key
    attention_requested: str | None = None
    opset: int
    graph: str
    io: str = "float-nchw"
    until: Until
    calibration: ImageSetId | None = None  # None: nothing was quantized
    calibration_method: str = "minmax"
    heldout: ImageSetId | None = None
    min_sqnr: float | None = None
    max_time_ratio: float | None = None

    def key_fields(self) -> dict:
        """What the output directory's key hashes: the same weights from another path are the same export.
        The default I/O and calibration method are left out, so exports made before `io` and
        `calibration_method` existed keep their keys."""
        defaults = {"io": "float-nchw", "calibration_method": "minmax"}
        return self.model_dump(mode="json", exclude={"weights_path"} | {k for k, v in defaults.items()
                                                                        if getattr(self, k) == v})


class CompiledRequest(_Recorded):
    """`compile MODEL.onnx`'s request as its manifest records it."""

    kind: Literal["compile"] = "compile"
    model: str  # where the model was; not part of the key
    model_sha256: str
    soc: str
    soc_model: int
    htp_arch: int
    fp16: bool

    def key_fields(self) -> dict:
        """The model by content: the same bytes compiled again are the same request."""
        return self.model_dump(mode="json", exclude={"model"})


RecordedRequest = Annotated[ExportedRequest | CompiledRequest, Field(discriminator="kind")]

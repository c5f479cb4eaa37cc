"""Checkpoint loading: every SwiftFormer weight format users bring, mapped onto our module names.

Four formats exist in the wild, all for the same architecture:

- `upstream`: Amshaker/SwiftFormer `.pth` (`patch_embed.N`, `network.{2i}.{j}` blocks of stage i,
  `network.{2i+1}` the downsample into stage i+1, `attn.Proj`, `linear.*`, `layer_scale_1/2`).
- `hf`: HF transformers (`MBZUAI/swiftformer-*`), upstream renamed by its conversion script
  (`swiftformer.encoder.network.{2i}.blocks.{j}`, `depth_wise_conv`, `point_wise_conv1/2`, `attn.proj`).
- `timm`: `stem.N`, `stages.{i}.downsample`, `stages.{i}.blocks.{j}`, `layer_scale*.gamma`, `head_dist`.
- `native`: our own names (`swiftformer_qnn.model.swiftformer`).

Converters are pure functions on dicts of tensors; `load_weights` is the one entry point the
pipeline uses and the only place that raises `WeightsError` for a checkpoint that does not fit.
"""

from __future__ import annotations

import argparse
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from ..core.atomic import sha256_file
from ..core.errors import WeightsError
from .swiftformer import AttentionForm, build_model, set_attention_form
from .variants import VARIANTS, BlockKind, Variant

# Where our own safetensors files record the attention form their weights were trained for.
ATTENTION_METADATA_KEY = "swiftformer_qnn.attention"

# Training-script wrappers around the state dict, in the order we prefer them: upstream's
# main.py saves {"model", "model_ema", "optimizer", "args", ...}; Lightning saves "state_dict".
_WRAPPER_KEYS = ("model", "state_dict", "model_ema")
# DataParallel / Lightning prefixes put in front of every key.
_GLOBAL_PREFIXES = ("module.", "model.")


class CheckpointFormat(str, Enum):
    """The key naming a checkpoint uses."""

    UPSTREAM = "upstream"  # Amshaker/SwiftFormer models/swiftformer.py
    HF = "hf"  # transformers SwiftFormerForImageClassification / SwiftFormerModel
    TIMM = "timm"  # timm/models/swiftformer.py
    NATIVE = "native"  # swiftformer_qnn.model.swiftformer


@dataclass
class LoadedWeights:
    """What `load_weights` loaded, for the run manifest and the user."""

    path: Path
    format: CheckpointFormat
    sha256: str
    implied_attention: AttentionForm
    effective_attention: AttentionForm
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading files


@dataclass
class _RawCheckpoint:
    state_dict: dict[str, torch.Tensor]
    wrapper: str | None
    metadata: dict[str, str]


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth/.pt/.bin` (torch.save) or `.safetensors` file, unwrapped."""
    return _read_checkpoint(Path(path)).state_dict


def _read_checkpoint(path: Path) -> _RawCheckpoint:
    if not path.exists():
        raise WeightsError(f"Weights file {path} does not exist.", hint="Check the --weights path.")
    if path.is_dir():
        inside = [
            p.name for p in sorted(path.iterdir()) if p.suffix in (".safetensors", ".bin", ".pth", ".pt")
        ]
        hint = (
            f"Point --weights at the file inside it, e.g. {path / inside[0]}."
            if inside
            else "Point --weights at a .pth, .bin or .safetensors file."
        )
        raise WeightsError(f"{path} is a directory, not a checkpoint file.", hint=hint)
    if path.stat().st_size == 0:
        raise WeightsError(f"{path.name} is empty.", hint="Re-download it.")
    try:
        safetensors = _is_safetensors(path)
    except OSError as exc:
        raise WeightsError(f"Cannot read {path} ({exc.strerror}).", hint="Check its permissions.") from exc
    return _read_safetensors(path) if safetensors else _read_torch(path)


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: safetensors starts with a little-endian header size then `{`."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(path: Path) -> _RawCheckpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError and OSErrors
        raise WeightsError(
            f"{path.name} is not a readable safetensors file ({_first_line(exc)}).",
            hint="Re-download it; a truncated download looks like this.",
        ) from exc
    if not tensors:
        raise WeightsError(f"{path.name} holds no tensors.", hint="Pass a SwiftFormer checkpoint.")
    return _RawCheckpoint(_strip_global_prefix(tensors), None, metadata)


def _read_torch(path: Path) -> _RawCheckpoint:
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it reads fine; the library never prints.
            warnings.simplefilter("ignore", UserWarning)
            # Upstream's main.py stores its argparse Namespace next to the weights; it is plain
            # data, so allowing it keeps full training checkpoints loadable without weights_only=False.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            if found and (found.group(1).endswith(".") or _ends_with(path, found.group(1).rsplit(".", 1)[-1])):
                # A legacy (non-zip) file cut inside a class name: truncated, not unsafe.
                raise WeightsError(f"{path.name} is truncated (it ends inside its data).",
                                   hint="Re-download or re-save it.") from exc
            if not found and "Unsupported operand" in text:
                # Not a pickle at all (a text file, an HTML error page saved as .pth, random bytes):
                # safe loading stops at the first byte that is no pickle opcode.
                raise WeightsError(f"{path.name} is not a PyTorch checkpoint (it is not torch.save data).",
                                   hint="Pass a .pth/.pt/.bin written by torch.save, or a .safetensors file.") from exc
            what = f"a pickled {found.group(1)} object" if found else "pickled Python objects"
            raise WeightsError(
                f"{path.name} contains {what}, which safe loading (torch.load weights_only=True) refuses.",
                hint="If you trust the file, re-save only its state dict "
                "(torch.save(model.state_dict(), 'weights.pth')) or convert it to .safetensors.",
            ) from exc
        raise WeightsError(
            f"{path.name} is not a PyTorch checkpoint ({_first_line(exc)}).",
            hint="Pass a .pth/.pt/.bin written by torch.save, or a .safetensors file.",
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, struct.error) as exc:
        # Truncated zips fail with RuntimeError (a useful message); text files with a bare KeyError;
        # truncated legacy (non-zip) files also with IndexError or struct.error.
        reason = _first_line(exc) if isinstance(exc, (RuntimeError, ValueError, OSError)) else ""
        raise WeightsError(
            f"{path.name} is not a readable PyTorch checkpoint ({reason or 'not torch.save data'}).",
            hint="Pass a .pth/.pt/.bin written by torch.save or a .safetensors file; re-download it if truncated.",
        ) from exc
    return _unwrap(obj, path)


def _ends_with(path: Path, text: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 256))
            last_line = f.read().rsplit(b"\n", 1)[-1]  # torch reports the cut name one byte short
            return bool(text) and last_line.startswith(text.encode())
    except OSError:
        return False


def _unwrap(obj: object, path: Path) -> _RawCheckpoint:
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path.name} holds a {type(obj).__name__}, not a state dict.",
            hint="Pass a checkpoint saved from model.state_dict().",
        )
    wrapper = None
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj, wrapper = obj[key], key
            break
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        seen = ", ".join(map(str, list(obj)[:5])) or "none"
        raise WeightsError(
            f"{path.name} holds no tensors (top-level keys: {seen}).",
            hint="Pass a SwiftFormer checkpoint (a state dict, or one under 'model' / 'state_dict').",
        )
    return _RawCheckpoint(_strip_global_prefix(tensors), wrapper, {})


def _strip_global_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _GLOBAL_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else ""


# ---------------------------------------------------------------------------------------------
# Format detection


# Key prefixes that only one format produces, full model or a bare encoder block.
_SIGNATURES: dict[CheckpointFormat, tuple[str, ...]] = {
    CheckpointFormat.NATIVE: (
        "stem.conv1.",
        "stem.norm1.",
        "stage0.",
        "head.fc.",
        "head.dist_fc.",
        "swiftformer_encoder.",
        "attention.",
        "mlp.",
        "attention_scale",
        "mlp_scale",
    ),
    CheckpointFormat.HF: (
        "swiftformer.",
        "encoder.network.",
        "patch_embed.patch_embedding.",
        "local_representation.depth_wise_conv.",
    ),
    CheckpointFormat.TIMM: (
        "stages.",
        "stem.0.",
        "stem.1.",
        "head_dist.",
        "layer_scale_1.gamma",
        "layer_scale_2.gamma",
    ),
    CheckpointFormat.UPSTREAM: ("network.", "patch_embed.0.", "patch_embed.1.", "attn.Proj."),
}


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> CheckpointFormat:
    """Which naming `state_dict` uses: the format whose signature prefixes most keys carry."""
    counts = {
        fmt: sum(1 for k in state_dict if k.startswith(prefixes)) for fmt, prefixes in _SIGNATURES.items()
    }
    best = max(counts, key=lambda fmt: counts[fmt])
    if counts[best] == 0:
        seen = ", ".join(list(state_dict)[:4]) or "no keys"
        raise WeightsError(
            f"Not a SwiftFormer checkpoint in any known naming (keys seen: {seen}).",
            hint="Pass upstream (Amshaker/SwiftFormer), HF transformers, timm or swiftformer-qnn weights.",
        )
    return best


# ---------------------------------------------------------------------------------------------
# Key conversion


_STEM_LAYERS = {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}  # 2 and 5 are ReLUs
_HEAD_NAMES = {
    CheckpointFormat.UPSTREAM: {"norm": "norm", "fc": "head", "dist_fc": "dist_head"},
    CheckpointFormat.HF: {"norm": "norm", "fc": "head", "dist_fc": "dist_head"},
    CheckpointFormat.TIMM: {"norm": "norm", "fc": "head", "dist_fc": "head_dist"},
}


def _block_names(fmt: CheckpointFormat) -> dict[str, str]:
    """Our block-internal names (module paths and parameters) -> `fmt`'s, for both block kinds."""
    hf, timm = fmt is CheckpointFormat.HF, fmt is CheckpointFormat.TIMM
    gamma = ".gamma" if timm else ""  # timm wraps every layer scale in a LayerScale2d module
    conv = {
        "dwconv": "depth_wise_conv" if hf else "dwconv",
        "norm": "norm",
        "pwconv1": "point_wise_conv1" if hf else "pwconv1",
        "pwconv2": "point_wise_conv2" if hf else "pwconv2",
        "layer_scale": "layer_scale" + gamma,
    }
    names = dict(conv)
    names.update(
        {f"local_representation.{ours}": f"local_representation.{theirs}" for ours, theirs in conv.items()}
    )
    names.update(
        {
            "attention.to_query": "attn.to_query",
            "attention.to_key": "attn.to_key",
            "attention.w_g": "attn.w_g",
            "attention.proj": "attn.Proj" if fmt is CheckpointFormat.UPSTREAM else "attn.proj",
            "attention.final": "attn.final",
            "mlp.norm": "linear.norm1",
            "mlp.fc1": "linear.fc1",
            "mlp.fc2": "linear.fc2",
            "attention_scale": "layer_scale_1" + gamma,
            "mlp_scale": "layer_scale_2" + gamma,
        }
    )
    return names


# Foreign block-internal name -> ours, over every format. The formats never disagree on a name,
# so one table accepts e.g. an upstream file whose fork spelled `attn.proj` in lower case.
_BLOCK_TO_NATIVE: dict[str, str] = {
    theirs: ours
    for fmt in (
        CheckpointFormat.UPSTREAM,
        CheckpointFormat.HF,
        CheckpointFormat.TIMM,
        CheckpointFormat.NATIVE,
    )
    for ours, theirs in _block_names(fmt).items()
}
_ENCODER_ONLY_PREFIXES = ("local_representation.", "attention.", "mlp.", "attention_scale", "mlp_scale")


def _rename_prefix(key: str, table: Mapping[str, str]) -> str | None:
    """Rename the longest table entry that is `key` or a dotted prefix of it; None if none is."""
    best = None
    for old in table:
        if (key == old or key.startswith(old + ".")) and (best is None or len(old) > len(best)):
            best = old
    return None if best is None else table[best] + key[len(best) :]


def _native_block_key(stage: int, index: int, rest: str) -> str:
    inner = _rename_prefix(rest, _BLOCK_TO_NATIVE) or rest
    kind = (
        BlockKind.SWIFTFORMER_ENCODER if inner.startswith(_ENCODER_ONLY_PREFIXES) else BlockKind.CONV_ENCODER
    )
    return f"stage{stage}.block{index}_{kind.value}.{inner}"


_OUTER_PATTERNS: dict[CheckpointFormat, list[tuple[str, str]]] = {
    # (regex, role); groups: stem (layer, rest), block (n, j, rest), down (n, rest), head (name, rest)
    CheckpointFormat.UPSTREAM: [
        (r"patch_embed\.(\d)\.(.+)", "stem"),
        (r"network\.(\d+)\.(\d+)\.(.+)", "block_interleaved"),
        (r"network\.(\d+)\.(.+)", "down_interleaved"),
        (r"(norm|head|dist_head)\.(.+)", "head"),
    ],
    CheckpointFormat.HF: [
        (r"(?:swiftformer\.)?patch_embed\.patch_embedding\.(\d)\.(.+)", "stem"),
        (r"(?:swiftformer\.)?encoder\.network\.(\d+)\.blocks\.(\d+)\.(.+)", "block_interleaved"),
        (r"(?:swiftformer\.)?encoder\.network\.(\d+)\.(.+)", "down_interleaved"),
        (r"(norm|head|dist_head)\.(.+)", "head"),
    ],
    CheckpointFormat.TIMM: [
        (r"stem\.(\d)\.(.+)", "stem"),
        (r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", "block"),
        (r"stages\.(\d+)\.downsample\.(.+)", "down"),
        (r"(norm|head|head_dist)\.(.+)", "head"),
    ],
}


def to_native(state_dict: Mapping[str, torch.Tensor], fmt: CheckpointFormat) -> dict[str, torch.Tensor]:
    """Rename `state_dict` from `fmt` to our module names.

    A full model maps onto `SwiftFormer`'s names; a bare encoder block onto `EncoderBlockModel`'s
    (`swiftformer_encoder.*`). Keys no rule knows are kept as they are, so the strict load
    reports them as unexpected instead of silently dropping them.
    """
    if fmt is CheckpointFormat.NATIVE:
        return {_native_bare_block(k): v for k, v in state_dict.items()}
    head_names = {theirs: ours for ours, theirs in _HEAD_NAMES[fmt].items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        out[_to_native_key(key, fmt, head_names)] = value
    return out


def _native_bare_block(key: str) -> str:
    """Our block names without the `swiftformer_encoder.` prefix (a bare block state dict) get it."""
    if key.startswith(_ENCODER_ONLY_PREFIXES):
        return f"swiftformer_encoder.{key}"
    return key


def _to_native_key(key: str, fmt: CheckpointFormat, head_names: Mapping[str, str]) -> str:
    for pattern, role in _OUTER_PATTERNS[fmt]:
        m = re.fullmatch(pattern, key)
        if not m:
            continue
        if role == "stem" and m.group(1) in _STEM_LAYERS:
            return f"stem.{_STEM_LAYERS[m.group(1)]}.{m.group(2)}"
        if role == "block_interleaved" and int(m.group(1)) % 2 == 0:
            # network.{2i} is stage i's blocks
            return _native_block_key(int(m.group(1)) // 2, int(m.group(2)), m.group(3))
        if role == "down_interleaved" and int(m.group(1)) % 2 == 1:
            # network.{2i+1} downsamples INTO stage i+1; we keep it at the head of that stage
            return f"stage{(int(m.group(1)) + 1) // 2}.downsample.{m.group(2)}"
        if role == "block":
            return _native_block_key(int(m.group(1)), int(m.group(2)), m.group(3))
        if role == "down":
            return f"stage{m.group(1)}.downsample.{m.group(2)}"
        if role == "head":
            return f"head.{head_names[m.group(1)]}.{m.group(2)}"
    # A bare encoder block (no stage/network prefix): its internal names only.
    inner = _rename_prefix(key, _BLOCK_TO_NATIVE)
    if inner is not None and inner.startswith(_ENCODER_ONLY_PREFIXES):
        return f"swiftformer_encoder.{inner}"
    return key


# ---------------------------------------------------------------------------------------------
# What a checkpoint is for


_BLOCK_KEY = re.compile(r"stage(\d+)\.block(\d+)_(conv_encoder|swiftformer_encoder)\.(.+)")


@dataclass(frozen=True)
class _Layout:
    """Stage widths and depths read off a native full-model state dict."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]

    @property
    def variant(self) -> Variant | None:
        full = [v for v in VARIANTS.values() if not v.is_encoder_block]
        exact = [v for v in full if v.widths == self.widths and v.depths == self.depths]
        by_width = [v for v in full if v.widths == self.widths]
        return (exact or by_width or [None])[0]

    def describe(self) -> str:
        return f"stage widths {_slashed(self.widths)}, depths {_slashed(self.depths)}"


def _layout(native: Mapping[str, torch.Tensor]) -> _Layout | None:
    widths: dict[int, int] = {}
    depths: dict[int, int] = {}
    for key, value in native.items():
        m = _BLOCK_KEY.fullmatch(key)
        if not m:
            continue
        stage, index, inner = int(m.group(1)), int(m.group(2)), m.group(4)
        depths[stage] = max(depths.get(stage, 0), index + 1)
        if inner in ("dwconv.weight", "local_representation.dwconv.weight"):
            widths[stage] = int(value.shape[0])
    if not widths or sorted(widths) != list(range(len(widths))):
        return None
    return _Layout(tuple(widths[i] for i in range(len(widths))), tuple(depths[i] for i in range(len(widths))))


def _slashed(values: tuple[int, ...]) -> str:
    return "/".join(map(str, values))


def _short_title(variant: Variant) -> str:
    return variant.title.removeprefix("SwiftFormer-")


# ---------------------------------------------------------------------------------------------
# Loading into our model


def implied_attention(fmt: CheckpointFormat, metadata: Mapping[str, str] | None = None) -> AttentionForm:
    """The attention form weights of this format were trained with."""
    if fmt is CheckpointFormat.HF:
        return AttentionForm.SOFTMAX  # converted from the first (softmax) release; HF still runs softmax
    if (
        fmt is CheckpointFormat.NATIVE
        and metadata
        and metadata.get(ATTENTION_METADATA_KEY) in {f.value for f in AttentionForm}
    ):
        return AttentionForm(metadata[ATTENTION_METADATA_KEY])
    return AttentionForm.NORMALIZE  # upstream's July 2023 re-release, which timm follows


def load_weights(
    model: nn.Module,
    path: str | Path,
    variant: Variant,
    attention_requested: AttentionForm | str | None = None,
    *,
    sha256: str | None = None,
) -> LoadedWeights:
    """Load a checkpoint of any known format into `model` (strictly) and set its attention form.

    `sha256`: the file's hash when the caller already has it (checkpoints can be large)."""
    path = Path(path)
    raw = _read_checkpoint(path)
    fmt = detect_format(raw.state_dict)
    native = to_native(raw.state_dict, fmt)
    notes: list[str] = []
    if raw.wrapper:
        notes.append(f"Loaded the state dict stored under {raw.wrapper!r} in {path.name}.")
    if variant.is_encoder_block:
        native = _encoder_block_weights(native, variant, path.name, notes)
    elif native and all(k.startswith("swiftformer_encoder.") for k in native):
        raise WeightsError(
            f"{path.name} holds a single SwiftFormerEncoder block, not a full {variant.title}.",
            hint="Pass --variant encoder to use it, or full-model weights.",
        )
    expected = model.state_dict()
    _check_kinds(native, expected, path.name)
    native = _fit_to_model(native, expected, notes)
    _check_fits(native, expected, path.name, variant)
    _check_finite(native, path.name)
    model.load_state_dict(native, strict=True)

    implied = implied_attention(fmt, raw.metadata)
    effective = AttentionForm(attention_requested) if attention_requested is not None else implied
    set_attention_form(model, effective)
    notes.extend(_attention_notes(fmt, implied, effective, raw.metadata))
    return LoadedWeights(path, fmt, sha256 or sha256_file(path), implied, effective, notes)


def check_checkpoint(path: str | Path, variant: Variant, attention_requested: AttentionForm | str | None = None) -> None:
    """Refuse, with `load_weights`'s one line, a file that is not a checkpoint of `variant`.

    The export calls this before it looks at its output folder, so a junk or mismatched file
    is reported as itself, not hidden behind "that folder holds another request"."""
    load_weights(build_model(variant), path, variant, attention_requested, sha256="not computed")


def _wrong_kind(value: object, target: torch.Tensor | None) -> str | None:
    """Why `value` cannot be a weight where the model holds `target`; None when it can."""
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    if value.is_meta:
        return "a meta tensor (a shape without values)"
    if value.layout is not torch.strided:
        return f"a sparse tensor ({str(value.layout).removeprefix('torch.')})"
    if value.is_complex():
        return f"a complex tensor ({str(value.dtype).removeprefix('torch.')})"
    if target is not None and target.is_floating_point() and not value.is_floating_point():
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{'an' if dtype.startswith('int') else 'a'} {dtype} tensor where the model holds float weights"
    return None


def _check_kinds(tensors: Mapping[str, object], expected: Mapping[str, torch.Tensor], name: str) -> None:
    """Integer, bool, complex, sparse or meta tensors where float weights belong: said by name,
    before a silent cast (an int weight loads as rounded floats) or a failure far later."""
    bad = [(k, why) for k, v in tensors.items() if (why := _wrong_kind(v, expected.get(k)))]
    if bad:
        (k, why), more = bad[0], len(bad) - 1
        raise WeightsError(
            f"{name}: {k} is {why}" + (f" (and {more} more tensor{'s' if more != 1 else ''} like it)" if more else "") + ".",
            hint="Pass a checkpoint of float weights (as training saves them), not a quantized, sparse or meta export.",
        )


def _check_finite(tensors: Mapping[str, torch.Tensor], name: str) -> None:
    """NaN or infinity in a weight makes every output NaN; say which tensors, before any export."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise WeightsError(
            f"{name} has NaN or infinite values in {len(bad)} tensor(s): {shown}.",
            hint="The checkpoint is damaged (or from a diverged training run); use another one.",
        )


def _encoder_block_weights(
    native: dict[str, torch.Tensor], variant: Variant, name: str, notes: list[str]
) -> dict[str, torch.Tensor]:
    """The standalone block's weights: a block-only dict as is, else the first stage of matching width."""
    prefix = "swiftformer_encoder."
    if native and all(k.startswith(prefix) for k in native):
        return native
    layout = _layout(native)
    if layout is None:
        return native  # neither a block nor a model we can read: the strict check names the keys
    dim = variant.encoder_dim
    for stage, width in enumerate(layout.widths):
        if width != dim:
            continue
        blocks = sorted(
            {
                (int(m.group(2)), m.group(0).split(".")[1])
                for k in native
                if (m := _BLOCK_KEY.fullmatch(k))
                and int(m.group(1)) == stage
                and m.group(3) == BlockKind.SWIFTFORMER_ENCODER.value
            }
        )
        if not blocks:
            continue
        block = blocks[-1][1]  # the stage's last SwiftFormerEncoder (vit_num=1: its only one)
        source = f"stage{stage}.{block}."
        which = layout.variant.title if layout.variant else f"a SwiftFormer ({layout.describe()})"
        notes.append(
            f"Took the encoder block's weights from {source.rstrip('.')} of this {which} checkpoint "
            f"(stage {stage}, the first of width {dim})."
        )
        return {prefix + k[len(source) :]: v for k, v in native.items() if k.startswith(source)}
    others = sorted(set(layout.widths))
    raise WeightsError(
        f"{name} has stage widths {_slashed(layout.widths)}; none equals the encoder block's dim {dim}.",
        hint=f"Pass --encoder-dim {others[0]} (or {', '.join(map(str, others[1:]))}) to take that stage's "
        f"block, or weights with a width-{dim} stage (L1).",
    )


def _fit_to_model(
    native: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], notes: list[str]
) -> dict[str, torch.Tensor]:
    """Bridge representational differences that carry the same numbers.

    Layer scales are (dim,) in some exports and (dim, 1, 1) in ours; BN's `num_batches_tracked`
    counter is absent from some conversions and means nothing at inference.
    """
    out = dict(native)
    reshaped = 0
    for key, value in native.items():
        target = expected.get(key)
        if (
            target is not None
            and key.endswith(("layer_scale", "attention_scale", "mlp_scale"))
            and value.shape != target.shape
            and value.numel() == target.numel()
        ):
            out[key] = value.reshape(target.shape)
            reshaped += 1
    if reshaped:
        notes.append(f"Reshaped {reshaped} layer scales to (dim, 1, 1).")
    for key, target in expected.items():
        # Only for a BN whose statistics are there: a missing BN must still be reported missing.
        if key.endswith("num_batches_tracked") and key not in out:
            if key.removesuffix("num_batches_tracked") + "running_mean" in out:
                out[key] = target.clone()
    dtypes = {v.dtype for k, v in out.items() if v.is_floating_point()}
    if dtypes - {torch.float32}:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        notes.append(f"Weights are stored as {names}; loaded into float32.")
    return out


def _check_fits(
    native: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], name: str, variant: Variant
) -> None:
    """Raise one readable WeightsError if `native` does not load strictly into the model."""
    missing = [k for k in expected if k not in native]
    unexpected = [k for k in native if k not in expected]
    wrong = [
        (k, tuple(native[k].shape), tuple(t.shape))
        for k, t in expected.items()
        if k in native and native[k].shape != t.shape
    ]
    if not (missing or unexpected or wrong):
        return
    problems = []
    if wrong:
        k, got, want = wrong[0]
        problems.append(f"{_keys(len(wrong))} the wrong shape, e.g. {k} {_shape(got)} vs {_shape(want)}")
    if missing:
        problems.append(f"{_keys(len(missing), 'is')} missing, e.g. {', '.join(missing[:2])}")
    if unexpected:
        problems.append(f"{_keys(len(unexpected), 'is')} unexpected, e.g. {', '.join(unexpected[:2])}")
    detail = "; ".join(problems)
    # For a checkpoint of another size, one example says it all; the rest are just counts.
    counts = [f"{len(missing)} missing"] * bool(missing) + [f"{len(unexpected)} unexpected"] * bool(
        unexpected
    )
    brief = problems[0] if wrong else detail
    if wrong and counts:
        brief += f" ({', '.join(counts)})"

    if variant.is_encoder_block:
        dim = native.get("swiftformer_encoder.local_representation.dwconv.weight")
        if dim is not None and dim.shape[0] != variant.encoder_dim:
            raise WeightsError(
                f"{name} holds an encoder block of dim {dim.shape[0]}, not {variant.encoder_dim}: {brief}.",
                hint=f"Pass --encoder-dim {dim.shape[0]}.",
            )
        raise WeightsError(
            f"{name} does not fit the encoder block (dim {variant.encoder_dim}): {detail}.",
            hint="Pass a SwiftFormer checkpoint or a block-only state dict.",
        )
    layout = _layout(native)
    found = layout.variant if layout else None
    if found is not None and found != variant:
        raise WeightsError(
            f"{name} is a {found.title} checkpoint ({layout.describe()}), "
            f"not {_short_title(variant)}: {brief}.",
            hint=f"Pass --variant {found.name} or the {_short_title(variant)} weights.",
        )
    if layout is not None and found is None:
        raise WeightsError(
            f"{name} is for a SwiftFormer with {layout.describe()}, which is no known variant: {brief}.",
            hint="Pass xs/s/l1/l3 weights.",
        )
    head_only = all(k.startswith("head.fc.") or k.startswith("head.dist_fc.") for k, _, _ in wrong)
    if wrong and head_only and not missing and not unexpected:
        classes = native["head.fc.weight"].shape[0] if "head.fc.weight" in native else wrong[0][1][0]
        raise WeightsError(
            f"{name} has a {classes}-class classifier; the model is built for ImageNet-1k's 1000 classes.",
            hint="Pass ImageNet-1k weights (fine-tuned heads are not supported yet).",
        )
    raise WeightsError(
        f"{name} does not fit {variant.title}: {detail}.",
        hint="The file looks truncated or comes from a modified model; re-download or re-export it.",
    )


def _keys(n: int, verb: str = "has") -> str:
    """`1 key has` / `12 keys have` (verb `has` or `is`)."""
    plural = {"has": "have", "is": "are"}[verb]
    return f"1 key {verb}" if n == 1 else f"{n} keys {plural}"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def _attention_notes(
    fmt: CheckpointFormat, implied: AttentionForm, effective: AttentionForm, metadata: Mapping[str, str]
) -> list[str]:
    notes = []
    if fmt is CheckpointFormat.UPSTREAM:
        notes.append(
            "Upstream weights are taken as the July 2023 re-release (normalize attention); upstream .pth "
            "files downloaded before July 2023 are softmax-form: use --attention softmax for them."
        )
    elif fmt is CheckpointFormat.HF:
        notes.append(
            "HF transformers weights were converted from SwiftFormer's first release and run with softmax "
            "attention, so softmax is their form."
        )
    elif fmt is CheckpointFormat.NATIVE and ATTENTION_METADATA_KEY not in metadata:
        notes.append("The file does not record an attention form; assuming normalize (upstream today).")
    if effective is not implied:
        notes.append(
            f"Running {effective.value} attention as requested, although these weights imply "
            f"{implied.value}: outputs will differ from the weights' training."
        )
    return notes


def is_full_checkpoint(path: str | Path) -> bool:
    """True if the file holds a whole SwiftFormer (not a single encoder block)."""
    native = to_native(*_detected(path))
    return not (native and all(k.startswith("swiftformer_encoder.") for k in native))


def _detected(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointFormat]:
    sd = load_checkpoint_file(path)
    return sd, detect_format(sd)

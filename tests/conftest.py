"""Shared test setup: a private stage cache per test session, so tests never reuse a
developer's cached artifacts (and results cannot leak between test runs); the real QDQ exports
and the AI Hub token the profiling tests share."""

from __future__ import annotations

import os
import sys

import pytest

# PyPI's torchvision (pulled in by timm, a test extra) is a CUDA build that fails to import beside
# the CPU torch these machines use ("operator torchvision::nms does not exist"), and transformers
# imports it whenever it finds it installed. Nothing here uses torchvision: hide it, so transformers
# and timm run as on a machine without it (timm gets a stand-in: tests/timm_reference.py).
sys.modules.setdefault("torchvision", None)


@pytest.fixture(scope="session", autouse=True)
def _private_stage_cache(tmp_path_factory):
    old = os.environ.get("SWIFTFORMER_QNN_CACHE")
    os.environ["SWIFTFORMER_QNN_CACHE"] = str(tmp_path_factory.mktemp("stage-cache"))
    yield
    if old is None:
        os.environ.pop("SWIFTFORMER_QNN_CACHE", None)
    else:
        os.environ["SWIFTFORMER_QNN_CACHE"] = old


# Real QDQ exports for the profiling tests (AI Hub, the profile CLI, the estimate), built once.
@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict[str, dict]:
    """Real QDQ graphs (realistic random weights): SwiftFormer-XS at 64 px, the encoder block at 32."""
    from aihub_standin import real_qdq_model

    d = tmp_path_factory.mktemp("qdq-onnx")
    return {variant: real_qdq_model(variant, res, d) for variant, res in (("xs", 64), ("encoder", 32))}


@pytest.fixture
def exports(onnx_models, tmp_path) -> dict:
    """A w8a8 export directory of each of `onnx_models` in this test's tmp_path (a module may
    define its own `exports`, which then takes precedence there)."""
    from aihub_standin import make_export_dir

    from swiftformer_qnn.model.variants import get_variant

    return {v: make_export_dir(tmp_path / "exports" / v, qdq=m["qdq"], sim=m["sim"], variant=v, precision="w8a8",
                               input_shape=list(get_variant(v).input_shape(m["res"])))
            for v, m in onnx_models.items()}


@pytest.fixture
def token() -> str:
    """An AI Hub API token for the stand-in, new for each test."""
    import secrets

    return f"sfq-test-token-{secrets.token_hex(12)}"

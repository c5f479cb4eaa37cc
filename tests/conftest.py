"""Shared test setup: a private stage cache per test session, so tests never reuse a
developer's cached artifacts (and results cannot leak between test runs)."""

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

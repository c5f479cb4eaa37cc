"""One parser for every QNN / QAIRT version string as Qualcomm writes them."""

from __future__ import annotations

import pytest

from swiftformer_qnn.core.versions import (
    is_version_tag,
    parse_qnn_version,
    same_release,
    sdk_version_from_metadata,
    short_version,
    version_key,
)


@pytest.mark.parametrize(
    "text, release, build",
    [
        ("2.42.0.251225135753_193295", (2, 42, 0), "251225135753_193295"),  # AI Hub QAIRT string
        ("v2.51.0.260929181845", (2, 51, 0), "260929181845"),  # EPContext ep_sdk_version
        ("2.51", (2, 51), None),
        ("2.51.0", (2, 51, 0), None),
        (" qnn-2.49.40 ", (2, 49, 40), None),
        ("QAIRT 2.36", (2, 36), None),
        ("2.42.0_193295", (2, 42, 0), "193295"),
    ],
)
def test_forms_qualcomm_writes(text, release, build):
    v = parse_qnn_version(text)
    assert v is not None and (v.release, v.build) == (release, build)
    assert short_version(text) == ".".join(map(str, release))


@pytest.mark.parametrize("text", ["latest", "default", "2", "", None, "2.51rc1", "1!2.51", "v", "abc.def", "2.x"])
def test_non_versions(text):
    assert parse_qnn_version(text) is None and short_version(text) is None and version_key(text) == ()


def test_order_is_numeric_and_builds_sort_after_their_release():
    texts = ["2.51.0", "2.9", "2.17", "v2.16.4.240122", "2.42.0.251225135753_193295", "2.42.0"]
    assert sorted(texts, key=version_key) == [
        "2.9", "v2.16.4.240122", "2.17", "2.42.0", "2.42.0.251225135753_193295", "2.51.0"]


@pytest.mark.parametrize("requested, actual, same", [
    ("2.42", "2.42.0.251225135753_193295", True),
    ("2.42.0", "2.42.0.251225135753_193295", True),
    ("2.42.1", "2.42.0.251225135753_193295", False),
    ("2.4", "2.42.0", False),  # a string prefix is another release
    ("latest", "2.42.0", False),
    ("2.42.0.999", "2.42.0.1", True),  # builds never matter
])
def test_same_release(requested, actual, same):
    assert same_release(requested, actual) is same


def test_metadata_prefers_qairt_over_qnn():
    from qai_hub.client import ModelMetadataKey

    both = {ModelMetadataKey.QNN_SDK_VERSION: "v2.42.0.1", ModelMetadataKey.QAIRT_SDK_VERSION: "2.42.0.251225135753_193295"}
    assert sdk_version_from_metadata(both) == "2.42.0.251225135753_193295"
    assert sdk_version_from_metadata({"QNN_SDK_VERSION": "v2.31.0.250130"}) == "v2.31.0.250130"
    assert sdk_version_from_metadata({}) is None and sdk_version_from_metadata(None) is None


def test_tags():
    assert is_version_tag(" Latest ") and is_version_tag("default") and not is_version_tag("2.42")

"""`--device` spellings -> AI Hub device names / the emulator (pure, no network)."""

from __future__ import annotations

import pytest

from swiftformer_qnn.core.errors import UsageError
from swiftformer_qnn.core.targets import SOCS
from swiftformer_qnn.profiling.devices import (
    HUB_DEVICES,
    Backend,
    device_slug,
    is_list_request,
    known_aliases,
    resolve_device,
)

S23U = "Samsung Galaxy S23 Ultra"


@pytest.mark.parametrize(
    "query",
    [
        "Samsung Galaxy S23 Ultra",
        "Galaxy S23 Ultra",
        "galaxy-s23-ultra",
        "s23 ultra",
        "S23Ultra",
        "s23u",
        # chipsets resolve to their reference phone
        "sm8550",
        "SM8550",
        "8gen2",
        "8 Gen 2",
        "Snapdragon 8 Gen 2",
        "qualcomm-snapdragon-8gen2",
        "chipset:qualcomm-snapdragon-8gen2",
    ],
)
def test_s23_ultra_spellings(query):
    target = resolve_device(query)
    assert target.backend is Backend.AIHUB
    assert target.name == S23U
    assert target.soc is SOCS["sm8550"]
    assert target.chipset == "qualcomm-snapdragon-8gen2"
    assert target.known
    assert target.attributes == ()


@pytest.mark.parametrize(
    ("query", "name", "soc"),
    [
        ("Galaxy S23", "Samsung Galaxy S23", "sm8550"),
        ("s23+", "Samsung Galaxy S23+", "sm8550"),
        ("s24 ultra", "Samsung Galaxy S24 Ultra", "sm8650"),
        ("8gen3", "Samsung Galaxy S24 Ultra", "sm8650"),
        ("qualcomm-snapdragon-8gen1", "Samsung Galaxy S22 Ultra 5G", "sm8450"),
        ("s22 ultra", "Samsung Galaxy S22 Ultra 5G", "sm8450"),
        ("s25 ultra", "Samsung Galaxy S25 Ultra", "sm8750"),
    ],
)
def test_other_devices_and_chipsets(query, name, soc):
    target = resolve_device(query)
    assert (target.name, target.soc.name) == (name, soc)


def test_8_elite_is_the_qrd_chipset_not_the_s25_ultra():
    # The S25 Ultra's chipset on AI Hub is qualcomm-snapdragon-8-elite-for-galaxy (read from the
    # service when profiling); "8 elite" names the QRD's chipset attribute.
    target = resolve_device("8 elite")
    assert target.name is None and target.attributes == ("chipset:qualcomm-snapdragon-8-elite",)


def test_chipset_without_reference_phone_selects_by_attribute():
    # SM8475 has no example device in targets.SOCS: AI Hub picks by chipset attribute.
    target = resolve_device("sm8475")
    assert target.name is None
    assert target.attributes == ("chipset:qualcomm-snapdragon-8plusgen1",)
    assert target.display_name == "chipset:qualcomm-snapdragon-8plusgen1"


def test_unknown_names_pass_through_for_ai_hub_to_judge():
    target = resolve_device("Google Pixel 8")
    assert target.backend is Backend.AIHUB
    assert (target.name, target.known, target.soc) == ("Google Pixel 8", False, None)


@pytest.mark.parametrize("query", ["emulator", "EMULATOR", "local", "htp-emulator", "HTP emulator"])
def test_emulator(query):
    target = resolve_device(query)
    assert target.backend is Backend.EMULATOR
    assert target.name is None
    assert "emulator" in target.display_name.lower()


def test_empty_device_is_a_usage_error():
    with pytest.raises(UsageError):
        resolve_device("  ")


def test_list_requests():
    assert is_list_request("list") and is_list_request("LIST")
    assert not is_list_request("sm8550") and not is_list_request(None)


def test_slugs_are_file_name_safe():
    assert device_slug("Samsung Galaxy S23 Ultra") == "samsung-galaxy-s23-ultra"
    assert device_slug("Samsung Galaxy S23+") == "samsung-galaxy-s23plus"
    assert device_slug("HTP emulator (x86_64, onnxruntime-qnn)") == "htp-emulator-x86-64-onnxruntime-qnn"
    assert resolve_device("sm8550").slug == "samsung-galaxy-s23-ultra"


def test_every_declared_device_resolves_to_itself_and_its_aliases():
    aliases = known_aliases()
    for dev in HUB_DEVICES:
        assert resolve_device(dev.name).name == dev.name
        for spelling in aliases[dev.name]:
            assert resolve_device(spelling).name == dev.name, spelling


def test_reference_phones_come_from_the_soc_table():
    # A chipset resolves to targets.SOCS' example_device, so the two tables must agree.
    names = {d.name for d in HUB_DEVICES}
    for soc in SOCS.values():
        if soc.example_device:
            assert soc.example_device in names
            assert resolve_device(soc.name).name == soc.example_device

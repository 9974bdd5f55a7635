"""Tests for mecfed.model.system: the MEC 040 EndPoint and SystemRecord
(moved here from tests/mef/test_registry.py; their proto conversion is
tested in tests/wire/test_common.py)."""

from __future__ import annotations

import dataclasses

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model import EndPoint, SystemRecord
from tests.model.support import invalid

# --- EndPoint -------------------------------------------------------------


def test_endpoint_lists_become_tuples() -> None:
    ep = EndPoint(addresses=[["h", 1]])  # type: ignore[arg-type]
    assert ep.addresses == (("h", 1),)
    hash(ep)
    assert EndPoint(uris=["u"]).uris == ("u",)  # type: ignore[arg-type]
    assert EndPoint(fqdn=["f"]).fqdn == ("f",)  # type: ignore[arg-type]


# Paths are relative to the EndPoint; the wire layer prefixes them with where
# the endpoint is in the message (tests/wire/test_common.py).
@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({}, "", "exactly one of"),
        ({"uris": ("u",), "fqdn": ("f",)}, "", r"exactly one of .*\(got uris, fqdn\)"),
        ({"uris": ()}, "uris", "must not be empty"),
        ({"fqdn": ()}, "fqdn", "must not be empty"),
        ({"addresses": ()}, "addresses", "must not be empty"),
        ({"uris": ("",)}, "uris[0]", "is required"),
        ({"uris": ("x" * 257,)}, "uris[0]", "is 257 characters long"),
        ({"uris": ("ok", "bad\n")}, "uris[1]", "control characters"),
        ({"fqdn": ("ok", " ")}, "fqdn[1]", "is required"),
        ({"addresses": (("h", 0),)}, "addresses[0].port", "is 0"),
        ({"addresses": (("h", 1), ("h", 65536))}, "addresses[1].port", "is 65536"),
        ({"addresses": (("", 80),)}, "addresses[0].host", "is required"),
        ({"alternative": ""}, "alternative", "is required"),
        ({"uris": tuple(f"u{i}" for i in range(17))}, "uris", "at most 16"),
        ({"fqdn": tuple(f"f{i}" for i in range(17))}, "fqdn", "at most 16"),
    ],
)
def test_endpoint_validation(kwargs: dict, field: str, match: str) -> None:
    with invalid(field, match):
        EndPoint(**kwargs)


def test_endpoint_limits_are_inclusive() -> None:
    EndPoint(uris=tuple(f"u{i}" for i in range(16)))
    EndPoint(uris=("x" * 256,))
    EndPoint(addresses=(("h", 65535), ("h", 1)))
    EndPoint(alternative="a" * 256)


# --- SystemRecord ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "provider", "field", "match"),
    [
        ("", "p", "system_name", "is required"),
        ("n", "", "system_provider", "is required"),
        ("x" * 129, "p", "system_name", "is 129 characters long"),
        ("n", "x" * 129, "system_provider", "is 129 characters long"),
        ("n\n", "p", "system_name", "control characters"),
    ],
)
def test_record_validation(name: str, provider: str, field: str, match: str) -> None:
    with invalid(field, match):
        SystemRecord("", name, provider)


def test_record_limits_are_inclusive() -> None:
    # Ids are at most 64 characters, as everywhere on the API; names 128.
    rec = SystemRecord("i" * 64, "n" * 128, "p" * 128)
    assert rec.endpoint is None
    with invalid("system_id", "is 65 characters long"):
        SystemRecord("i" * 65, "n", "p")


def test_record_replace_validates() -> None:
    rec = SystemRecord("", "n", "p", EndPoint(alternative="x"))
    with pytest.raises(InvalidArgument, match="system_name is 129"):
        dataclasses.replace(rec, system_name="n" * 129)

"""Tests for mecfed.model.checks: every bound at, just inside and just outside
its limits, and for the field paths of InvalidArgument (mecfed.errors)."""

from __future__ import annotations

import ipaddress
import math

import pytest

from mecfed.errors import FieldViolation, InvalidArgument
from mecfed.model import checks as c
from tests.model.support import invalid

DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_bounds_are_the_documented_ones() -> None:
    assert (c.MAX_TEXT, c.MAX_ID, c.MAX_REPLICAS) == (128, 64, 16)
    assert (c.MAX_CPU_MILLICORES, c.MAX_MEMORY_MIB, c.MIN_MEMORY_MIB) == (64_000, 262_144, 6)
    assert c.MAX_PRICE == 10**15
    assert (c.MAX_OFFERS_TO_WAIT_FOR, c.MAX_OFFER_TIMEOUT_MS) == (64, 600_000)
    assert (c.DEFAULT_OFFER_TIMEOUT_MS, c.DEFAULT_ECHO_PORT) == (3000, 7)
    assert (c.MIN_VNI, c.MAX_VNI) == (1, 2**24 - 1)
    assert (c.MIN_TUNNEL_PORT, c.MAX_TUNNEL_PORT) == (1024, 65535)
    assert (c.MAX_CANDIDATES, c.OVERLAY_PREFIX, c.MAX_APP_IPS, c.MAX_IMAGE) == (16, 24, 126, 255)


# --- ids and names -------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "0", "fed-1", "a_b.c:d", "A" * 64, "0x" + "f" * 62, "urn:x.y-z_1"]
)
def test_require_id_accepts(value: str) -> None:
    assert c.require_id(value, "federation_id") == value


def test_require_id_empty_is_required() -> None:
    with invalid("federation_id", "^is required$"):
        c.require_id("", "federation_id")


@pytest.mark.parametrize(
    "value",
    [
        "A" * 65,  # one too long
        "-a",  # leading separator
        "_a",
        ".a",
        ":a",
        "a b",
        "a/b",
        "a@b",
        "é",
        "a\x00",
        "a\n",  # a trailing newline is not part of an id
        "\na",
    ],
)
def test_require_id_rejects(value: str) -> None:
    with invalid("federation_id", "is not a valid id"):
        c.require_id(value, "federation_id")


def test_require_id_message_shortens_long_values() -> None:
    with invalid("x") as info:
        c.require_id("!" * 500, "x")
    assert len(info.value.message) < 300 and "..." in info.value.message


@pytest.mark.parametrize("value", ["a", "9", "svc", "a-b", "a--b", "a" * 63, "0" + "-" * 61 + "z"])
def test_require_name_accepts(value: str) -> None:
    assert c.require_name(value, "service_name") == value


def test_require_name_empty_is_required() -> None:
    with invalid("service_name", "^is required$"):
        c.require_name("", "service_name")


@pytest.mark.parametrize(
    "value", ["a" * 64, "-a", "a-", "A", "svC", "a_b", "a.b", "a b", "svc\n", "ä"]
)
def test_require_name_rejects(value: str) -> None:
    with invalid("service_name", "must be 1..63 characters of"):
        c.require_name(value, "service_name")


# --- text ----------------------------------------------------------------------


def test_require_text_bounds() -> None:
    assert c.require_text("x", "t") == "x"
    assert c.require_text("x" * 128, "t") == "x" * 128
    with invalid("t", "is 129 characters long; at most 128"):
        c.require_text("x" * 129, "t")
    assert c.require_text("x" * 256, "t", max_len=256)
    with invalid("t", "is 257 characters long; at most 256"):
        c.require_text("x" * 257, "t", max_len=256)


@pytest.mark.parametrize("value", ["", " ", "\t", "   "])
def test_require_text_blank_is_required(value: str) -> None:
    with invalid("t", "^is required$"):
        c.require_text(value, "t")


@pytest.mark.parametrize("value", ["a\nb", "a\x00", "a\x1b[31m", "ok\n"])
def test_require_text_rejects_control_characters(value: str) -> None:
    with invalid("t", "contains control characters"):
        c.require_text(value, "t")


def test_require_text_accepts_unicode_and_inner_spaces() -> None:
    assert c.require_text("Telefónica Edge 1", "t")


# --- ranges and prices -----------------------------------------------------------


@pytest.mark.parametrize("value", [3, 4, 9, 10, 3.0, 10.0])
def test_require_range_inclusive(value: float) -> None:
    c.require_range(value, "n", 3, 10)


@pytest.mark.parametrize("value", [2, 11, 2.999, 10.001, math.nan, math.inf, -math.inf])
def test_require_range_outside(value: float) -> None:
    with invalid("n", "it must be between 3 and 10"):
        c.require_range(value, "n", 3, 10)


@pytest.mark.parametrize("value", [True, False])
def test_require_range_rejects_bools(value: bool) -> None:
    with invalid("n"):
        c.require_range(value, "n", 0, 10)


@pytest.mark.parametrize("value", [1, 2, c.MAX_PRICE - 1, c.MAX_PRICE])
def test_require_price_accepts(value: int) -> None:
    assert c.require_price(value, "max_price") == value


@pytest.mark.parametrize("value", [0, -1])
def test_require_price_must_be_positive(value: int) -> None:
    with invalid("max_price", "^must be greater than 0$"):
        c.require_price(value, "max_price")


def test_require_price_upper_bound() -> None:
    with invalid("max_price", f"is {c.MAX_PRICE + 1}, which is absurd; at most {c.MAX_PRICE}"):
        c.require_price(c.MAX_PRICE + 1, "max_price")


# --- image references ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "nginx",
        "nginx:1.25",
        "nginx:latest",
        "nginx:V1_x.y-z",  # tags may have upper case
        "library/nginx",
        "ghcr.io/org/team/app:2",
        "docker.io/library/nginx:1.25-alpine",
        "registry.example.com:5000/team/app:v1",
        "Registry.Example.com/app",  # the host name is not case sensitive
        "localhost/app",
        "localhost:5000/app:dev",
        "10.0.0.1:5000/app",
        "my-registry/app",  # no '.' or ':': a path component, not a host
        "a__b",
        "a_b.c-d",
        "a---b",
        "app@" + DIGEST,
        "app:1.0@" + DIGEST,
        "registry.example.com:443/app@" + DIGEST,
        "a:" + "t" * 128,  # longest tag
        "a" * 255,  # longest reference
        "a/" * 126 + "abc",  # 255 characters of path
    ],
)
def test_require_image_accepts(value: str) -> None:
    assert len(value) <= 255
    assert c.require_image(value, "image") == value


def test_require_image_empty_is_required() -> None:
    with invalid("image", "^is required$"):
        c.require_image("", "image")


@pytest.mark.parametrize(
    "value",
    [
        "Nginx",  # repository in upper case
        "library/Nginx",
        "my-Registry/app",  # not a host (no '.'/':'), so a path: lower case only
        "nginx:",  # trailing colon
        "nginx:1.0:",
        "-nginx",  # leading dash
        "nginx-",
        "_nginx",
        ".nginx",
        "a___b",  # three underscores is no separator
        "a..b",
        "a/",
        "/a",
        "a//b",
        "registry.example.com/",  # host without repository
        "registry.example.com:port/app",
        "-registry.example.com/app",
        "registry.example.com/App",
        "nginx:-tag",  # a tag starts with a word character
        "nginx:.tag",
        "a:" + "t" * 129,  # tag one too long
        "nginx@",
        "nginx@sha256:" + "0" * 63,  # digest one too short
        "nginx@sha256:" + "0" * 65,
        "nginx@sha256:" + "A" * 64,  # upper-case hex
        "nginx@sha512:" + "0" * 128,  # only sha256 digests
        "nginx@" + DIGEST + ":tag",  # tag after the digest
        "nginx latest",
        "nginx\n",  # a trailing newline is not part of a reference
        "nginx:1\n",
        "a" * 256,  # one too long
        "a/" * 127 + "ab",  # 256 characters of valid path
    ],
)
def test_require_image_rejects(value: str) -> None:
    with invalid("image", "is not a valid image reference"):
        c.require_image(value, "image")


# --- underlay addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["10.0.0.1", "192.168.1.20", "172.16.5.4", "100.64.0.1", "10.255.255.254", "8.8.8.8"]
)
def test_require_underlay_ip_accepts_unicast(value: str) -> None:
    assert c.require_underlay_ip(value, "underlay_ip") == ipaddress.IPv4Address(value)


def test_require_underlay_ip_empty_is_required() -> None:
    with invalid("underlay_ip", "^is required$"):
        c.require_underlay_ip("", "underlay_ip")


@pytest.mark.parametrize(
    "value", ["host.example", "10.0.0", "10.0.0.256", "10.0.0.1/24", " 10.0.0.1"]
)
def test_require_underlay_ip_rejects_non_addresses(value: str) -> None:
    with invalid("underlay_ip", "is not an IP address"):
        c.require_underlay_ip(value, "underlay_ip")


@pytest.mark.parametrize("value", ["::1", "fe80::1", "2001:db8::1", "::ffff:10.0.0.1"])
def test_require_underlay_ip_rejects_ipv6(value: str) -> None:
    with invalid("underlay_ip", "is IPv6; the underlay is IPv4"):
        c.require_underlay_ip(value, "underlay_ip")


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0",
        "127.0.0.1",
        "127.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.254",
        "255.255.255.255",  # limited broadcast
    ],
)
def test_require_underlay_ip_rejects_non_unicast(value: str) -> None:
    with invalid("underlay_ip", value):
        c.require_underlay_ip(value, "underlay_ip")


# --- overlay subnets --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10.9.0.0/24", "192.168.77.0/24", "172.31.255.0/24"])
def test_require_overlay_subnet_accepts_a_24(value: str) -> None:
    assert c.require_overlay_subnet(value, "subnet") == ipaddress.IPv4Network(value)


def test_require_overlay_subnet_empty_is_required() -> None:
    with invalid("subnet", "^is required$"):
        c.require_overlay_subnet("", "subnet")


@pytest.mark.parametrize("value", ["10.9.0.0/23", "10.9.0.0/25", "10.9.0.0/16", "10.9.0.0/32"])
def test_require_overlay_subnet_only_24(value: str) -> None:
    with invalid("subnet", "must be a /24"):
        c.require_overlay_subnet(value, "subnet")


@pytest.mark.parametrize(
    "value",
    [
        "10.9.0.1/24",  # host bits set: strict
        "10.9.0.0",  # no prefix means /32 ... which is not a /24 either
        "10.9.0.0/33",
        "10.9.0/24",
        "fd00::/64",
        "subnet",
    ],
)
def test_require_overlay_subnet_rejects_non_subnets(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        c.require_overlay_subnet(value, "subnet")
    assert [v.field for v in info.value.violations] == ["subnet"]


def test_require_overlay_subnet_host_bits_message() -> None:
    with invalid("subnet", "is not an IPv4 subnet in CIDR notation"):
        c.require_overlay_subnet("10.9.0.1/24", "subnet")


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.0/24",  # loopback
        "224.0.0.0/24",  # multicast
        "239.1.2.0/24",
        "240.0.0.0/24",  # reserved
        "255.255.255.0/24",
        "0.0.0.0/24",  # "this network" (RFC 1122): no host may use it
    ],
)
def test_require_overlay_subnet_rejects_non_unicast(value: str) -> None:
    with invalid("subnet", "is not a unicast subnet"):
        c.require_overlay_subnet(value, "subnet")


# --- hosts of a subnet ----------------------------------------------------------------


NET = ipaddress.IPv4Network("10.9.0.0/24")


@pytest.mark.parametrize("value", ["10.9.0.1", "10.9.0.127", "10.9.0.128", "10.9.0.254"])
def test_require_host_in_accepts_hosts(value: str) -> None:
    c.require_host_in(value, NET, "app_ips[0]")


@pytest.mark.parametrize("value", ["10.9.1.1", "10.8.255.254", "192.168.0.1"])
def test_require_host_in_rejects_outside(value: str) -> None:
    with invalid("app_ips[0]", f"{value} is outside 10.9.0.0/24"):
        c.require_host_in(value, NET, "app_ips[0]")


@pytest.mark.parametrize("value", ["10.9.0.0", "10.9.0.255"])
def test_require_host_in_rejects_network_and_broadcast(value: str) -> None:
    with invalid("app_ips[0]", "is not a host address of 10.9.0.0/24"):
        c.require_host_in(value, NET, "app_ips[0]")


@pytest.mark.parametrize("value", ["", "10.9.0", "10.9.0.300", "::1", "10.9.0.1/32"])
def test_require_host_in_rejects_non_ipv4(value: str) -> None:
    with invalid("app_ips[3]", "is not an IPv4 address"):
        c.require_host_in(value, NET, "app_ips[3]")


# --- InvalidArgument and FieldViolation paths ----------------------------------------------


def test_invalid_argument_field() -> None:
    exc = InvalidArgument.field("memory_mib", "is 3")
    assert exc.violations == (FieldViolation("memory_mib", "is 3"),)
    assert exc.message == str(exc) == "memory_mib is 3"
    assert exc.http_status == 400 and exc.title == "InvalidArgument"


def test_invalid_argument_field_without_name() -> None:
    exc = InvalidArgument.field("", "must set exactly one of a, b")
    assert exc.message == "must set exactly one of a, b"
    assert exc.under("endpoint").message == "endpoint must set exactly one of a, b"
    assert exc.under("endpoint").violations == (
        FieldViolation("endpoint", "must set exactly one of a, b"),
    )


@pytest.mark.parametrize(
    ("field", "prefix", "path"),
    [
        ("memory_mib", "resources", "resources.memory_mib"),
        ("resources.memory_mib", "app", "app.resources.memory_mib"),
        ("[2].vni", "candidates", "candidates[2].vni"),
        ("vni", "candidates[2]", "candidates[2].vni"),
        ("app_ips[1]", "consumer_endpoint", "consumer_endpoint.app_ips[1]"),
        ("uris[0]", "system_info.endpoint", "system_info.endpoint.uris[0]"),
        ("", "policy", "policy"),
        ("x", "", "x"),
    ],
)
def test_under_prefixes_paths(field: str, prefix: str, path: str) -> None:
    exc = InvalidArgument.field(field, "is wrong").under(prefix)
    assert [v.field for v in exc.violations] == [path]
    assert exc.message == f"{path} is wrong"
    assert FieldViolation(field, "d").under(prefix) == FieldViolation(path, "d")


def test_under_nests_repeatedly() -> None:
    exc = InvalidArgument.field("memory_mib", "is 3").under("resources").under("app")
    assert exc.message == "app.resources.memory_mib is 3"


def test_under_empty_prefix_is_the_same_error() -> None:
    exc = InvalidArgument.field("x", "y")
    assert exc.under("") is exc


def test_under_with_several_violations_keeps_them_all() -> None:
    exc = InvalidArgument(
        "two problems", (FieldViolation("a", "is bad"), FieldViolation("[1]", "is worse"))
    )
    nested = exc.under("req")
    assert nested.violations == (
        FieldViolation("req.a", "is bad"),
        FieldViolation("req[1]", "is worse"),
    )
    assert nested.message == "req: two problems"


def test_under_without_violations() -> None:
    nested = InvalidArgument("plain").under("req")
    assert nested.violations == ()
    assert nested.message == "req: plain"


def test_field_violation_str() -> None:
    assert str(FieldViolation("a.b", "is bad")) == "a.b is bad"
    assert str(FieldViolation("", "is bad")) == "is bad"

"""The bounds of the domain model, and the checks that enforce them.

One set of bounds for the whole system: the consumer's MEF refuses at its
edge anything the provider's MEO would refuse, so a bad request never gets
as far as an offer, a bid or an escrow. Every check raises
:class:`~mecfed.errors.InvalidArgument` naming the field (relative to the
record being built; the conversion edge prefixes the message path) and
saying what is wrong.
"""

from __future__ import annotations

import ipaddress
import re

from mecfed.errors import InvalidArgument

MAX_TEXT = 128
MAX_ID = 64
MAX_REPLICAS = 16
# Per replica. Beyond these no edge host could run it: a typo, not a request.
MAX_CPU_MILLICORES = 64_000
MAX_MEMORY_MIB = 256 * 1024
# Docker (and the kernel's memory cgroup) refuse limits below 6 MiB.
MIN_MEMORY_MIB = 6
MAX_PRICE = 10**15  # micro-EUR per hour: ~10^9 EUR per hour is absurd
MAX_OFFERS_TO_WAIT_FOR = 64
MAX_OFFER_TIMEOUT_MS = 600_000
DEFAULT_OFFER_TIMEOUT_MS = 3000
DEFAULT_ECHO_PORT = 7  # RFC 862 echo
MIN_VNI, MAX_VNI = 1, 2**24 - 1
MIN_TUNNEL_PORT, MAX_TUNNEL_PORT = 1024, 65535
MAX_CANDIDATES = 16
OVERLAY_PREFIX = 24  # one /24 per federation: consumer low half, provider high half
MAX_APP_IPS = 126
MAX_IMAGE = 255

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
# The first component is a domain only if it has a '.' or ':' or is "localhost";
# path components are lower case.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = re.compile(rf"^{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?$")
_REPOSITORY = re.compile(
    rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def _is_image_reference(value: str) -> bool:
    first, slash, rest = value.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return bool(_DOMAIN.fullmatch(first)) and bool(_REPOSITORY.fullmatch(rest))
    return bool(_REPOSITORY.fullmatch(value))


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def require_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.field(field, "is required")
    if not _ID.fullmatch(value):
        raise InvalidArgument.field(
            field,
            f"{_shown(value)} is not a valid id "
            "(1..64 characters: letters, digits, '-', '_', '.', ':'; starting with a letter "
            "or digit)",
        )
    return value


def require_name(value: str, field: str) -> str:
    """A DNS label: service and app names."""
    if not value:
        raise InvalidArgument.field(field, "is required")
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidArgument.field(
            field,
            f"{_shown(value)} must be 1..63 characters of [a-z0-9-], "
            "starting and ending with a letter or digit",
        )
    return value


def require_text(value: str, field: str, *, max_len: int = MAX_TEXT) -> str:
    if not value or not value.strip():
        raise InvalidArgument.field(field, "is required")
    if len(value) > max_len:
        raise InvalidArgument.field(field, f"is {len(value)} characters long; at most {max_len}")
    if not value.isprintable():
        raise InvalidArgument.field(field, "contains control characters")
    return value


def require_range(value: int | float, field: str, lo: int | float, hi: int | float) -> None:
    if isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidArgument.field(field, f"is {value}; it must be between {lo} and {hi}")


def require_price(value: int, field: str) -> int:
    if value <= 0:
        raise InvalidArgument.field(field, "must be greater than 0")
    if value > MAX_PRICE:
        raise InvalidArgument.field(field, f"is {value}, which is absurd; at most {MAX_PRICE}")
    return value


def require_image(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.field(field, "is required")
    if len(value) > MAX_IMAGE or not _is_image_reference(value):
        raise InvalidArgument.field(
            field,
            f"{_shown(value)} is not a valid image reference "
            "([registry/]name[:tag][@sha256:digest], name in lower case, "
            f"at most {MAX_IMAGE} characters)",
        )
    return value


def require_underlay_ip(value: str, field: str) -> ipaddress.IPv4Address:
    """A unicast IPv4 address a VXLAN tunnel can end at."""
    if not value:
        raise InvalidArgument.field(field, "is required")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument.field(field, f"{_shown(value)} is not an IP address") from None
    if not isinstance(ip, ipaddress.IPv4Address):
        raise InvalidArgument.field(field, f"{value} is IPv6; the underlay is IPv4")
    if (
        ip.is_unspecified
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_reserved
        or ip in _THIS_NETWORK
    ):
        raise InvalidArgument.field(
            field,
            f"{value} is not a unicast host address (unspecified, multicast, loopback or reserved)",
        )
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidArgument.field(field, f"{value} is the broadcast address")
    return ip


def require_overlay_subnet(value: str, field: str) -> ipaddress.IPv4Network:
    if not value:
        raise InvalidArgument.field(field, "is required")
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise InvalidArgument.field(
            field, f"{_shown(value)} is not an IPv4 subnet in CIDR notation"
        ) from None
    if net.prefixlen != OVERLAY_PREFIX:
        raise InvalidArgument.field(field, f"{value} must be a /{OVERLAY_PREFIX}")
    if (
        net.is_multicast
        or net.is_loopback
        or net.is_reserved
        or net.subnet_of(_THIS_NETWORK)  # 0.0.0.0/8, RFC 1122
    ):
        raise InvalidArgument.field(field, f"{value} is not a unicast subnet")
    return net


def require_host_in(value: str, net: ipaddress.IPv4Network, field: str) -> None:
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidArgument.field(field, f"{_shown(value)} is not an IPv4 address") from None
    if ip not in net:
        raise InvalidArgument.field(field, f"{value} is outside {net}")
    if ip in (net.network_address, net.broadcast_address):
        raise InvalidArgument.field(field, f"{value} is not a host address of {net}")


__all__ = [
    "DEFAULT_ECHO_PORT",
    "DEFAULT_OFFER_TIMEOUT_MS",
    "MAX_CANDIDATES",
    "MAX_CPU_MILLICORES",
    "MAX_MEMORY_MIB",
    "MAX_PRICE",
    "MAX_REPLICAS",
    "MIN_MEMORY_MIB",
    "require_id",
    "require_image",
    "require_name",
    "require_price",
    "require_range",
    "require_text",
    "require_underlay_ip",
]

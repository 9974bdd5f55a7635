"""Input checks shared by every servicer. Each raises InvalidArgument with a
message that names the field and says what is wrong."""

from __future__ import annotations

import ipaddress
import re

from mecfed.errors import InvalidArgument

MAX_TEXT = 128
MAX_REPLICAS = 16
MAX_PRICE = 10**15  # absurd beyond this: ~10^12 currency units per hour
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,255}$")


def require_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _ID.match(value):
        raise InvalidArgument(
            f"{field} {value[:80]!r} is not a valid id "
            "(1..64 characters: letters, digits, '-', '_', '.', ':')"
        )
    return value


def require_name(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _DNS_LABEL.match(value):
        raise InvalidArgument(
            f"{field} {value[:80]!r} must be 1..63 characters of [a-z0-9-], "
            "starting and ending with a letter or digit"
        )
    return value


def require_text(value: str, field: str, *, max_len: int = MAX_TEXT) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} is required")
    if len(value) > max_len:
        raise InvalidArgument(f"{field} is {len(value)} characters long; at most {max_len}")
    return value


def require_range(value: int | float, field: str, lo: int | float, hi: int | float) -> None:
    if not lo <= value <= hi:
        raise InvalidArgument(f"{field} is {value}; it must be between {lo} and {hi}")


def require_price(value: int, field: str) -> int:
    if value <= 0:
        raise InvalidArgument(f"{field} must be greater than 0")
    if value > MAX_PRICE:
        raise InvalidArgument(f"{field} {value} is absurd; at most {MAX_PRICE}")
    return value


def require_image(value: str, field: str = "app.image") -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _IMAGE.match(value):
        raise InvalidArgument(f"{field} {value[:80]!r} is not a valid image reference")
    return value


def require_ip(value: str, field: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(f"{field} {value[:80]!r} is not an IP address") from None
    return value


def require_subnet(value: str, field: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise InvalidArgument(f"{field} {value[:80]!r} is not an IPv4 subnet") from None
    if net.prefixlen > 28:
        raise InvalidArgument(f"{field} {value} is too small; at most a /28")
    return net

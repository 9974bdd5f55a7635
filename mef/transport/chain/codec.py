"""What the chain transport writes into the contract and signs, and how it
reads it back: the announcement's requirements, the payloads sealed to one
party (a bid's Mff contact, the consumer's order, the winner's
confirmation), and the canonical bytes of the two signed off-chain messages
(the order handed over Mff, the deployment notice).

Everything read from the chain or from a peer is untrusted: decoders build
model records (which validate) and raise InvalidArgument on anything else.
Sealed payloads travel in calldata (the contract caps them at 256 bytes), so
encodings are compact: app addresses go as host offsets within the subnet,
tunnel candidates as 5 bytes each.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from mecfed.chain.sealing import decode_endpoint, encode_endpoint, open_sealed, seal
from mecfed.errors import InvalidArgument
from mecfed.model import AppSpec, OverlayEndpoint, Resources, ServiceNeed, TunnelCandidate
from mecfed.model.checks import DEFAULT_ECHO_PORT, MAX_CANDIDATES

MAX_TRACEPARENT = 128


@dataclass(frozen=True)
class Announcement:
    """The requirements a consumer publishes with its announcement."""

    federation_id: str
    consumer_name: str
    app: AppSpec
    traceparent: str = ""


@dataclass(frozen=True)
class MffContact:
    """Where the bidder's Mff server is, sealed to the consumer in its bid."""

    endpoint: str  # host:port
    name: str  # the system id its TLS certificate names


@dataclass(frozen=True)
class SealedOrder:
    """The consumer's order as sent on-chain (sendConsumerEndpoint), sealed to the winner."""

    federation_id: str
    endpoint: OverlayEndpoint
    candidates: tuple[TunnelCandidate, ...]


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _loads(raw: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"unreadable {what}: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument(f"unreadable {what}: not an object")
    return body


# --- announcement -------------------------------------------------------------


def encode_requirements(need: ServiceNeed, consumer_name: str, traceparent: str = "") -> bytes:
    app = need.app
    body: dict[str, Any] = {
        "f": need.federation_id,
        "c": consumer_name,
        "i": app.image,
        "r": app.replicas,
        "cpu": app.resources.cpu_millicores,
        "mem": app.resources.memory_mib,
        "e": app.echo_port,
    }
    if traceparent:
        body["tp"] = traceparent
    return _json(body)


def decode_requirements(raw: bytes) -> Announcement:
    body = _loads(raw, "service requirements")
    try:
        app = AppSpec(
            image=str(body["i"]),
            replicas=_int(body["r"]),
            resources=Resources(_int(body.get("cpu", 0)), _int(body.get("mem", 0))),
            echo_port=_int(body.get("e", DEFAULT_ECHO_PORT)),
        )
        traceparent = str(body.get("tp", ""))[:MAX_TRACEPARENT]
        return Announcement(str(body["f"]), str(body.get("c", "")), app, traceparent)
    except KeyError as exc:
        raise InvalidArgument(f"unreadable service requirements: {exc} missing") from None
    except InvalidArgument as exc:
        raise InvalidArgument(f"service requirements: {exc.message}", exc.violations) from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"expected an integer, got {type(value).__name__}")
    return value


# --- endpoints and candidates ---------------------------------------------------------


def endpoint_body(ep: OverlayEndpoint) -> dict[str, Any]:
    net = ipaddress.IPv4Network(ep.subnet)
    offsets = [int(ipaddress.IPv4Address(ip)) - int(net.network_address) for ip in ep.app_ips]
    body: dict[str, Any] = {"u": ep.underlay_ip, "s": ep.subnet, "a": offsets}
    if ep.vni:
        body["v"], body["p"] = ep.vni, ep.udp_port
    return body


def endpoint_from_body(body: Any) -> OverlayEndpoint:
    if not isinstance(body, dict):
        raise InvalidArgument("malformed endpoint details: not an object")
    try:
        net = ipaddress.IPv4Network(str(body["s"]))
        offsets = body["a"]
        if not isinstance(offsets, list) or len(offsets) > 256:
            raise ValueError("app addresses must be a short list")
        ips = tuple(str(net.network_address + _int(o)) for o in offsets)
        return OverlayEndpoint(
            str(body["u"]), str(body["s"]), ips, _int(body.get("v", 0)), _int(body.get("p", 0))
        )
    except (KeyError, TypeError, ValueError, ipaddress.AddressValueError) as exc:
        raise InvalidArgument(f"malformed endpoint details: {exc}") from None


def pack_candidates(candidates: tuple[TunnelCandidate, ...]) -> str:
    """5 bytes a candidate (24-bit VNI, 16-bit port), base64."""
    raw = b"".join(c.vni.to_bytes(3, "big") + c.udp_port.to_bytes(2, "big") for c in candidates)
    return base64.b64encode(raw).decode()


def unpack_candidates(text: Any) -> tuple[TunnelCandidate, ...]:
    try:
        raw = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise InvalidArgument("malformed tunnel candidates") from None
    if not raw or len(raw) % 5 or len(raw) // 5 > MAX_CANDIDATES:
        raise InvalidArgument("malformed tunnel candidates")
    return tuple(
        TunnelCandidate(
            int.from_bytes(raw[i : i + 3], "big"), int.from_bytes(raw[i + 3 : i + 5], "big")
        )
        for i in range(0, len(raw), 5)
    )


# --- sealed payloads ------------------------------------------------------------------


def seal_contact(consumer_key: bytes, contact: MffContact) -> bytes:
    return seal(consumer_key, encode_endpoint({"mff": contact.endpoint, "name": contact.name}))


def open_contact(account: LocalAccount, blob: bytes) -> MffContact:
    body = decode_endpoint(open_sealed(account, blob))
    endpoint, name = body.get("mff"), body.get("name")
    if not isinstance(endpoint, str) or not isinstance(name, str) or ":" not in endpoint:
        raise InvalidArgument("malformed Mff contact in bid")
    return MffContact(endpoint, name)


def seal_order(provider_key: bytes, order: SealedOrder) -> bytes:
    return seal(
        provider_key,
        encode_endpoint(
            {
                "f": order.federation_id,
                "e": endpoint_body(order.endpoint),
                "c": pack_candidates(order.candidates),
            }
        ),
    )


def open_order(account: LocalAccount, blob: bytes) -> SealedOrder:
    body = decode_endpoint(open_sealed(account, blob))
    if not isinstance(body.get("f"), str):
        raise InvalidArgument("malformed order: no federation id")
    return SealedOrder(
        body["f"], endpoint_from_body(body.get("e")), unpack_candidates(body.get("c"))
    )


def seal_confirmation(consumer_key: bytes, endpoint: OverlayEndpoint) -> bytes:
    return seal(consumer_key, encode_endpoint({"e": endpoint_body(endpoint)}))


def open_confirmation(account: LocalAccount, blob: bytes) -> OverlayEndpoint:
    return endpoint_from_body(decode_endpoint(open_sealed(account, blob)).get("e"))


# --- signed off-chain messages -----------------------------------------------------------


def _canonical(kind: str, body: dict[str, Any]) -> bytes:
    return f"mecfed/v1 {kind}\n".encode() + _json(body)


def order_digest(
    service_id: str,
    federation_id: str,
    endpoint: OverlayEndpoint,
    candidates: tuple[TunnelCandidate, ...],
) -> bytes:
    """What the consumer signs when it hands its order to the winner."""
    return _canonical(
        "order",
        {
            "service": service_id.lower(),
            "federation": federation_id,
            "endpoint": endpoint_body(endpoint),
            "candidates": [[c.vni, c.udp_port] for c in candidates],
        },
    )


def notice_digest(service_id: str, endpoint: OverlayEndpoint) -> bytes:
    """What the winner signs when it reports its deployment directly."""
    return _canonical(
        "deployment-notice", {"service": service_id.lower(), "endpoint": endpoint_body(endpoint)}
    )


__all__ = [
    "Announcement",
    "MffContact",
    "SealedOrder",
    "decode_requirements",
    "encode_requirements",
    "notice_digest",
    "open_confirmation",
    "open_contact",
    "open_order",
    "order_digest",
    "seal_confirmation",
    "seal_contact",
    "seal_order",
]

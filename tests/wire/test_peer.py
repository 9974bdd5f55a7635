"""Tests for mecfed.wire.peer: the Mff messages between federators."""

from __future__ import annotations

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model import (
    AppInstanceDetails,
    AppSpec,
    Installation,
    InstanceState,
    OfferRequest,
    OverlayEndpoint,
    Problem,
    TunnelCandidate,
)
from mecfed.model.checks import MAX_PRICE
from mecfed.v1 import common_pb2
from mecfed.v1 import peer_pb2 as pb
from mecfed.wire import common as wc
from mecfed.wire import peer as w
from tests.model.support import invalid
from tests.wire.samples import (
    APP,
    CANDIDATES,
    CONSUMER,
    PROVIDER,
    app_proto,
    candidates_proto,
    endpoint_proto,
)

# --- RequestOffer --------------------------------------------------------------------


@pytest.mark.parametrize(
    "req", [OfferRequest("fed-1", APP, 50_000), OfferRequest("f", AppSpec("nginx"), MAX_PRICE)]
)
def test_offer_request_round_trip(req: OfferRequest) -> None:
    assert w.offer_request_from_proto(w.offer_request_to_proto(req)) == req


def test_offer_request_defaults() -> None:
    req = w.offer_request_from_proto(
        pb.RequestOfferRequest(federation_id="f", app=app_proto(), max_price=1)
    )
    assert req.app == AppSpec("nginx", 1, echo_port=7)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (pb.RequestOfferRequest(federation_id="f", max_price=1), "app", "^is required$"),
        (
            pb.RequestOfferRequest(federation_id="f", app=app_proto(memory_mib=5), max_price=1),
            "app.resources.memory_mib",
            "is 5",
        ),
        (
            pb.RequestOfferRequest(federation_id="f", app=app_proto(image=""), max_price=1),
            "app.image",
            "is required",
        ),
        (pb.RequestOfferRequest(app=app_proto(), max_price=1), "federation_id", "is required"),
        (pb.RequestOfferRequest(federation_id="f", app=app_proto()), "max_price", "greater than 0"),
        (
            pb.RequestOfferRequest(federation_id="f", app=app_proto(), max_price=MAX_PRICE + 1),
            "max_price",
            "at most",
        ),
    ],
)
def test_offer_request_violations(msg: pb.RequestOfferRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.offer_request_from_proto(msg)


# --- InstallApp ----------------------------------------------------------------------


INSTALL = Installation("offer-1", "fed-1", CONSUMER, CANDIDATES, b"\x01sig")


def install_proto(**kw: object) -> pb.InstallAppRequest:
    msg = w.installation_to_proto(INSTALL)
    for name, value in kw.items():
        if name == "consumer_endpoint":
            msg.consumer_endpoint.CopyFrom(value)  # type: ignore[arg-type]
        elif name == "candidates":
            del msg.candidates[:]
            msg.candidates.extend(value)  # type: ignore[arg-type]
        else:
            setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    "inst",
    [
        INSTALL,
        Installation(
            "0x" + "a" * 64,
            "f",
            OverlayEndpoint("10.0.0.1", "10.1.0.0/24"),
            (TunnelCandidate(1, 1024),),
        ),
        Installation("o" * 128, "f", CONSUMER, CANDIDATES, b"s" * 256),
    ],
)
def test_installation_round_trip(inst: Installation) -> None:
    assert w.installation_from_proto(w.installation_to_proto(inst)) == inst


def test_installation_missing_endpoint() -> None:
    msg = install_proto()
    msg.ClearField("consumer_endpoint")
    with invalid("consumer_endpoint", "^is required$"):
        w.installation_from_proto(msg)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (install_proto(offer_id=""), "offer_id", "is required"),
        (install_proto(offer_id="o" * 129), "offer_id", "1..128 printable"),
        (install_proto(federation_id=""), "federation_id", "is required"),
        (
            install_proto(consumer_signature=b"s" * 257),
            "consumer_signature",
            "longer than 256 bytes",
        ),
        (
            install_proto(consumer_endpoint=endpoint_proto(app_ips=["10.9.0.2", "10.9.0.256"])),
            "consumer_endpoint.app_ips[1]",
            "not an IPv4 address",
        ),
        (
            install_proto(consumer_endpoint=endpoint_proto(underlay_ip="0.0.0.0")),
            "consumer_endpoint.underlay_ip",
            "",
        ),
        (
            install_proto(candidates=candidates_proto((1, 4789), (2, 4789), (2**24, 4789))),
            "candidates[2].vni",
            "is 16777216",
        ),
        (install_proto(candidates=[]), "candidates", "has 0 entries"),
        (install_proto(candidates=candidates_proto((1, 4789), (1, 4789))), "candidates", "twice"),
    ],
)
def test_installation_violations(msg: pb.InstallAppRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.installation_from_proto(msg)


def test_app_instance_id_from() -> None:
    assert w.app_instance_id_from("inst-1") == "inst-1"
    with invalid("app_instance_id", "is required"):
        w.app_instance_id_from("")
    with invalid("app_instance_id", "not a valid id"):
        w.app_instance_id_from("a/b")


# --- AppInstanceDetails ------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        AppInstanceDetails(
            "inst-1", "fed-1", InstanceState.READY, PROVIDER, deployment_notice=b"n"
        ),
        AppInstanceDetails("inst-1", "fed-1", InstanceState.PENDING),
        AppInstanceDetails(
            "inst-1",
            "fed-1",
            InstanceState.FAILED,
            error=Problem("DeploymentFailed", 409, "no image"),
        ),
        AppInstanceDetails("inst-1", "fed-1", InstanceState.TERMINATED),
        AppInstanceDetails("inst-1", "fed-1", InstanceState.TERMINATING),
    ],
)
def test_details_round_trip(details: AppInstanceDetails) -> None:
    assert w.details_from_proto(w.details_to_proto(details)) == details


def test_details_to_proto_leaves_absent_parts_unset() -> None:
    msg = w.details_to_proto(AppInstanceDetails("i", "f", InstanceState.PENDING))
    assert not msg.HasField("provider_endpoint") and not msg.HasField("error")
    assert msg.state == common_pb2.INSTANCE_STATE_PENDING


def test_details_endpoint_is_only_read_when_ready() -> None:
    msg = pb.AppInstanceDetails(
        app_instance_id="i",
        state=common_pb2.INSTANCE_STATE_PENDING,
        provider_endpoint=endpoint_proto(subnet="junk"),
    )
    assert w.details_from_proto(msg).provider_endpoint is None


@pytest.mark.parametrize("state", [0, 6, 99])
def test_details_unknown_state_is_failed(state: int) -> None:
    msg = pb.AppInstanceDetails(app_instance_id="i", state=state)  # type: ignore[arg-type]
    assert w.details_from_proto(msg).state == InstanceState.FAILED


def ready(endpoint: common_pb2.OverlayEndpoint | None) -> pb.AppInstanceDetails:
    msg = pb.AppInstanceDetails(
        app_instance_id="i", federation_id="f", state=common_pb2.INSTANCE_STATE_READY
    )
    if endpoint is not None:
        msg.provider_endpoint.CopyFrom(endpoint)
    return msg


def test_details_ready_without_endpoint_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        w.details_from_proto(ready(None))
    (violation,) = info.value.violations
    assert (
        violation.field.startswith("provider_endpoint") and "is required" in violation.description
    )


def test_details_ready_without_tunnel_is_refused() -> None:
    with invalid("provider_endpoint.vni", r"is required \(no tunnel was chosen\)"):
        w.details_from_proto(ready(endpoint_proto(app_ips=["10.9.0.130"])))


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        (
            endpoint_proto(vni=1, udp_port=4789, underlay_ip="127.0.0.1"),
            "provider_endpoint.underlay_ip",
        ),
        (endpoint_proto(vni=1, udp_port=4789, subnet="10.9.0.0/23"), "provider_endpoint.subnet"),
        (
            endpoint_proto(vni=1, udp_port=4789, app_ips=["10.9.0.130", "10.9.0.255"]),
            "provider_endpoint.app_ips[1]",
        ),
        (endpoint_proto(vni=2**24, udp_port=4789), "provider_endpoint.vni"),
        (endpoint_proto(vni=1, udp_port=1000), "provider_endpoint.udp_port"),
    ],
)
def test_details_ready_with_invalid_endpoint_is_refused(
    endpoint: common_pb2.OverlayEndpoint, field: str
) -> None:
    with invalid(field):
        w.details_from_proto(ready(endpoint))


def test_details_ready_with_valid_endpoint() -> None:
    details = w.details_from_proto(ready(wc.endpoint_to_proto(PROVIDER)))
    assert details.state == InstanceState.READY and details.provider_endpoint == PROVIDER
    assert details.error is None and details.deployment_notice == b""

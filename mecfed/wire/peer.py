"""Conversion of the Mff messages between federators (mecfed/v1/peer.proto)."""

from __future__ import annotations

from mecfed.errors import InvalidArgument
from mecfed.model import (
    AppInstanceDetails,
    Installation,
    InstanceState,
    OfferRequest,
)
from mecfed.model.checks import require_id
from mecfed.v1 import peer_pb2 as pb
from mecfed.wire.common import (
    app_from_proto,
    app_to_proto,
    build,
    candidate_to_proto,
    candidates_from_proto,
    endpoint_from_proto,
    endpoint_to_proto,
    problem_from_proto,
    problem_to_proto,
    required,
)
from mecfed.wire.orchestrator import require_app_ips


def offer_request_from_proto(msg: pb.RequestOfferRequest) -> OfferRequest:
    app = app_from_proto(required(msg, "app", "app"))
    return build(
        "", OfferRequest, federation_id=msg.federation_id, app=app, max_price=msg.max_price
    )


def offer_request_to_proto(req: OfferRequest) -> pb.RequestOfferRequest:
    return pb.RequestOfferRequest(
        federation_id=req.federation_id, app=app_to_proto(req.app), max_price=req.max_price
    )


def installation_from_proto(msg: pb.InstallAppRequest) -> Installation:
    endpoint = endpoint_from_proto(
        required(msg, "consumer_endpoint", "consumer_endpoint"), "consumer_endpoint"
    )
    return build(
        "",
        Installation,
        offer_id=msg.offer_id,
        federation_id=msg.federation_id,
        consumer_endpoint=endpoint,
        candidates=candidates_from_proto(msg.candidates),
        consumer_signature=bytes(msg.consumer_signature),
    )


def installation_to_proto(inst: Installation) -> pb.InstallAppRequest:
    return pb.InstallAppRequest(
        offer_id=inst.offer_id,
        federation_id=inst.federation_id,
        consumer_endpoint=endpoint_to_proto(inst.consumer_endpoint),
        candidates=[candidate_to_proto(c) for c in inst.candidates],
        consumer_signature=inst.consumer_signature,
    )


def app_instance_id_from(value: str) -> str:
    return require_id(value, "app_instance_id")


def remove_target_from(msg: pb.AppInstanceRequest) -> tuple[str, str]:
    """RemoveApp's target: ``(app_instance_id, "")``, or ``("",
    federation_id)`` when the instance id is empty (the consumer lost it)."""
    if msg.app_instance_id:
        return app_instance_id_from(msg.app_instance_id), ""
    if not msg.federation_id:
        raise InvalidArgument.field(
            "app_instance_id", "is required (or federation_id, to remove by federation)"
        )
    return "", require_id(msg.federation_id, "federation_id")


def details_to_proto(details: AppInstanceDetails) -> pb.AppInstanceDetails:
    msg = pb.AppInstanceDetails(
        app_instance_id=details.app_instance_id,
        federation_id=details.federation_id,
        state=int(details.state),  # type: ignore[arg-type]
        deployment_notice=details.deployment_notice,
    )
    if details.provider_endpoint is not None:
        msg.provider_endpoint.CopyFrom(endpoint_to_proto(details.provider_endpoint))
    if details.error is not None:
        msg.error.CopyFrom(problem_to_proto(details.error))
    return msg


def details_from_proto(msg: pb.AppInstanceDetails) -> AppInstanceDetails:
    """A provider's answer; its endpoint is validated like any request."""
    try:
        state = InstanceState(msg.state)
    except ValueError:
        state = InstanceState.FAILED
    endpoint = None
    if state == InstanceState.READY:
        endpoint = endpoint_from_proto(msg.provider_endpoint, "provider_endpoint")
        endpoint.require_tunnel("provider_endpoint")
        require_app_ips(endpoint, "provider_endpoint")
    return AppInstanceDetails(
        app_instance_id=msg.app_instance_id,
        federation_id=msg.federation_id,
        state=state,
        provider_endpoint=endpoint,
        error=problem_from_proto(msg.error) if msg.HasField("error") else None,
        deployment_notice=bytes(msg.deployment_notice),
    )

"""Conversion of the MEF's Mfm messages (mecfed/v1/federator.proto)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format

from mecfed.errors import InvalidArgument
from mecfed.model import (
    EndPoint,
    Federation,
    FederationRequest,
    FederationState,
    FixedPricing,
    Offer,
    OfferPolicy,
    SystemRecord,
    TariffPricing,
)
from mecfed.model import pricing as p
from mecfed.model.checks import MAX_ID, require_id
from mecfed.model.federation import StateChange, Step
from mecfed.v1 import common_pb2, federator_pb2
from mecfed.wire.common import (
    app_from_proto,
    app_to_proto,
    build,
    endpoint_from_proto,
    endpoint_info_from_proto,
    endpoint_to_proto,
    from_ts,
    problem_from_proto,
    problem_to_proto,
    required,
    requirements_from_proto,
    requirements_to_proto,
    step_to_proto,
    system_to_proto,
    traffic_from_proto,
    traffic_to_proto,
    ts,
)


def federation_request_from_proto(msg: federator_pb2.RequestFederationRequest) -> FederationRequest:
    app = app_from_proto(required(msg, "app", "app"))
    requirements = requirements_from_proto(
        required(msg, "requirements", "requirements", "at least max_price")
    )
    return build(
        "",
        FederationRequest,
        service_name=msg.service_name,
        app=app,
        requirements=requirements,
        request_id=msg.request_id,
    )


def federation_request_to_proto(req: FederationRequest) -> federator_pb2.RequestFederationRequest:
    return federator_pb2.RequestFederationRequest(
        service_name=req.service_name,
        app=app_to_proto(req.app),
        requirements=requirements_to_proto(req.requirements),
        request_id=req.request_id,
    )


def federation_id_from(value: str) -> str:
    return require_id(value, "federation_id")


def states_from_proto(values: Any) -> tuple[FederationState, ...]:
    out = []
    for i, value in enumerate(values):
        try:
            out.append(FederationState(value))
        except ValueError:
            raise InvalidArgument.field(
                f"states[{i}]", f"{value} is not a federation state"
            ) from None
    return tuple(out)


def offer_to_proto(offer: Offer) -> common_pb2.Offer:
    return common_pb2.Offer(
        provider_id=offer.provider_id,
        price=offer.price,
        valid_until=ts(offer.valid_until),
        received_at=ts(offer.received_at),
    )


def federation_to_proto(fed: Federation) -> federator_pb2.Federation:
    msg = federator_pb2.Federation(
        federation_id=fed.federation_id,
        service_name=fed.service_name,
        app=app_to_proto(fed.app),
        requirements=requirements_to_proto(fed.requirements),
        state=int(fed.state),  # type: ignore[arg-type]
        consumer_id=fed.consumer_id,
        provider_id=fed.provider_id,
        offers=[offer_to_proto(o) for o in fed.offers],
        price=fed.price,
        app_instance_id=fed.app_instance_id,
        steps=[step_to_proto(s) for s in fed.steps],
        created_at=ts(fed.created_at),
        updated_at=ts(fed.updated_at),
        backend=fed.backend,
    )
    if fed.consumer_endpoint:
        msg.consumer_endpoint.CopyFrom(endpoint_to_proto(fed.consumer_endpoint))
    if fed.provider_endpoint:
        msg.provider_endpoint.CopyFrom(endpoint_to_proto(fed.provider_endpoint))
    if fed.traffic:
        msg.traffic.CopyFrom(traffic_to_proto(fed.traffic))
    if fed.error:
        msg.error.CopyFrom(problem_to_proto(fed.error))
    for change in fed.history:
        msg.history.append(state_change_to_proto(change))
    if fed.liveness:
        msg.liveness.CopyFrom(traffic_to_proto(fed.liveness))
    return msg


def state_change_to_proto(change: StateChange) -> common_pb2.StateChange:
    return common_pb2.StateChange(
        state=int(change.state),  # type: ignore[arg-type]
        at=ts(change.at),
        reason=change.reason,
    )


def federation_from_proto(msg: federator_pb2.Federation) -> Federation:
    """The inverse of :func:`federation_to_proto` (the MEF's durable records
    and clients that read Federation messages). Offers come back without
    their transport handle (``ref`` is ""), which the proto does not carry;
    unknown states are refused."""
    try:
        state = FederationState(msg.state)
        history = tuple(
            StateChange(FederationState(h.state), from_ts(h.at), h.reason) for h in msg.history
        )
    except ValueError as exc:
        raise InvalidArgument.field("state", str(exc)) from None

    def endpoint(name: str) -> Any:
        return endpoint_from_proto(getattr(msg, name), name) if msg.HasField(name) else None

    return Federation(
        federation_id=msg.federation_id,
        service_name=msg.service_name,
        app=app_from_proto(msg.app),
        requirements=requirements_from_proto(msg.requirements),
        consumer_id=msg.consumer_id,
        backend=msg.backend,
        state=state,
        provider_id=msg.provider_id,
        offers=tuple(
            Offer(o.provider_id, o.price, "", from_ts(o.valid_until), from_ts(o.received_at))
            for o in msg.offers
        ),
        price=msg.price,
        app_instance_id=msg.app_instance_id,
        consumer_endpoint=endpoint("consumer_endpoint"),
        provider_endpoint=endpoint("provider_endpoint"),
        traffic=traffic_from_proto(msg.traffic) if msg.HasField("traffic") else None,
        steps=tuple(Step(s.name, from_ts(s.started_at), from_ts(s.finished_at)) for s in msg.steps),
        created_at=from_ts(msg.created_at),
        updated_at=from_ts(msg.updated_at),
        error=problem_from_proto(msg.error) if msg.HasField("error") else None,
        history=history,
        liveness=traffic_from_proto(msg.liveness) if msg.HasField("liveness") else None,
    )


# --- offer policy -------------------------------------------------------------


def policy_from_proto(msg: federator_pb2.OfferPolicy, field: str = "policy") -> OfferPolicy:
    which = msg.WhichOneof("pricing")
    pricing: p.Pricing
    if which == "fixed":
        pricing = build(field, FixedPricing, msg.fixed.price)
    elif which == "tariff":
        t = msg.tariff
        pricing = build(
            field,
            TariffPricing,
            region=t.region,
            watt_hours_per_replica=t.watt_hours_per_replica,
            utc_offset_minutes=t.utc_offset_minutes,
            load_sensitivity=t.load_sensitivity,
        )
    else:
        raise InvalidArgument.field(field, "needs one of fixed or tariff pricing")
    return build(
        field,
        OfferPolicy,
        pricing=pricing,
        capacity_replicas=msg.capacity_replicas,
        offer_validity_ms=msg.offer_validity_ms,
    )


def policy_to_proto(policy: OfferPolicy) -> federator_pb2.OfferPolicy:
    msg = federator_pb2.OfferPolicy(
        capacity_replicas=policy.capacity_replicas,
        offer_validity_ms=policy.offer_validity_ms,
    )
    if isinstance(policy.pricing, FixedPricing):
        msg.fixed.price = policy.pricing.price
    else:
        msg.tariff.region = policy.pricing.region
        msg.tariff.watt_hours_per_replica = policy.pricing.watt_hours_per_replica
        msg.tariff.utc_offset_minutes = policy.pricing.utc_offset_minutes or 0
        msg.tariff.load_sensitivity = policy.pricing.load_sensitivity
    return msg


def policy_from_json(data: Any) -> OfferPolicy:
    """Parses the protobuf JSON form, e.g. from a config file:
    ``{"tariff": {"region": "DE", "wattHoursPerReplica": 200},
    "capacityReplicas": 8, "offerValidityMs": 30000}``.

    Unlike :func:`policy_from_proto`, fields left out take the model's
    defaults (region UTC offset, 150 Wh, sensitivity 1, 32 replicas, 60 s)
    instead of proto3 zeros: in a hand-written file a missing
    ``capacityReplicas`` should not silently mean "make no offers", nor a
    missing offset UTC."""
    if not isinstance(data, dict):
        raise InvalidArgument.field("policy", f"must be a JSON object, not {type(data).__name__}")
    msg = federator_pb2.OfferPolicy()
    try:
        json_format.ParseDict(data, msg)
    except json_format.ParseError as exc:
        raise InvalidArgument.field("policy", str(exc)) from None
    return policy_from_proto(_with_defaults(msg, data))


def policy_to_json(policy: OfferPolicy) -> dict[str, Any]:
    return json_format.MessageToDict(
        policy_to_proto(policy), always_print_fields_with_no_presence=True
    )


def _given(data: dict[str, Any], json_name: str, proto_name: str) -> bool:
    return json_name in data or proto_name in data


def _with_defaults(
    msg: federator_pb2.OfferPolicy, data: dict[str, Any]
) -> federator_pb2.OfferPolicy:
    """Fills the proto fields absent from ``data`` with the model's defaults."""
    out = federator_pb2.OfferPolicy()
    out.CopyFrom(msg)
    if not _given(data, "capacityReplicas", "capacity_replicas"):
        out.capacity_replicas = p.DEFAULT_CAPACITY
    if not _given(data, "offerValidityMs", "offer_validity_ms"):
        out.offer_validity_ms = p.DEFAULT_VALIDITY_MS
    tariff = data.get("tariff")
    if out.WhichOneof("pricing") == "tariff" and isinstance(tariff, dict):
        if not _given(tariff, "wattHoursPerReplica", "watt_hours_per_replica"):
            out.tariff.watt_hours_per_replica = p.DEFAULT_WATT_HOURS
        if not _given(tariff, "loadSensitivity", "load_sensitivity"):
            out.tariff.load_sensitivity = p.DEFAULT_LOAD_SENSITIVITY
        if not _given(tariff, "utcOffsetMinutes", "utc_offset_minutes"):
            known = p.TARIFFS.get(out.tariff.region.upper())
            if known is not None:  # unknown regions fail validation next
                out.tariff.utc_offset_minutes = known.utc_offset_minutes
    return out


# --- MEC 040 registry -----------------------------------------------------------

_CHANGE = {
    "existing": federator_pb2.SystemUpdateNotification.CHANGE_EXISTING,
    "registered": federator_pb2.SystemUpdateNotification.CHANGE_REGISTERED,
    "updated": federator_pb2.SystemUpdateNotification.CHANGE_UPDATED,
    "deregistered": federator_pb2.SystemUpdateNotification.CHANGE_DEREGISTERED,
}


def notification_to_proto(
    change: str, records: Iterable[SystemRecord]
) -> federator_pb2.SystemUpdateNotification:
    """One registry change as the WatchSystems stream sends it."""
    return federator_pb2.SystemUpdateNotification(
        change=_CHANGE[str(change)], updated_system_info=[system_to_proto(r) for r in records]
    )


def system_id_from(value: str) -> str:
    if not value:
        raise InvalidArgument.field("system_id", "is required")
    if len(value) > MAX_ID:
        raise InvalidArgument.field(
            "system_id", f"is {len(value)} characters long; at most {MAX_ID}"
        )
    return value


def system_update_from_proto(
    msg: federator_pb2.UpdateSystemRequest,
) -> tuple[str, str | None, EndPoint | None]:
    """(system id, new name or None, new endpoint or None)."""
    endpoint = (
        endpoint_info_from_proto(msg.endpoint, "endpoint") if msg.HasField("endpoint") else None
    )
    return system_id_from(msg.system_id), msg.system_name or None, endpoint

"""Tests for mecfed.wire.federator: the MEF's Mfm messages, the offer policy's
proto and JSON forms (moved from tests/mef/test_pricing.py) and the MEC 040
registry's requests and notifications."""

from __future__ import annotations

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model import (
    AppSpec,
    EndPoint,
    Federation,
    FederationRequest,
    FederationState,
    FixedPricing,
    Offer,
    OfferPolicy,
    Problem,
    Requirements,
    Step,
    SystemRecord,
    TariffPricing,
    TrafficReport,
)
from mecfed.model import pricing as p
from mecfed.v1 import common_pb2, federator_pb2
from mecfed.wire import common as wc
from mecfed.wire import federator as w
from tests.model.support import invalid
from tests.wire.samples import APP, CONSUMER, PROVIDER, REQUIREMENTS, app_proto

# --- RequestFederation -------------------------------------------------------------


def request_proto(**kw: object) -> federator_pb2.RequestFederationRequest:
    fields: dict[str, object] = {
        "service_name": "svc",
        "app": app_proto(),
        "requirements": common_pb2.Requirements(max_price=100),
    }
    fields.update(kw)
    return federator_pb2.RequestFederationRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "req",
    [
        FederationRequest("svc", APP, REQUIREMENTS),
        FederationRequest("a" * 63, AppSpec("nginx"), Requirements(1), request_id="req-1"),
    ],
)
def test_federation_request_round_trip(req: FederationRequest) -> None:
    assert w.federation_request_from_proto(w.federation_request_to_proto(req)) == req


def test_federation_request_defaults() -> None:
    req = w.federation_request_from_proto(request_proto())
    assert req == FederationRequest("svc", AppSpec("nginx", 1), Requirements(100, 1, 3000))
    assert req.app.echo_port == 7 and req.request_id == ""


def test_federation_request_missing_parts() -> None:
    msg = request_proto()
    msg.ClearField("app")
    with invalid("app", "^is required$"):
        w.federation_request_from_proto(msg)
    msg = request_proto()
    msg.ClearField("requirements")
    with invalid("requirements", r"^is required \(at least max_price\)$"):
        w.federation_request_from_proto(msg)


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (request_proto(app=app_proto(memory_mib=3)), "app.resources.memory_mib"),
        (request_proto(app=app_proto(image="UPPER")), "app.image"),
        (request_proto(app=app_proto(replicas=0)), "app.replicas"),
        (request_proto(requirements=common_pb2.Requirements()), "requirements.max_price"),
        (
            request_proto(requirements=common_pb2.Requirements(max_price=1, offers_to_wait_for=65)),
            "requirements.offers_to_wait_for",
        ),
        (request_proto(service_name=""), "service_name"),
        (request_proto(service_name="Svc"), "service_name"),
        (request_proto(request_id="has space"), "request_id"),
    ],
)
def test_federation_request_violations(
    msg: federator_pb2.RequestFederationRequest, field: str
) -> None:
    with invalid(field):
        w.federation_request_from_proto(msg)


def test_federation_id_from() -> None:
    assert w.federation_id_from("fed-1") == "fed-1"
    with invalid("federation_id", "is required"):
        w.federation_id_from("")
    with invalid("federation_id", "not a valid id"):
        w.federation_id_from("x" * 65)


def test_states_from_proto() -> None:
    assert w.states_from_proto([]) == ()
    assert w.states_from_proto([1, 7, 9]) == (
        FederationState.REQUESTED,
        FederationState.ESTABLISHED,
        FederationState.TERMINATED,
    )
    with invalid("states[1]", "0 is not a federation state"):
        w.states_from_proto([1, 0])
    with invalid("states[0]", "12 is not a federation state"):
        w.states_from_proto([12])


# --- Federation records ---------------------------------------------------------------


def test_offer_to_proto() -> None:
    msg = w.offer_to_proto(Offer("prov", 42, ("ref", 1), valid_until=200.5, received_at=100.25))
    assert (msg.provider_id, msg.price) == ("prov", 42)
    assert wc.from_ts(msg.valid_until) == pytest.approx(200.5)
    assert wc.from_ts(msg.received_at) == pytest.approx(100.25)


def test_federation_to_proto_minimal() -> None:
    fed = Federation(
        "fed-1", "svc", APP, REQUIREMENTS, "consumer", "direct", created_at=1.0, updated_at=2.0
    )
    msg = w.federation_to_proto(fed)
    assert msg.federation_id == "fed-1" and msg.service_name == "svc"
    assert wc.app_from_proto(msg.app) == APP
    assert wc.requirements_from_proto(msg.requirements) == REQUIREMENTS
    assert msg.state == common_pb2.FEDERATION_STATE_REQUESTED
    assert (msg.consumer_id, msg.backend, msg.provider_id) == ("consumer", "direct", "")
    assert wc.from_ts(msg.created_at) == 1.0 and wc.from_ts(msg.updated_at) == 2.0
    for name in ("consumer_endpoint", "provider_endpoint", "traffic", "error"):
        assert not msg.HasField(name), name
    assert list(msg.offers) == [] and list(msg.steps) == []


def test_federation_to_proto_full() -> None:
    fed = Federation(
        "fed-1",
        "svc",
        APP,
        REQUIREMENTS,
        "consumer",
        "chain",
        state=FederationState.FAILED,
        provider_id="prov",
        offers=(Offer("prov", 7, "r", 5.0, 4.0), Offer("other", 9, "s", 5.0, 4.5)),
        price=7,
        app_instance_id="inst-1",
        consumer_endpoint=CONSUMER,
        provider_endpoint=PROVIDER,
        traffic=TrafficReport(20, 19, 0.5, 0.9),
        steps=(Step("offers", 1.0, 2.0), Step("deploy", 2.0, 5.0)),
        error=Problem("DeploymentFailed", 409, "traffic check failed"),
    )
    msg = w.federation_to_proto(fed)
    assert msg.state == common_pb2.FEDERATION_STATE_FAILED
    assert [o.provider_id for o in msg.offers] == ["prov", "other"]
    assert (msg.provider_id, msg.price, msg.app_instance_id) == ("prov", 7, "inst-1")
    assert wc.endpoint_from_proto(msg.consumer_endpoint, "c") == CONSUMER
    assert wc.endpoint_from_proto(msg.provider_endpoint, "p") == PROVIDER
    assert wc.traffic_from_proto(msg.traffic) == TrafficReport(20, 19, 0.5, 0.9)
    assert msg.traffic.loss == pytest.approx(0.05)
    assert [s.name for s in msg.steps] == ["offers", "deploy"]
    assert wc.problem_from_proto(msg.error) == fed.error
    assert msg.backend == "chain"


def test_federation_history_and_liveness_to_proto() -> None:
    fed = Federation("fed-1", "svc", APP, REQUIREMENTS, "c", "direct", created_at=1.0)
    fed = fed.evolve(state=FederationState.ESTABLISHED)
    fed = fed.evolve(
        state=FederationState.DEGRADED,
        reason="10/20 echoes answered",
        liveness=TrafficReport(20, 10, 0.5, 0.9, measured_at=50.0),
    )
    msg = w.federation_to_proto(fed)
    assert [(h.state, h.reason) for h in msg.history] == [
        (common_pb2.FEDERATION_STATE_ESTABLISHED, ""),
        (common_pb2.FEDERATION_STATE_DEGRADED, "10/20 echoes answered"),
    ]
    assert wc.from_ts(msg.history[1].at) == pytest.approx(fed.history[1].at)
    assert msg.liveness.received == 10 and wc.from_ts(msg.liveness.measured_at) == 50.0


def test_federation_round_trips_through_proto() -> None:
    fed = Federation(
        "fed-1",
        "svc",
        APP,
        REQUIREMENTS,
        "consumer",
        "chain",
        state=FederationState.DEGRADED,
        provider_id="prov",
        offers=(Offer("prov", 7, "", 5.0, 4.0),),
        price=7,
        app_instance_id="inst-1",
        consumer_endpoint=CONSUMER,
        provider_endpoint=PROVIDER,
        traffic=TrafficReport(20, 20, 0.5, 0.9, measured_at=3.0),
        steps=(Step("offers", 1.0, 2.0),),
        error=Problem("DeploymentFailed", 409, "x"),
        created_at=1.0,
        updated_at=9.0,
        liveness=TrafficReport(20, 19, 0.5, 0.9, measured_at=8.0),
    ).evolve(state=FederationState.ESTABLISHED, reason="passes again")
    back = w.federation_from_proto(w.federation_to_proto(fed))
    assert back.updated_at == pytest.approx(fed.updated_at)
    assert back.history[0].at == pytest.approx(fed.history[0].at)
    assert back.evolve(updated_at=1, history=()) == fed.evolve(updated_at=1, history=())
    assert [(h.state, h.reason) for h in back.history] == [(h.state, h.reason) for h in fed.history]


def test_federation_from_proto_refuses_unknown_states() -> None:
    msg = w.federation_to_proto(Federation("f", "svc", APP, REQUIREMENTS, "c", "direct"))
    msg.state = 99  # type: ignore[assignment]
    with pytest.raises(InvalidArgument):
        w.federation_from_proto(msg)


def test_history_is_bounded_and_keeps_its_start() -> None:
    from mecfed.model.federation import MAX_HISTORY

    fed = Federation("f", "svc", APP, REQUIREMENTS, "c", "direct")
    fed = fed.evolve(state=FederationState.COLLECTING_OFFERS, reason="first")
    for i in range(MAX_HISTORY + 10):
        state = FederationState.DEGRADED if i % 2 else FederationState.ESTABLISHED
        fed = fed.evolve(state=state, reason=str(i))
    assert len(fed.history) == MAX_HISTORY
    assert fed.history[0].reason == "first"
    assert fed.history[-1].reason == str(MAX_HISTORY + 9)
    # No transition, no entry.
    assert fed.evolve(state=fed.state).history == fed.history


@pytest.mark.parametrize("state", list(FederationState))
def test_federation_state_on_the_wire(state: FederationState) -> None:
    fed = Federation("f", "svc", APP, REQUIREMENTS, "c", "direct", state=state)
    assert w.federation_to_proto(fed).state == state.value
    assert w.states_from_proto([w.federation_to_proto(fed).state]) == (state,)


# --- offer policy: proto -----------------------------------------------------------------


POLICIES = [
    OfferPolicy.default(),
    OfferPolicy(FixedPricing(99), capacity_replicas=0, offer_validity_ms=5),
    OfferPolicy(FixedPricing(p.MAX_PRICE), capacity_replicas=10_000, offer_validity_ms=3_600_000),
    OfferPolicy(TariffPricing("PT", 42, 0, 0.0), capacity_replicas=3),
    OfferPolicy(TariffPricing("GR", 7, -300, 2.5)),
    OfferPolicy(TariffPricing("SE", 100_000, 840, 0.3)),
    OfferPolicy(TariffPricing("es", 1, -720, 10.0), capacity_replicas=1, offer_validity_ms=1),
]


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_round_trips(policy: OfferPolicy) -> None:
    assert w.policy_from_proto(w.policy_to_proto(policy)) == policy
    assert w.policy_from_json(w.policy_to_json(policy)) == policy


def test_policy_to_proto_fields() -> None:
    msg = w.policy_to_proto(
        OfferPolicy(TariffPricing("DE"), capacity_replicas=8, offer_validity_ms=30_000)
    )
    assert msg.WhichOneof("pricing") == "tariff"
    assert (msg.tariff.region, msg.tariff.watt_hours_per_replica) == ("DE", 150)
    assert (msg.tariff.utc_offset_minutes, msg.tariff.load_sensitivity) == (60, 1.0)
    assert (msg.capacity_replicas, msg.offer_validity_ms) == (8, 30_000)
    assert w.policy_to_proto(OfferPolicy(FixedPricing(5))).fixed.price == 5


def test_policy_to_json_prints_every_field() -> None:
    assert w.policy_to_json(
        OfferPolicy(TariffPricing("DE", utc_offset_minutes=0, load_sensitivity=0), 0)
    ) == {
        "tariff": {
            "region": "DE",
            "wattHoursPerReplica": 150,
            "utcOffsetMinutes": 0,
            "loadSensitivity": 0.0,
        },
        "capacityReplicas": 0,
        "offerValidityMs": 60_000,
    }
    assert w.policy_to_json(OfferPolicy(FixedPricing(7))) == {
        "fixed": {"price": "7"},
        "capacityReplicas": 32,
        "offerValidityMs": 60_000,
    }


def test_policy_from_proto_requires_pricing() -> None:
    with invalid("policy", "^needs one of fixed or tariff pricing$"):
        w.policy_from_proto(federator_pb2.OfferPolicy(offer_validity_ms=1))
    with invalid("set.policy", "needs one of fixed or tariff"):
        w.policy_from_proto(federator_pb2.OfferPolicy(offer_validity_ms=1), "set.policy")


def test_policy_from_proto_takes_zeros_literally() -> None:
    msg = federator_pb2.OfferPolicy(offer_validity_ms=1)
    msg.tariff.region = "DE"
    msg.tariff.watt_hours_per_replica = 1
    policy = w.policy_from_proto(msg)
    assert policy.pricing.utc_offset_minutes == 0  # type: ignore[union-attr]
    assert policy.pricing.load_sensitivity == 0.0  # type: ignore[union-attr]
    assert policy.capacity_replicas == 0 and not policy.makes_offers


def tariff_policy(**tariff: object) -> federator_pb2.OfferPolicy:
    fields: dict[str, object] = {"region": "DE", "watt_hours_per_replica": 100}
    fields.update(tariff)
    return federator_pb2.OfferPolicy(
        tariff=federator_pb2.OfferPolicy.Tariff(**fields),  # type: ignore[arg-type]
        capacity_replicas=4,
        offer_validity_ms=1000,
    )


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (
            tariff_policy(region="XX"),
            "policy.tariff.region",
            "'XX' is unknown; known regions: DE, ",
        ),
        (tariff_policy(region=""), "policy.tariff.region", "is unknown"),
        (tariff_policy(watt_hours_per_replica=0), "policy.tariff.watt_hours_per_replica", "is 0"),
        (
            tariff_policy(watt_hours_per_replica=100_001),
            "policy.tariff.watt_hours_per_replica",
            "is 100001",
        ),
        (tariff_policy(utc_offset_minutes=-721), "policy.tariff.utc_offset_minutes", "is -721"),
        (tariff_policy(utc_offset_minutes=841), "policy.tariff.utc_offset_minutes", "is 841"),
        (tariff_policy(load_sensitivity=-0.5), "policy.tariff.load_sensitivity", "is -0.5"),
        (tariff_policy(load_sensitivity=float("nan")), "policy.tariff.load_sensitivity", "nan"),
        (
            federator_pb2.OfferPolicy(
                fixed=federator_pb2.OfferPolicy.Fixed(price=0), offer_validity_ms=1
            ),
            "policy.fixed.price",
            "must be greater than 0",
        ),
        (
            federator_pb2.OfferPolicy(
                fixed=federator_pb2.OfferPolicy.Fixed(price=p.MAX_PRICE + 1), offer_validity_ms=1
            ),
            "policy.fixed.price",
            "at most",
        ),
        (
            federator_pb2.OfferPolicy(
                fixed=federator_pb2.OfferPolicy.Fixed(price=1),
                capacity_replicas=10_001,
                offer_validity_ms=1,
            ),
            "policy.capacity_replicas",
            "is 10001",
        ),
        (
            federator_pb2.OfferPolicy(fixed=federator_pb2.OfferPolicy.Fixed(price=1)),
            "policy.offer_validity_ms",
            "is 0",
        ),
        (
            federator_pb2.OfferPolicy(
                fixed=federator_pb2.OfferPolicy.Fixed(price=1), offer_validity_ms=3_600_001
            ),
            "policy.offer_validity_ms",
            "is 3600001",
        ),
    ],
)
def test_policy_from_proto_violations(
    msg: federator_pb2.OfferPolicy, field: str, match: str
) -> None:
    with invalid(field, match):
        w.policy_from_proto(msg)


# --- offer policy: JSON --------------------------------------------------------------------


def test_from_json_fills_defaults_for_missing_fields() -> None:
    policy = w.policy_from_json({"tariff": {"region": "DE"}})
    assert policy == OfferPolicy(TariffPricing("DE"))
    assert policy.capacity_replicas == 32
    assert policy.offer_validity_ms == 60_000
    tariff = policy.pricing
    assert isinstance(tariff, TariffPricing)
    assert tariff.watt_hours_per_replica == 150
    assert tariff.load_sensitivity == 1.0
    assert tariff.utc_offset_minutes == 60  # the region's, not UTC


@pytest.mark.parametrize("region", sorted(p.TARIFFS))
def test_from_json_offset_defaults_to_the_regions(region: str) -> None:
    for spelled in (region, region.lower()):
        policy = w.policy_from_json({"tariff": {"region": spelled}})
        assert policy.pricing.utc_offset_minutes == p.TARIFFS[region].utc_offset_minutes  # type: ignore[union-attr]


def test_from_json_takes_given_zeros_literally() -> None:
    explicit = w.policy_from_json(
        {
            "tariff": {"region": "DE", "utcOffsetMinutes": 0, "loadSensitivity": 0},
            "capacityReplicas": 0,
        }
    )
    assert explicit.capacity_replicas == 0
    assert explicit.pricing == TariffPricing("DE", utc_offset_minutes=0, load_sensitivity=0)


def test_from_json_accepts_proto_field_names() -> None:
    policy = w.policy_from_json(
        {
            "tariff": {
                "region": "FR",
                "watt_hours_per_replica": 9,
                "utc_offset_minutes": 0,
                "load_sensitivity": 0.5,
            },
            "capacity_replicas": 3,
            "offer_validity_ms": 10,
        }
    )
    assert policy == OfferPolicy(
        TariffPricing("FR", 9, 0, 0.5), capacity_replicas=3, offer_validity_ms=10
    )


def test_from_json_fixed() -> None:
    assert w.policy_from_json({"fixed": {"price": "7"}}).pricing == FixedPricing(7)
    policy = w.policy_from_json({"fixed": {"price": 7}, "offerValidityMs": 5})
    assert policy == OfferPolicy(FixedPricing(7), capacity_replicas=32, offer_validity_ms=5)


@pytest.mark.parametrize(
    ("data", "field", "match"),
    [
        ({"bogus": 1}, "policy", "bogus"),
        ({"fixed": {"price": "x"}}, "policy", "price"),
        ({"fixed": 5}, "policy", "fixed"),
        ({"fixed": {"price": 1}, "capacityReplicas": 1.5}, "policy", "capacityReplicas"),
        ({"fixed": {"price": 1}, "tariff": {"region": "DE"}}, "policy", "pricing"),
        ({}, "policy", "one of fixed or tariff"),
        ({"tariff": None}, "policy", "one of fixed or tariff"),
        ({"tariff": {}}, "policy.tariff.region", "is unknown"),
        (
            {"tariff": {"region": "ZZ"}},
            "policy.tariff.region",
            "known regions: DE, ES, FR, GR, IT, NL, PT, SE",
        ),
        (
            {"tariff": {"region": "DE", "wattHoursPerReplica": 0}},
            "policy.tariff.watt_hours_per_replica",
            "is 0",
        ),
        ({"fixed": {"price": 0}}, "policy.fixed.price", "must be greater than 0"),
        ({"fixed": {"price": 1}, "offerValidityMs": 0}, "policy.offer_validity_ms", "is 0"),
        (
            {"fixed": {"price": 1}, "capacityReplicas": 10_001},
            "policy.capacity_replicas",
            "is 10001",
        ),
        ([], "policy", "must be a JSON object, not list"),
        ("fixed", "policy", "must be a JSON object, not str"),
        (None, "policy", "must be a JSON object, not NoneType"),
    ],
)
def test_from_json_errors(data: object, field: str, match: str) -> None:
    with invalid(field, match):
        w.policy_from_json(data)


# --- MEC 040 registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("existing", federator_pb2.SystemUpdateNotification.CHANGE_EXISTING),
        ("registered", federator_pb2.SystemUpdateNotification.CHANGE_REGISTERED),
        ("updated", federator_pb2.SystemUpdateNotification.CHANGE_UPDATED),
        ("deregistered", federator_pb2.SystemUpdateNotification.CHANGE_DEREGISTERED),
    ],
)
def test_notification_to_proto(change: str, value: int) -> None:
    records = [
        SystemRecord("id1", "n", "p", EndPoint(alternative="x")),
        SystemRecord("id2", "m", "p"),
    ]
    msg = w.notification_to_proto(change, records)
    assert msg.change == value
    assert [wc.system_from_proto(i) for i in msg.updated_system_info] == records
    assert list(w.notification_to_proto(change, []).updated_system_info) == []


def test_notification_to_proto_takes_the_registrys_change_enum() -> None:
    from mef.registry import Change

    for change in Change:
        assert (
            w.notification_to_proto(change, []).change
            == w.notification_to_proto(str(change), []).change
        )


def test_system_id_from() -> None:
    assert w.system_id_from("x" * 64) == "x" * 64
    with invalid("system_id", "is required"):
        w.system_id_from("")
    with invalid("system_id", "is 65 characters long; at most 64"):
        w.system_id_from("x" * 65)


def test_system_update_from_proto() -> None:
    msg = federator_pb2.UpdateSystemRequest(system_id="sys", system_name="new")
    assert w.system_update_from_proto(msg) == ("sys", "new", None)
    msg.endpoint.fqdn.fqdn.append("a.example")
    assert w.system_update_from_proto(msg) == ("sys", "new", EndPoint(fqdn=("a.example",)))
    assert w.system_update_from_proto(federator_pb2.UpdateSystemRequest(system_id="sys")) == (
        "sys",
        None,
        None,
    )


def test_system_update_from_proto_violations() -> None:
    with invalid("system_id", "is required"):
        w.system_update_from_proto(federator_pb2.UpdateSystemRequest(system_name="n"))
    msg = federator_pb2.UpdateSystemRequest(system_id="sys")
    msg.endpoint.uris.uris.extend(["ok", ""])
    with invalid("endpoint.uris[1]", "is required"):
        w.system_update_from_proto(msg)
    msg = federator_pb2.UpdateSystemRequest(system_id="sys", endpoint=common_pb2.EndPointInfo())
    with invalid("endpoint", "exactly one of"):
        w.system_update_from_proto(msg)

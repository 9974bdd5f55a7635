"""A hostile caller at every RPC of the MEF (Mfm and Mff), direct backend:
bad input gets the right status code, names the field, and leaves nothing
behind (no federation record, no quote, no deployment)."""

from __future__ import annotations

import time

import grpc
import pytest

from mecfed.rpc.security import secure_channel
from mecfed.rpc.status import violations_of
from mecfed.v1 import common_pb2, federator_pb2, peer_pb2, peer_pb2_grpc
from tests.mef.conftest import NO_OFFERS, fixed_policy


@pytest.fixture
def transport_kind() -> str:
    return "direct"


def app(**kw) -> common_pb2.AppSpec:
    base = {"image": "mecfed/echo:1", "replicas": 1}
    base.update(kw)
    resources = base.pop("resources", None)
    msg = common_pb2.AppSpec(**base)
    if resources:
        msg.resources.CopyFrom(common_pb2.Resources(**resources))
    return msg


def req(**kw) -> federator_pb2.RequestFederationRequest:
    msg = federator_pb2.RequestFederationRequest(
        service_name=kw.pop("service_name", "svc"),
        app=kw.pop("app", app()),
        requirements=kw.pop("requirements", common_pb2.Requirements(max_price=1000)),
    )
    for key, value in kw.items():
        setattr(msg, key, value)
    return msg


BAD_REQUESTS = [
    (req(app=app(resources={"memory_mib": 3})), "app.resources.memory_mib"),
    (req(app=app(resources={"cpu_millicores": 64_001})), "app.resources.cpu_millicores"),
    (req(app=app(image="Mecfed/Echo:1")), "app.image"),
    (req(app=app(image="echo:")), "app.image"),
    (req(app=app(image="")), "app.image"),
    (req(app=app(replicas=0)), "app.replicas"),
    (req(app=app(replicas=17)), "app.replicas"),
    (req(app=app(echo_port=70_000)), "app.echo_port"),
    (req(requirements=common_pb2.Requirements(max_price=0)), "requirements.max_price"),
    (req(requirements=common_pb2.Requirements(max_price=10**16)), "requirements.max_price"),
    (
        req(requirements=common_pb2.Requirements(max_price=1, offers_to_wait_for=65)),
        "requirements.offers_to_wait_for",
    ),
    (
        req(requirements=common_pb2.Requirements(max_price=1, offer_timeout_ms=600_001)),
        "requirements.offer_timeout_ms",
    ),
    (req(service_name="Not_A_Label"), "service_name"),
    (req(service_name=""), "service_name"),
    (req(request_id="x" * 65), "request_id"),
    (req(request_id="bad id\n"), "request_id"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_REQUESTS, ids=[f for _, f in BAD_REQUESTS])
async def test_request_federation_refuses_bad_input_before_any_offer(federation_net, bad, field):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestFederation(bad, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in {v.field for v in violations_of(err.value)}, err.value.details()
        assert field in err.value.details()
        listed = await stub.ListFederations(federator_pb2.ListFederationsRequest(), timeout=5)
    assert list(listed.federations) == []
    assert provider.mef.provider.outstanding_quotes == 0
    assert consumer.meo.reserved == set()


async def test_missing_sub_messages_are_named(federation_net):
    (consumer,) = await federation_net([NO_OFFERS])
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        for missing in ("app", "requirements"):
            msg = req()
            msg.ClearField(missing)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RequestFederation(msg, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"{missing} is required" in err.value.details()


async def test_malformed_message_is_invalid_argument(federation_net):
    (consumer,) = await federation_net([NO_OFFERS])
    async with consumer.channel() as ch:
        call = ch.unary_unary("/mecfed.v1.MecFederator/RequestFederation")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)  # a length beyond the message
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "RequestFederationRequest" in err.value.details()


async def test_lifecycle_misuse(federation_net):
    (consumer,) = await federation_net([NO_OFFERS])
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        for rpc, message in [
            (stub.GetFederation, federator_pb2.GetFederationRequest(federation_id="fed-none")),
            (
                stub.TerminateFederation,
                federator_pb2.TerminateFederationRequest(federation_id="fed-none"),
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await rpc(message, timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetFederation(federator_pb2.GetFederationRequest(federation_id=""))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListFederations(federator_pb2.ListFederationsRequest(states=[99]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestFederation(req(service_name="nosuch"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_set_offer_policy_names_the_bad_field(federation_net):
    (consumer,) = await federation_net([NO_OFFERS])
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        bad = federator_pb2.OfferPolicy(capacity_replicas=1, offer_validity_ms=1000)
        bad.tariff.region = "XX"
        bad.tariff.watt_hours_per_replica = 100
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetOfferPolicy(federator_pb2.SetOfferPolicyRequest(policy=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in violations_of(err.value)} == {"policy.tariff.region"}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetOfferPolicy(federator_pb2.SetOfferPolicyRequest())
        assert "policy is required" in err.value.details()


def peer_stub(caller, target) -> tuple[grpc.aio.Channel, peer_pb2_grpc.FederationPeerStub]:
    ch = secure_channel(f"127.0.0.1:{target.mef.port}", caller.config.tls, target.system_id)
    return ch, peer_pb2_grpc.FederationPeerStub(ch)


def install(**kw) -> peer_pb2.InstallAppRequest:
    msg = peer_pb2.InstallAppRequest(
        offer_id=kw.pop("offer_id", "offer-x"),
        federation_id=kw.pop("federation_id", "fed-1"),
        consumer_endpoint=kw.pop(
            "consumer_endpoint",
            common_pb2.OverlayEndpoint(
                underlay_ip="10.213.0.10", subnet="172.30.1.0/24", app_ips=["172.30.1.1"]
            ),
        ),
        candidates=kw.pop("candidates", [common_pb2.TunnelCandidate(vni=5000, udp_port=4789)]),
    )
    return msg


BAD_INSTALLS = [
    (install(offer_id=""), "offer_id"),
    (install(federation_id="no spaces"), "federation_id"),
    (install(candidates=[]), "candidates"),
    (install(candidates=[common_pb2.TunnelCandidate(vni=0, udp_port=4789)]), "candidates[0].vni"),
    (
        install(candidates=[common_pb2.TunnelCandidate(vni=5000, udp_port=80)]),
        "candidates[0].udp_port",
    ),
    (
        install(
            consumer_endpoint=common_pb2.OverlayEndpoint(
                underlay_ip="224.0.0.1", subnet="172.30.1.0/24"
            )
        ),
        "consumer_endpoint.underlay_ip",
    ),
    (
        install(
            consumer_endpoint=common_pb2.OverlayEndpoint(underlay_ip="::1", subnet="172.30.1.0/24")
        ),
        "consumer_endpoint.underlay_ip",
    ),
    (
        install(
            consumer_endpoint=common_pb2.OverlayEndpoint(
                underlay_ip="10.213.0.10", subnet="172.30.1.0/24", app_ips=["172.30.2.1"]
            )
        ),
        "consumer_endpoint.app_ips[0]",
    ),
    (
        install(
            consumer_endpoint=common_pb2.OverlayEndpoint(
                underlay_ip="10.213.0.11", subnet="172.30.1.0/24"
            )
        ),
        "consumer_endpoint.underlay_ip",  # the provider's own underlay
    ),
]


@pytest.mark.parametrize(("bad", "field"), BAD_INSTALLS, ids=[f for _, f in BAD_INSTALLS])
async def test_install_app_refuses_bad_orders(federation_net, bad, field):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    ch, stub = peer_stub(consumer, provider)
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.InstallApp(bad, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in violations_of(err.value)}, err.value.details()
    assert len(provider.mef.deployments) == 0
    assert provider.mef.provider.ledger.used == 0


async def test_install_app_lifecycle_misuse(federation_net):
    consumer, provider, other = await federation_net([NO_OFFERS, fixed_policy(100), NO_OFFERS])
    ch, stub = peer_stub(consumer, provider)
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.InstallApp(install(offer_id="offer-unknown"), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        offer = await stub.RequestOffer(
            peer_pb2.RequestOfferRequest(federation_id="fed-1", app=app(), max_price=1000)
        )
        installed = await stub.InstallApp(install(offer_id=offer.offer_id), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the same federation again
            await stub.InstallApp(install(offer_id=offer.offer_id), timeout=5)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        final = [
            d
            async for d in stub.WatchAppInstance(
                peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id)
            )
        ][-1]
        assert final.state == common_pb2.INSTANCE_STATE_READY
    # Another system can neither see nor remove it.
    ch2, intruder = peer_stub(other, provider)
    async with ch2:
        for rpc in (intruder.GetAppInstanceDetails, intruder.RemoveApp):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await rpc(peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:  # somebody else's offer
            await intruder.InstallApp(install(offer_id=offer.offer_id, federation_id="fed-9"))
        assert err.value.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION,
        )
    assert provider.mef.provider.ledger.used == 1
    async with peer_stub(consumer, provider)[0] as ch3:
        stub3 = peer_pb2_grpc.FederationPeerStub(ch3)
        removed = await stub3.RemoveApp(
            peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id)
        )
        assert removed.state == common_pb2.INSTANCE_STATE_TERMINATED
    assert provider.mef.provider.ledger.used == 0 and provider.meo.deployed == {}


async def test_mfm_is_only_for_the_systems_own_identity(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    async with provider.channel(as_system=consumer.config) as ch:  # consumer calls provider's Mfm
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await provider.federator(ch).ListFederations(federator_pb2.ListFederationsRequest())
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


TARIFF = {"tariff": {"region": "DE", "loadSensitivity": 2.0}, "capacityReplicas": 4}


async def test_unaccepted_offers_of_one_peer_do_not_move_anothers_price(federation_net):
    greedy, honest, provider = await federation_net([NO_OFFERS, NO_OFFERS, TARIFF])
    ch1, g = peer_stub(greedy, provider)
    ch2, h = peer_stub(honest, provider)
    async with ch1, ch2:
        ask = peer_pb2.RequestOfferRequest(federation_id="fed-h", app=app(), max_price=10**9)
        before = await h.RequestOffer(ask)
        for i in range(3):  # never accepted
            await g.RequestOffer(
                peer_pb2.RequestOfferRequest(
                    federation_id=f"fed-g{i}", app=app(replicas=1), max_price=10**9
                )
            )
        after = await h.RequestOffer(ask)
        # Short-lived: a quote is a price, not a reservation.
        assert after.valid_until.ToSeconds() <= time.time() + 10
    assert after.price == before.price
    assert provider.mef.provider.ledger.used == 0 and provider.mef.provider.load() == 0.0


async def test_one_consumers_federation_id_does_not_block_anothers(federation_net):
    first, second, provider = await federation_net([NO_OFFERS, NO_OFFERS, fixed_policy(100)])
    ch1, a = peer_stub(first, provider)
    ch2, b = peer_stub(second, provider)
    async with ch1, ch2:
        ask = peer_pb2.RequestOfferRequest(federation_id="fed-1", app=app(), max_price=1000)
        mine = await a.InstallApp(install(offer_id=(await a.RequestOffer(ask)).offer_id))
        theirs = await b.InstallApp(install(offer_id=(await b.RequestOffer(ask)).offer_id))
        assert mine.app_instance_id != theirs.app_instance_id
        with pytest.raises(grpc.aio.AioRpcError) as err:  # ids are public; instances are not
            await b.RemoveApp(peer_pb2.AppInstanceRequest(app_instance_id=mine.app_instance_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        removed = await b.RemoveApp(peer_pb2.AppInstanceRequest(federation_id="fed-1"))
        assert removed.app_instance_id == theirs.app_instance_id
        left = await a.GetAppInstanceDetails(
            peer_pb2.AppInstanceRequest(app_instance_id=mine.app_instance_id)
        )
        assert left.state in (common_pb2.INSTANCE_STATE_PENDING, common_pb2.INSTANCE_STATE_READY)
    assert set(provider.mef.provider.committed()) == {(first.system_id, "fed-1")}


@pytest.mark.parametrize(
    ("names", "dns", "why"),
    [
        (["mec-00", "mec-02"], ["mec-00"], "2 CNs"),
        (["mec-00\x00mec-02"], ["mec-00"], "not a system id"),
        (["mec-00"], ["mec-02"], "does not agree"),
    ],
    ids=["two-cns", "nul-byte", "san-disagrees"],
)
async def test_a_forged_identity_is_refused_at_mff(federation_net, tmp_path, names, dns, why):
    from tests.rpc.test_security import _forged

    _consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    forged = _forged(tmp_path / "pki", tmp_path / "forged", names, dns)
    async with secure_channel(f"127.0.0.1:{provider.mef.port}", forged, provider.system_id) as ch:
        stub = peer_pb2_grpc.FederationPeerStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestOffer(
                peer_pb2.RequestOfferRequest(federation_id="fed-1", app=app(), max_price=1000)
            )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert why in err.value.details()
    assert provider.mef.provider.outstanding_quotes == 0

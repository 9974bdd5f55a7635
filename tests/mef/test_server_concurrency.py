"""One request_id sent three times at once over Mfm makes one federation
(real MEF servers, mutual TLS on loopback; the MEO is the recording fake)."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.v1 import common_pb2, federator_pb2
from tests.mef.conftest import NO_OFFERS, fixed_policy
from tests.mef.test_conformance import request


@pytest.mark.parametrize("transport_kind", ["direct"])
async def test_concurrent_requests_with_one_request_id_make_one_federation(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    consumer.meo.require_delay = 0.05  # the check-then-create window of a real MEO call
    req = request()
    req.request_id = "order-42"
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        answers = await asyncio.gather(*(stub.RequestFederation(req, timeout=10) for _ in range(3)))
        assert len({a.federation_id for a in answers}) == 1
        listed = await stub.ListFederations(federator_pb2.ListFederationsRequest(), timeout=5)
        assert len(listed.federations) == 1
        updates = [
            u
            async for u in stub.WatchFederation(
                federator_pb2.WatchFederationRequest(federation_id=answers[0].federation_id),
                timeout=30,
            )
        ]
    assert updates[-1].state == common_pb2.FEDERATION_STATE_ESTABLISHED
    assert provider.mef.provider.ledger.used == 1  # paid once, deployed once
    assert len(provider.meo.deployed) == 1

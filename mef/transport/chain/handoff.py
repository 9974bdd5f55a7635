"""The consumer's order handed straight to the auction's winner over Mff
gRPC (the fast path; the on-chain order is the slow one), signed with the
consumer's chain key; the winner's deployment notice is checked against its
on-chain address."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount
from opentelemetry.trace import Tracer

from mecfed.chain.sealing import sign_message, verify_signer
from mecfed.model import DeploymentOrder, DeploymentResult, Installation
from mecfed.tracing import step_span
from mef.transport.chain import codec
from mef.transport.peer_client import PeerClient, PeerContact

if TYPE_CHECKING:
    from mef.transport.chain.auction import BidRef


async def hand_off(
    peers: PeerClient,
    account: LocalAccount,
    tracer: Tracer,
    ref: BidRef,
    order: DeploymentOrder,
    timeout: float,
) -> DeploymentResult:
    digest = codec.order_digest(
        ref.service_id, order.federation_id, order.consumer_endpoint, order.candidates
    )
    installation = Installation(
        offer_id=ref.service_id,
        federation_id=order.federation_id,
        consumer_endpoint=order.consumer_endpoint,
        candidates=order.candidates,
        consumer_signature=sign_message(account, digest),
    )
    with step_span(tracer, "handoff", provider=ref.contact.name, service_id=ref.service_id):
        details = await peers.install(
            PeerContact(ref.contact.endpoint, ref.contact.name), installation, timeout
        )
    endpoint = details.provider_endpoint
    assert endpoint is not None  # READY carries it (checked at the wire)
    verify_signer(
        codec.notice_digest(ref.service_id, endpoint), details.deployment_notice, ref.provider
    )
    return DeploymentResult(details.app_instance_id, endpoint)


async def keep_handing_off(
    attempt: Callable[[], Awaitable[DeploymentResult]],
    silence: float,
    retry_on: tuple[type[BaseException], ...],
) -> DeploymentResult:
    """``attempt`` again, once a second, until it is answered (a winner that
    restarts within ``silence`` seconds still deploys)."""
    give_up = asyncio.get_running_loop().time() + silence
    while True:
        try:
            return await attempt()
        except retry_on:
            if asyncio.get_running_loop().time() > give_up:
                raise
            await asyncio.sleep(1.0)


__all__ = ["hand_off", "keep_handing_off"]

"""The chain Mff transport: the Federation contract as the market.

A thin composition: the consumer's auction (:mod:`.auction`), the provider's
bidder (:mod:`.bidder`) and the order gate (:mod:`.gate`) share one chain
client, one payout queue and one set of background tasks. Identities on the
chain are member names (the MEC system ids they registered with) for display
and chain addresses for authorisation.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from opentelemetry.sdk.trace import TracerProvider

from mecfed import tracing
from mecfed.chain.client import ChainClient
from mecfed.chain.federation import FederationContract, ServiceState, status_for
from mecfed.chain.keystore import load_key
from mecfed.config import SystemConfig
from mecfed.errors import FailedPrecondition, MecfedError
from mecfed.model import DeploymentOrder, DeploymentResult, Federation, Offer, ServiceNeed
from mecfed.storage import Database
from mef.deployments import Deployments
from mef.tasks import TaskSet
from mef.transport.base import Capabilities, Fallback, ProviderHandler
from mef.transport.chain.auction import (
    ANNOUNCE_TIMEOUT_S,
    CHALLENGE_WINDOW_S,
    CONFIRM_WINDOW_S,
    ConsumerAuction,
)
from mef.transport.chain.bidder import Bidder
from mef.transport.chain.gate import ChainGate
from mef.transport.chain.maybe_sent import MaybeSent
from mef.transport.chain.payouts import Payouts
from mef.transport.chain.recovery import ProviderRecovery
from mef.transport.chain.settlement import ConsumerSettlement
from mef.transport.peer_client import PeerClient

CLOSE_TIMEOUT_S = 3.0
# Acknowledgement attempts after a passed traffic check (1, 2, 4, 8 s apart).
ACK_ATTEMPTS = 5

log = logging.getLogger(__name__)


class ChainTransport:
    name = "chain"
    # The auction ends on-chain (k bids or the first block past the bidding
    # deadline) and solicit_offers ends with it; the workflow's own timer is
    # only a safety net, so give it room for block production.
    capabilities = Capabilities(offer_grace=60.0, fallback=Fallback.MARKET)

    def __init__(
        self,
        system_id: str,
        client: ChainClient,
        contract_address: str,
        account: LocalAccount,
        peers: PeerClient,
        *,
        confirm_window: int = CONFIRM_WINDOW_S,
        challenge_window: int = CHALLENGE_WINDOW_S,
        block_period: int | None = None,
        traces: TracerProvider | None = None,
        database: Database | None = None,
    ) -> None:
        self.client = client
        self.contract = FederationContract(client, contract_address)
        self._peers = peers
        self._tasks = TaskSet(f"chain {system_id}", CLOSE_TIMEOUT_S)
        tracer = tracing.tracer(traces, "mecfed.chain")
        payouts = Payouts(self.contract, account.address)
        self.auction = ConsumerAuction(
            system_id,
            self.contract,
            account,
            peers,
            payouts,
            tracer,
            confirm_window=confirm_window,
            challenge_window=challenge_window,
            block_period=block_period,
        )
        # The chain is the source of truth; the database (if any) only
        # remembers how far the chain was scanned for our services.
        self.settlement = ConsumerSettlement(self.auction, database)
        # Announcements whose receipt wait gave up: watched (durably) and
        # cancelled if mined after all.
        self.maybe_sent = MaybeSent(self.contract, database, self._tasks, self._end_zombie)
        self.auction.maybe_sent = self.maybe_sent
        self.bidder = Bidder(system_id, self.contract, account, payouts, self._tasks, tracer)
        self.gate = ChainGate(self.bidder, self.contract, account, self._tasks)
        self.recovery = ProviderRecovery(self.bidder)
        self._recovering = False

    async def _end_zombie(self, service_id: str) -> None:
        await self.settlement.end(service_id)
        await self.auction.payouts.withdraw()

    async def start(
        self, provider: ProviderHandler, deployments: Deployments, mff_endpoint: str
    ) -> None:
        await self.bidder.start(provider, deployments, mff_endpoint)

    async def reconcile(self, live_federation_ids: set[str]) -> None:
        """Called by the MEF at start with the federations it still holds as
        consumer: every service of ours (found on the chain) that belongs to
        none of them is ended (escrow recovered, an unacknowledged deployment
        complained about) and our credits are withdrawn. Announcements a
        previous run gave up on while maybe sent are watched again (in the
        background: they may still be pending) and cancelled if mined, also
        for a federation that is live (a later attempt of it won)."""
        self.maybe_sent.resume()
        await self.settlement.reconcile(live_federation_ids)
        # What we won as provider before a restart: release what the
        # consumer ended, confirm what is still deployed, book what is
        # ours, reclaim bonds (in the background: chain scans). Here, not in
        # start(): it reads the deployments' durable records, which the
        # provider's reconcile with the MEO (before this call) settled.
        if not self._recovering:
            self._recovering = True
            self._tasks.spawn(self.recovery.run(), "provider recovery")

    async def close(self) -> None:
        """Bounded: a stream stuck reconnecting must not hold up shutdown."""
        await self._tasks.close()
        await self._peers.close()
        await self.client.close()

    def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        return self.auction.solicit_offers(need)

    async def award(
        self, need: ServiceNeed, ranked: Sequence[Offer], failed: Sequence[Offer]
    ) -> Offer | None:
        return await self.auction.award(need, failed)

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        return await self.auction.deploy(offer, order, timeout)

    async def established(self, federation: Federation) -> None:
        """Our traffic check passed: acknowledge on-chain, which pays the
        provider (until then a terminate refunds us). Off the critical path:
        ESTABLISHED does not wait for the winner's confirmation and our
        acknowledgement to be mined (two blocks); if it never lands, anyone's
        ``settle`` pays the provider once the challenge window is over."""
        self._tasks.spawn(
            self._acknowledge_retried(federation), f"acknowledge {federation.federation_id}"
        )

    async def _acknowledge_retried(self, federation: Federation) -> None:
        for attempt in range(ACK_ATTEMPTS):
            try:
                await self.acknowledge(federation)
                return
            except MecfedError as exc:
                log.warning(
                    "%s: acknowledgement failed (attempt %d of %d): %s",
                    federation.federation_id,
                    attempt + 1,
                    ACK_ATTEMPTS,
                    exc,
                )
                await asyncio.sleep(2.0**attempt)

    async def acknowledge(self, federation: Federation) -> None:
        """The on-chain acknowledgement itself (awaited)."""
        known = self.auction.auctions.get(federation.federation_id)
        if known is not None:
            service_id, from_block = known.service_id, known.block
        else:  # after a restart: the latest announcement for this federation
            service_id, from_block = await self._service_after_restart(federation), 0
        await self.auction.acknowledge(service_id, from_block)

    async def _service_after_restart(self, federation: Federation) -> str:
        """The federation's latest service that was not cancelled: a zombie
        announcement (mined after its attempt gave up, then cancelled) may
        be newer than the one that was deployed."""
        ids = await self.settlement.services_of(federation.federation_id)
        if not ids:
            raise FailedPrecondition(f"{federation.federation_id} was never announced")
        for service_id in reversed(ids):
            state = await self.contract.state(service_id)
            if state not in (ServiceState.CANCELLED, ServiceState.NONE):
                return service_id
        return ids[-1]

    def health(self) -> str | None:
        """The chain client's reason (the chain reset or replaced, the node
        unreachable, our account wedged), else the transport's (a provider
        stream that ended: we would silently stop bidding), None when ready."""
        return self.client.health() or self.bidder.health()

    async def terminate(self, federation: Federation) -> None:
        """Idempotent, in every state, also after a restart (the services of
        the federation are found on the chain)."""
        await self.settlement.terminate(federation)


def client_options(chain: dict[str, Any], database: Database | None) -> dict[str, Any]:
    """The chain client's hardening for the chain backend, from
    ``config.chain``: keyword arguments of :meth:`ChainClient.connect`."""
    return dict(
        status_for=status_for,
        db=database,
        # The Federation contract's code as first seen (recorded in the
        # journal): a different contract at that address later, or none (a
        # reset chain), is refused. Not the artifact's runtime code: the
        # contract has immutables (admin, policy), so its deployed code
        # differs from the artifact's deployedBytecode.
        expect_code={chain["contract"]: None},
        confirmations=int(chain.get("confirmations", 0)),
        # Not mined by then, an announcement is replaced by a no-op: the
        # workflow has given up on it (see ANNOUNCE_TIMEOUT_S).
        valid_for={"announce": ANNOUNCE_TIMEOUT_S},
    )


async def connect_chain_transport(
    config: SystemConfig,
    peers: PeerClient,
    traces: TracerProvider | None = None,
    database: Database | None = None,
) -> ChainTransport:
    """The chain backend from ``config.chain``: key from its keystore file,
    the node's WebSocket JSON-RPC, the Federation contract."""
    chain = config.chain
    missing = {"ws_url", "contract", "keystore", "password_file"} - set(chain)
    if missing:
        raise ValueError(f"chain backend needs config.chain keys {sorted(missing)}")
    # web3 logs every connect and subscribe at INFO.
    logging.getLogger("web3").setLevel(logging.WARNING)
    account = load_key(chain["keystore"], chain["password_file"])
    client = await ChainClient.connect(chain["ws_url"], account, **client_options(chain, database))
    period = chain.get("block_period")
    return ChainTransport(
        config.system_id,
        client,
        chain["contract"],
        account,
        peers,
        block_period=max(1, math.ceil(period)) if period else None,
        traces=traces,
        database=database,
    )


__all__ = ["ChainTransport", "client_options", "connect_chain_transport"]

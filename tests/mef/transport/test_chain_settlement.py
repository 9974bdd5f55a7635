"""The chain transport's money and lifecycle on a real anvil: the consumer's services are found
again from the chain after a restart and settled in every state (reconcile, terminate); the
acknowledgement pays the provider only after the traffic check; honest reasons when an auction
gets no bid (a stalled chain, a window too short for any bid, no bidder); the provider's gate
refuses an order after its deadline; the provider's restart releases what the consumer ended.

The parts under test are the real ones (ConsumerAuction, ConsumerSettlement, Bidder, ChainGate,
ProviderRecovery) against a real node; the MEF around them is not started: the peer client is
unused here, and the provider handler only records what it is asked to release.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from eth_account.signers.local import LocalAccount
from opentelemetry.trace import NoOpTracer

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.federation import (
    FederationContract,
    MembershipPolicy,
    ServiceState,
    Windows,
    status_for,
)
from mecfed.chain.sealing import sign_message
from mecfed.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from mecfed.model import (
    AppSpec,
    Federation,
    Installation,
    InstanceState,
    Offer,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
)
from mecfed.storage import MEMORY, Database
from mef.deployments import Deployments
from mef.provider_store import DeploymentRow, ProviderStore
from mef.tasks import TaskSet
from mef.transport.chain import codec
from mef.transport.chain.auction import ConsumerAuction
from mef.transport.chain.bidder import Bid, Bidder
from mef.transport.chain.gate import ChainGate
from mef.transport.chain.payouts import Payouts
from mef.transport.chain.recovery import ProviderRecovery
from mef.transport.chain.settlement import ConsumerSettlement

pytestmark = pytest.mark.asyncio
APP = AppSpec("echo:1")
PRICE = 100


@dataclass
class Net:
    anvil: Anvil
    feds: list[FederationContract]
    accounts: list[LocalAccount]

    async def mine(self, seconds: int = 0) -> None:
        client = self.feds[0].client
        if seconds:
            await client.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[attr-defined]
        await client.w3.provider.make_request("evm_mine", [])  # type: ignore[attr-defined]


async def _net(block_time: float | None = None) -> AsyncIterator[Net]:
    async with Anvil(host="127.0.0.1", accounts=5, block_time=block_time) as anvil:
        accounts = anvil.dev_accounts
        clients = [
            await ChainClient.connect(anvil.ws_url, a, status_for=status_for) for a in accounts[:4]
        ]
        try:
            admin = await FederationContract.deploy(
                clients[0], MembershipPolicy.ALLOWLIST, [a.address for a in accounts[1:4]]
            )
            feds = [FederationContract(c, admin.address) for c in clients[1:]]
            for i, fed in enumerate(feds):
                await fed.ensure_member(f"mec-{i}")
            yield Net(anvil, feds, list(accounts[1:4]))
        finally:
            await asyncio.gather(*(c.close() for c in clients))


@pytest_asyncio.fixture
async def net() -> AsyncIterator[Net]:
    async for n in _net():
        yield n


def _consumer(net: Net, block_period: int = 1) -> ConsumerAuction:
    fed, account = net.feds[0], net.accounts[0]
    # The peer client is not used by what these tests drive (no hand-off).
    return ConsumerAuction(
        "consumer",
        fed,
        account,
        None,  # type: ignore[arg-type]
        Payouts(fed, account.address),
        NoOpTracer(),
        block_period=block_period,
    )


def _need(federation_id: str, timeout_ms: int = 1000) -> ServiceNeed:
    return ServiceNeed(federation_id, "consumer", APP, Requirements(PRICE, 1, timeout_ms))


def _federation(federation_id: str) -> Federation:
    return Federation(federation_id, "svc", APP, Requirements(PRICE), "consumer", "chain")


async def _announce(net: Net, federation_id: str) -> str:
    requirements = codec.encode_requirements(_need(federation_id), "consumer")
    announced = await net.feds[0].announce(PRICE, 1, Windows(600, 30, 60, 60), requirements)
    return announced.service_id


async def _won(net: Net, federation_id: str, *, confirm: bool, ack: bool = False) -> str:
    consumer, provider = net.feds[0], net.feds[1]
    sid = await _announce(net, federation_id)
    await provider.bid(sid, 40, b"x")
    await net.mine()  # the end of the closing block
    await consumer.send_consumer_endpoint(sid, b"order")
    if confirm:
        await provider.confirm_deployment(sid, b"endpoint")
    if ack:
        await consumer.acknowledge(sid)
    return sid


async def test_reconcile_after_restart_settles_every_service_not_live(net: Net) -> None:
    consumer = net.feds[0]
    open_sid = await _announce(net, "fed-open")
    awarded = await _won(net, "fed-awarded", confirm=False)
    deployed = await _won(net, "fed-deployed", confirm=True)
    live = await _won(net, "fed-live", confirm=True, ack=True)
    # a restart: nothing in memory, only the chain
    settlement = ConsumerSettlement(_consumer(net))
    assert set(await settlement.services()) == {
        "fed-open",
        "fed-awarded",
        "fed-deployed",
        "fed-live",
    }
    await settlement.reconcile({"fed-live"})
    states = {sid: await consumer.state(sid) for sid in (open_sid, awarded, deployed, live)}
    assert states == {
        open_sid: ServiceState.CANCELLED,
        awarded: ServiceState.CANCELLED,
        deployed: ServiceState.TERMINATED,  # not acknowledged: our complaint, refunded
        live: ServiceState.ACKNOWLEDGED,
    }
    assert await consumer.credits(consumer.client.address) == 0, "withdrawn"
    # what is left in the contract: the live service's provider's price + bond, and the
    # bonds of the two winners that did not fail (the awarded one was cancelled before its
    # confirm deadline, the deployed one got its bond back with the refund)
    provider = net.feds[1]
    assert await provider.credits(provider.client.address) == 40 + 10 + 10
    (ended,) = await consumer.past_events(["ServiceTerminated"], service_id=deployed, from_block=0)
    assert ended.args["refunded"]


async def test_terminate_works_in_every_state_and_after_restart(net: Net) -> None:
    consumer = net.feds[0]
    cases = {
        "t-open": await _announce(net, "t-open"),
        "t-awarded": await _won(net, "t-awarded", confirm=False),
        "t-deployed": await _won(net, "t-deployed", confirm=True),
        "t-acked": await _won(net, "t-acked", confirm=True, ack=True),
    }
    closing = await _announce(net, "t-closing")
    await net.feds[1].bid(closing, 40, b"x")  # Closing until the next block
    cases["t-closing"] = closing
    settlement = ConsumerSettlement(_consumer(net))  # after a restart

    async def mine_soon() -> None:
        await asyncio.sleep(0.5)
        await net.mine()

    miner = asyncio.create_task(mine_soon())  # automine: the closing block ends with a block
    for federation_id in cases:
        await settlement.terminate(_federation(federation_id))
        await settlement.terminate(_federation(federation_id))  # idempotent
    await miner
    final = {f: await consumer.state(sid) for f, sid in cases.items()}
    assert final == {
        "t-open": ServiceState.CANCELLED,
        "t-awarded": ServiceState.CANCELLED,
        "t-deployed": ServiceState.TERMINATED,
        "t-acked": ServiceState.TERMINATED,
        "t-closing": ServiceState.CANCELLED,
    }
    await settlement.terminate(_federation("never-announced"))  # nothing on the chain
    assert await consumer.credits(consumer.client.address) == 0


async def test_established_acknowledges_on_chain(net: Net) -> None:
    consumer, provider = net.feds[0], net.feds[1]
    sid = await _won(net, "fed-ack", confirm=True)
    assert await provider.credits(provider.client.address) == 0, "unpaid before the check"
    auction = _consumer(net)
    await auction.acknowledge(sid, 0)
    assert await consumer.state(sid) is ServiceState.ACKNOWLEDGED
    assert await provider.credits(provider.client.address) == 40 + 10


@dataclass
class RecordingProvider:
    """Records the releases it is asked for (the rest of ProviderHandler is not reached)."""

    released: list[tuple[str, str]] = field(default_factory=list)

    async def release(self, federation_id: str, consumer_id: str) -> None:
        self.released.append((federation_id, consumer_id))

    def withdraw(self, offer_ref: str) -> None:
        pass


def _bidder(net: Net, tasks: TaskSet, provider: Any = None) -> Bidder:
    fed, account = net.feds[1], net.accounts[1]
    bidder = Bidder("mec-1", fed, account, Payouts(fed, account.address), tasks, NoOpTracer())
    bidder._provider = provider  # as start() would, without serving announcements
    return bidder


async def test_provider_restart_releases_what_the_consumer_ended(net: Net) -> None:
    consumer, provider = net.feds[0], net.feds[1]
    ended = await _won(net, "p-ended", confirm=True)
    cancelled = await _won(net, "p-cancelled", confirm=False)
    deployed = await _won(net, "p-running", confirm=True)
    await consumer.terminate(ended)  # while the provider is down: its complaint
    await consumer.cancel(cancelled)
    tasks = TaskSet("test", 1.0)
    recording = RecordingProvider()
    try:
        bidder = _bidder(net, tasks, recording)
        await ProviderRecovery(bidder).run()
        me = consumer.client.address
        assert sorted(recording.released) == [("p-cancelled", me), ("p-ended", me)]
        assert bidder.bid_on(deployed) is not None, "remembered: a later terminate releases it"
        assert not (await provider.bid_of(cancelled, provider.client.address)).bonded
        assert await provider.credits(provider.client.address) == 0, "bonds withdrawn"
    finally:
        await tasks.close()


async def test_gate_refuses_an_order_after_the_order_deadline(net: Net) -> None:
    consumer, provider = net.feds[0], net.feds[1]
    sid = await _announce(net, "g-late")
    await provider.bid(sid, 40, b"x")
    await net.mine(31)  # past the 30 s order window
    tasks = TaskSet("test", 1.0)
    try:
        bidder = _bidder(net, tasks)
        bidder.remember(
            Bid(sid, ServiceNeed("g-late", consumer.client.address, APP, Requirements(PRICE)), "q1")
        )
        gate = ChainGate(bidder, provider, net.accounts[1], tasks)
        endpoint = OverlayEndpoint("192.0.2.1", "10.9.0.0/24", ("10.9.0.2",), 0, 0)
        candidates = (TunnelCandidate(5000, 4789),)
        digest = codec.order_digest(sid, "g-late", endpoint, candidates)
        signature = sign_message(net.accounts[0], digest)
        order = Installation(sid, "g-late", endpoint, candidates, signature)
        with pytest.raises(DeadlineExceeded, match="order deadline"):
            await gate.admit(order, "consumer")
    finally:
        await tasks.close()


async def test_no_bid_is_reported_for_what_it_is(net: Net) -> None:
    """Interval mining, one member bids nothing: the window spans blocks, so no bidder."""
    auction = _consumer(net)
    miner = asyncio.create_task(_mine_every(net, 1.0))
    try:
        with pytest.raises(DeadlineExceeded, match="no offer: none of the 2 other members bid"):
            async for _ in auction.solicit_offers(_need("n-1", 1000)):
                pass
    finally:
        miner.cancel()


async def _mine_every(net: Net, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        await net.mine(int(period))


async def test_a_window_too_short_for_any_bid_is_reported(net: Net) -> None:
    """Blocks far apart (10 s) against a 4 s window: the first block after the announcement
    already ends it, so no provider could have bid."""
    auction = _consumer(net, block_period=1)
    miner = asyncio.create_task(_mine_every(net, 10.0))  # each mined block is 10 s later
    try:
        with pytest.raises(DeadlineExceeded, match="providers need 2 blocks"):
            async for _ in auction.solicit_offers(_need("n-2", 1000)):
                pass
    finally:
        miner.cancel()


async def test_a_stalled_chain_is_reported(net: Net) -> None:
    """Automine and nobody transacting: no block after the announcement."""
    auction = _consumer(net, block_period=1)
    with pytest.raises(Unavailable, match="chain stalled"):
        async for _ in auction.solicit_offers(_need("n-3", 1000)):
            pass


async def test_the_scan_cursor_survives_a_restart_in_the_database(net: Net, tmp_path: Any) -> None:
    path = tmp_path / "mef.db"
    db = Database(path)
    first = ConsumerSettlement(_consumer(net), db)
    sid = await _announce(net, "d-1")
    assert (await first.services())["d-1"] == [sid]
    db.close()
    db = Database(path)  # a restart
    try:
        row = db.query_one("SELECT block FROM chain_scan")
        assert row is not None and row["block"] >= 1
        again = ConsumerSettlement(_consumer(net), db)
        assert again._scanned_to == row["block"], "scans only the blocks after the cursor"
        later = await _announce(net, "d-2")
        found = await again.services()
        assert (found["d-1"], found["d-2"]) == ([sid], [later])
        await again.reconcile(set())
        assert await net.feds[0].state(sid) is ServiceState.CANCELLED
    finally:
        db.close()


async def test_a_restarted_provider_does_not_bid_on_stale_auctions(net: Net) -> None:
    consumer = net.feds[0]
    stale = await _announce(net, "s-old")  # announced while the provider was down
    await net.mine()
    tasks = TaskSet("test", 1.0)
    quoted: list[str] = []

    class Quoting(RecordingProvider):
        async def quote(self, need: ServiceNeed, *, binding: bool = False) -> Any:
            quoted.append(need.federation_id)
            raise ResourceExhausted("at capacity")

    try:
        bidder = _bidder(net, tasks)
        # deployments: only reached by order events, which this test does not send
        await bidder.start(Quoting(), None, "127.0.0.1:1")  # type: ignore[arg-type]
        fresh = await _announce(net, "s-new")
        for _ in range(50):
            if quoted:
                break
            await asyncio.sleep(0.1)
        assert quoted == ["s-new"], "priced the new announcement only"
        assert bidder.bid_on(stale) is None and bidder.bid_on(fresh) is None
        assert await consumer.state(stale) is ServiceState.OPEN
    finally:
        await tasks.close()


async def test_provider_restart_confirms_an_award_it_had_deployed(net: Net) -> None:
    """Won before the restart, the order on-chain, not confirmed yet: with a
    READY durable deployment record (kept by the provider's reconcile) the
    award is confirmed, not declined; without one it is declined and
    released through the deployments registry."""
    consumer = net.feds[0]
    running = await _won(net, "p-ready", confirm=False)
    gone = await _won(net, "p-gone", confirm=False)
    me = consumer.client.address
    db = Database(MEMORY)
    endpoint = OverlayEndpoint("192.0.2.1", "10.9.0.0/24", ("10.9.0.2",), 1001, 4789)
    ProviderStore(db).save_deployment(
        DeploymentRow(
            "app-1", "p-ready", me, f"chain:{me}", "q1", InstanceState.READY, endpoint, None, b""
        )
    )
    tasks = TaskSet("test", 1.0)
    recording = RecordingProvider()
    try:
        bidder = _bidder(net, tasks, recording)
        bidder._deployments = Deployments(recording, None, db=db)  # type: ignore[arg-type]
        await ProviderRecovery(bidder).run()
        assert await consumer.state(running) is ServiceState.DEPLOYED, "confirmed"
        (confirmed,) = await consumer.past_events(
            ["DeploymentConfirmed"], service_id=running, from_block=0
        )
        assert (
            codec.open_confirmation(net.accounts[0], bytes(confirmed.args["sealedEndpoint"]))
            == endpoint
        )
        assert (await consumer.service(gone)).round == 1, "declined: a new round"
        assert recording.released == [("p-gone", me)], "only the one not deployed"
        ready = bidder._deployments.find(me, "p-ready")
        assert ready is not None and ready.state is InstanceState.READY
    finally:
        await tasks.close()
        db.close()


async def test_a_reorged_announcement_withdraws_the_bid(net: Net) -> None:
    """The provider bid on an announcement whose block is then rolled back:
    the quote behind the bid is withdrawn and the bid forgotten."""
    tasks = TaskSet("test", 1.0)
    withdrawn: list[str] = []

    class Quoting(RecordingProvider):
        async def quote(self, need: ServiceNeed, *, binding: bool = False) -> Any:
            return Offer("mec-1", 40, "q-reorg", valid_until=0)

        def withdraw(self, offer_ref: str) -> None:
            withdrawn.append(offer_ref)

    try:
        bidder = _bidder(net, tasks)
        await bidder.start(Quoting(), None, "127.0.0.1:1")  # type: ignore[arg-type]
        sid = await _announce(net, "r-ann")
        provider = net.feds[1]
        for _ in range(100):
            if (await provider.bid_of(sid, provider.client.address)).price:
                break
            await asyncio.sleep(0.1)
        assert bidder.bid_on(sid) is not None
        await net.feds[0].client.w3.provider.make_request("anvil_rollback", [2])  # type: ignore[attr-defined]
        await net.mine()  # a new block at the announcement's height
        for _ in range(100):
            if withdrawn:
                break
            await asyncio.sleep(0.1)
        assert withdrawn[:1] == ["q-reorg"]
    finally:
        await tasks.close()

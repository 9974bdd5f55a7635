"""The chain transport on the hardened chain client, on a real anvil: an
announcement that may have been sent (its receipt wait gave up) is watched,
durably, and cancelled once mined, also after a restart and for a
federation that is live; a stale one in a nonce gap is replaced by a no-op
and never escrows; health() reports a wedged client, a different contract at
the address and a reset chain; a reorged bid is not counted.

The consumer's transport is the real ChainTransport with the client options
connect_chain_transport uses (client_options); its peer client is never
reached (no hand-off here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from eth_account.signers.local import LocalAccount

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient, NotMined
from mecfed.chain.federation import FederationContract, MembershipPolicy, ServiceState
from mecfed.chain.journal import REPLACED
from mecfed.errors import DeadlineExceeded
from mecfed.model import AppSpec, Requirements, ServiceNeed
from mecfed.storage import Database
from mef.transport.chain import auction as auction_module
from mef.transport.chain import codec
from mef.transport.chain.transport import ChainTransport, client_options
from mef.transport.peer_client import PeerClient
from tests.polling import until

pytestmark = pytest.mark.asyncio
APP = AppSpec("echo:1")
PRICE = 100


@dataclass
class Net:
    anvil: Anvil
    admin: FederationContract  # account 0: mines, inspects
    consumer: LocalAccount
    provider: LocalAccount

    async def rpc(self, method: str, *params: Any) -> Any:
        reply = await self.admin.client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in reply, reply
        return reply.get("result")

    async def escrowed(self) -> int:
        """What the contract holds (escrows, bonds, unpaid credits)."""
        return await self.admin.client.balance(self.admin.address)


@pytest_asyncio.fixture
async def net() -> AsyncIterator[Net]:
    async with Anvil(host="127.0.0.1", accounts=4) as anvil:
        accounts = anvil.dev_accounts
        admin_client = await ChainClient.connect(anvil.ws_url, accounts[0])
        try:
            admin = await FederationContract.deploy(
                admin_client, MembershipPolicy.ALLOWLIST, [a.address for a in accounts[1:3]]
            )
            for i, account in enumerate(accounts[1:3]):
                async with await ChainClient.connect(anvil.ws_url, account) as c:
                    await FederationContract(c, admin.address).ensure_member(f"mec-{i}")
            yield Net(anvil, admin, accounts[1], accounts[2])
        finally:
            await admin_client.close()


async def _transport(net: Net, db: Database | None, **overrides: Any) -> ChainTransport:
    """The consumer's transport as connect_chain_transport builds it."""
    options = {**client_options({"contract": net.admin.address}, db), **overrides}
    client = await ChainClient.connect(net.anvil.ws_url, net.consumer, **options)
    return ChainTransport(
        "consumer",
        client,
        net.admin.address,
        net.consumer,
        PeerClient(None),  # type: ignore[arg-type]  # no hand-off in these tests
        block_period=1,
        database=db,
    )


def _need(federation_id: str, k: int = 1, timeout_ms: int = 4000) -> ServiceNeed:
    return ServiceNeed(federation_id, "consumer", APP, Requirements(PRICE, k, timeout_ms))


async def _solicit(transport: ChainTransport, need: ServiceNeed) -> list[Any]:
    return [offer async for offer in transport.solicit_offers(need)]


async def _until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:
    await until(check, timeout)


async def _our_announcements(net: Net) -> list[Any]:
    return await net.admin.past_events(
        ["ServiceAnnounced"], consumer=net.consumer.address, from_block=0
    )


async def test_maybe_sent_announcement_mined_after_a_restart_is_cancelled(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The announcement's receipt wait gives up (the workflow with it); the
    MEF restarts; the announcement is mined meanwhile. The start's
    reconcile, although the federation is live (a later attempt won),
    cancels that service by its kept transaction hash: the escrow is back."""
    monkeypatch.setattr(auction_module, "ANNOUNCE_TIMEOUT_S", 0.5)
    path = tmp_path / "mef.db"
    db = Database(path)
    transport = await _transport(net, db)
    try:
        await net.rpc("evm_setAutomine", False)
        with pytest.raises(NotMined):
            await _solicit(transport, _need("z-1"))
        (tx_hash,) = transport.maybe_sent.pending()
    finally:
        await transport.close()
        db.close()
    await net.rpc("evm_setAutomine", True)
    await net.rpc("evm_mine")  # mined while the MEF is down
    (announced,) = await _our_announcements(net)
    service_id = "0x" + bytes(announced.args["id"]).hex()
    assert await net.escrowed() == PRICE, "the zombie escrows max_price"
    db = Database(path)
    transport = await _transport(net, db)
    try:
        assert tx_hash in transport.maybe_sent.pending(), "kept durably"
        await transport.reconcile({"z-1"})
        await _until(lambda: not transport.maybe_sent.pending())
        assert transport.maybe_sent.cancelled == [service_id]
        assert await net.admin.state(service_id) is ServiceState.CANCELLED
        assert await net.escrowed() == 0, "escrow refunded and withdrawn"
    finally:
        await transport.close()
        db.close()


async def test_maybe_sent_announcement_mined_while_running_is_cancelled(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auction_module, "ANNOUNCE_TIMEOUT_S", 0.5)
    transport = await _transport(net, None)
    try:
        await net.rpc("evm_setAutomine", False)
        with pytest.raises(DeadlineExceeded):  # NotMined is one: the workflow gives up
            await _solicit(transport, _need("z-2"))
        await net.rpc("evm_setAutomine", True)
        await net.rpc("evm_mine")
        await _until(lambda: bool(transport.maybe_sent.cancelled))
        (service_id,) = transport.maybe_sent.cancelled
        assert await net.admin.state(service_id) is ServiceState.CANCELLED
        assert await net.escrowed() == 0
    finally:
        await net.rpc("evm_setAutomine", True)
        await transport.close()


async def test_announcement_whose_wait_the_workflow_cancelled_is_watched(net: Net) -> None:
    """The workflow's own timer cancels solicit_offers while the
    announcement's receipt is awaited: mined later, it is cancelled."""
    transport = await _transport(net, None)
    try:
        await net.rpc("evm_setAutomine", False)
        solicit = asyncio.create_task(_solicit(transport, _need("c-1")))
        await _until(lambda: bool(transport.client.pending_transactions()))
        solicit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await solicit
        assert list(transport.maybe_sent.pending().values()) == ["c-1"]
        await net.rpc("evm_setAutomine", True)
        await net.rpc("evm_mine")
        await _until(lambda: bool(transport.maybe_sent.cancelled))
        (service_id,) = transport.maybe_sent.cancelled
        assert await net.admin.state(service_id) is ServiceState.CANCELLED
        assert await net.escrowed() == 0
    finally:
        await net.rpc("evm_setAutomine", True)
        await transport.close()


async def test_stale_announcement_in_a_nonce_gap_is_replaced_and_never_escrows(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node loses the announcement (a nonce gap that a later transaction
    queues behind) and it is past its valid_for: the gap is filled with a
    no-op, the announcement never executes, nothing is escrowed, and the
    queued transaction goes through."""
    monkeypatch.setattr(auction_module, "ANNOUNCE_TIMEOUT_S", 0.3)
    transport = await _transport(net, None, valid_for={"announce": 0.5})
    client = transport.client
    try:
        await net.rpc("evm_setAutomine", False)
        with pytest.raises(NotMined):
            await _solicit(transport, _need("g-1"))
        (tx_hash,) = transport.maybe_sent.pending()
        await net.rpc("anvil_dropTransaction", tx_hash)
        await asyncio.sleep(0.6)  # past its valid_until
        queued = asyncio.create_task(client.transfer(net.provider.address, 1))
        await _until(lambda: len(client.pending_transactions()) == 2)
        await client.reconciler.reconcile()
        while not queued.done():  # the no-op, then the queued transfer
            await net.rpc("evm_mine")
            await asyncio.wait({queued}, timeout=0.2)
        queued.result()
        await _until(lambda: not transport.maybe_sent.pending())
        entry = client.journal.get(tx_hash)
        assert entry is not None and entry.state == REPLACED
        assert await _our_announcements(net) == []
        assert await net.escrowed() == 0
        assert transport.maybe_sent.cancelled == []
    finally:
        await net.rpc("evm_setAutomine", True)
        await transport.close()


async def test_health_reports_a_wedge_another_contract_and_a_reset_chain(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auction_module, "ANNOUNCE_TIMEOUT_S", 0.3)
    transport = await _transport(net, None, wedged_after=1.0)
    try:
        assert transport.health() is None
        await net.rpc("evm_setAutomine", False)
        with pytest.raises(NotMined):
            await _solicit(transport, _need("h-1"))
        await _until(lambda: transport.health() is not None)
        reason = transport.health() or ""
        assert "wedged" in reason and "announce h-1" in reason, reason
        await net.rpc("evm_setAutomine", True)
        await net.rpc("evm_mine")
        await transport.client.reconciler.reconcile()
        await _until(lambda: transport.health() is None)
        await _until(lambda: bool(transport.maybe_sent.cancelled))  # and the zombie ended
        # Another contract at the Federation's address: refused.
        address = net.admin.address
        code = await net.admin.client.w3.eth.get_code(address)
        await net.rpc("anvil_setCode", address, "0x600160005260206000f3")
        assert await transport.client.check_identity() is not None
        assert "code at" in (transport.health() or "")
        await net.rpc("anvil_setCode", address, code.to_0x_hex())
        assert await transport.client.check_identity() is None
        assert transport.health() is None
        # A reset chain: refused.
        await net.rpc("anvil_reset")
        assert await transport.client.check_identity() is not None
        assert "reset" in (transport.health() or ""), transport.health()
    finally:
        await transport.close()


async def test_a_reorged_bid_is_not_counted(net: Net) -> None:
    """A bid (k = 2, so the auction stays open) is rolled back with its
    block: the consumer forgets it, and the auction ends with no offer."""
    transport = await _transport(net, None)
    bidder_client = await ChainClient.connect(net.anvil.ws_url, net.provider)
    try:
        solicit = asyncio.create_task(_solicit(transport, _need("r-1", k=2, timeout_ms=30_000)))
        await _until(lambda: "r-1" in transport.auction.auctions)
        auction = transport.auction.auctions["r-1"]
        bidder = FederationContract(bidder_client, net.admin.address)
        consumer = await bidder.member(net.consumer.address)
        assert consumer is not None
        sealed = codec.seal_contact(consumer.pubkey, codec.MffContact("127.0.0.1:1", "mec-1"))
        await bidder.bid(auction.service_id, 40, sealed)
        await bidder_client.close()  # nobody sends the bid again after the rollback
        await _until(lambda: net.provider.address in auction.bids)
        await net.rpc("anvil_rollback", 1)
        await net.rpc("evm_mine")  # another block at the bid's height
        await _until(lambda: not auction.bids)
        assert (await net.admin.service(auction.service_id)).bid_count == 0
        await net.rpc("evm_increaseTime", 31)
        await net.rpc("evm_mine")  # past the bidding deadline
        with pytest.raises(DeadlineExceeded, match="no offer"):
            await asyncio.wait_for(solicit, 20)
    finally:
        await bidder_client.close()
        await transport.close()


async def test_health_reports_a_provider_stream_that_ended(net: Net) -> None:
    """A contract event stream of the provider side that ends (here: closed
    under it) would silently stop bids, deployments or releases: health()
    says so."""

    class Declining:
        async def quote(self, need: ServiceNeed, *, binding: bool = False) -> Any:
            raise DeadlineExceeded("not in this test")

        def withdraw(self, offer_ref: str) -> None:
            pass

    transport = await _transport(net, None)
    try:
        await transport.start(Declining(), None, "127.0.0.1:1")  # type: ignore[arg-type]
        assert transport.health() is None
        stream, _ = transport.bidder._streams[1]
        await stream.close()
        await _until(lambda: transport.health() is not None)
        assert "stopped following 1 of its 6" in (transport.health() or "")
    finally:
        await transport.close()

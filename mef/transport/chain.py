"""The chain Mff transport: the Federation smart contract as the market.

Consumer: announce (escrowing max_price) -> bids arrive as BidPlaced logs,
each carrying the bidder's Mff endpoint sealed to us -> the k-th bid closes
the auction on-chain in the same block -> we hand the winner our order
directly over Mff gRPC, signed with our chain key, and it answers with a
deployment notice signed with its chain key (verified against the winner's
on-chain address), so we connect before any further block. The on-chain
record stays complete: our endpoint (sealed to the winner) and the winner's
confirmation (sealed to us, which also releases the escrowed price) follow
in the next block, off the critical path. If the winner cannot be reached
directly, the same on-chain messages carry the deployment (slow path).

Provider: every ServiceAnnounced log is priced by the workflow and answered
with a bid; orders are admitted by ChainGate (signature + auction result)
or, on the slow path, by the ConsumerEndpoint log.

Identities on the chain are member names (the MEC system ids they
registered with) for display and chain addresses for authorisation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import itertools
import json
import logging
import math
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from opentelemetry.sdk.trace import TracerProvider

from mecfed import security, tracing
from mecfed.chain import federation as fedc
from mecfed.chain.client import ChainClient
from mecfed.chain.sealing import (
    decode_endpoint,
    encode_endpoint,
    open_sealed,
    recover_signer,
    seal,
    sign_message,
    verify_signer,
)
from mecfed.config import TlsPaths
from mecfed.errors import (
    DeadlineExceeded,
    DeploymentFailed,
    FailedPrecondition,
    InvalidArgument,
    MecfedError,
    PermissionDenied,
    Unavailable,
    from_rpc_error,
)
from mecfed.tracing import set_attributes, step_span
from mecfed.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from mef.domain import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    Offer,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
)
from mef.transport.base import ProviderHandler

log = logging.getLogger(__name__)

CONFIRM_WINDOW_S = 300
CLOSE_TIMEOUT_S = 3.0
# Block timestamps are whole seconds and a loaded node lags: below this a
# provider that answers at once can still miss the deadline.
MIN_BIDDING_WINDOW_S = 4
# Announcements mined in one block reach a provider within milliseconds of
# each other; it gathers them for this long and bids in its own order.
ANNOUNCEMENT_BURST_S = 0.05
# Direct hand-off failures after which the on-chain path may still succeed:
# the winner is unreachable, or it is already deploying from the chain.
_RETRY_ON_CHAIN = (Unavailable, DeadlineExceeded, FailedPrecondition)


def _canonical(kind: str, body: dict[str, Any]) -> bytes:
    return (
        f"mecfed/v1 {kind}\n".encode()
        + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )


def _endpoint_body(ep: OverlayEndpoint) -> dict[str, Any]:
    # Compact: sealed endpoints travel in calldata and the contract caps them
    # at 256 bytes, so app addresses go as host offsets within the subnet.
    net = ipaddress.IPv4Network(ep.subnet)
    offsets = [int(ipaddress.IPv4Address(ip)) - int(net.network_address) for ip in ep.app_ips]
    body: dict[str, Any] = {"u": ep.underlay_ip, "s": ep.subnet, "a": offsets}
    if ep.vni:
        body["v"], body["p"] = ep.vni, ep.udp_port
    return body


def _endpoint_from(body: dict[str, Any]) -> OverlayEndpoint:
    try:
        net = ipaddress.IPv4Network(body["s"])
        ips = tuple(str(net.network_address + int(o)) for o in body["a"])
        if any(ipaddress.IPv4Address(ip) not in net for ip in ips):
            raise ValueError("app address outside the subnet")
        return OverlayEndpoint(body["u"], body["s"], ips, body.get("v", 0), body.get("p", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"malformed endpoint details: {exc}") from None


def pack_candidates(candidates: tuple[TunnelCandidate, ...]) -> str:
    """5 bytes a candidate (24-bit VNI, 16-bit port), base64: compact calldata."""
    raw = b"".join(c.vni.to_bytes(3, "big") + c.udp_port.to_bytes(2, "big") for c in candidates)
    return base64.b64encode(raw).decode()


def unpack_candidates(text: str) -> tuple[TunnelCandidate, ...]:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidArgument("malformed tunnel candidates") from None
    if len(raw) % 5 or not raw:
        raise InvalidArgument("malformed tunnel candidates")
    return tuple(
        TunnelCandidate(
            int.from_bytes(raw[i : i + 3], "big"), int.from_bytes(raw[i + 3 : i + 5], "big")
        )
        for i in range(0, len(raw), 5)
    )


def order_digest(
    service_id: str,
    federation_id: str,
    endpoint: OverlayEndpoint,
    candidates: tuple[TunnelCandidate, ...],
) -> bytes:
    """What the consumer signs when it hands its order to the winner."""
    return _canonical(
        "order",
        {
            "service": service_id.lower(),
            "federation": federation_id,
            "endpoint": _endpoint_body(endpoint),
            "candidates": [[c.vni, c.udp_port] for c in candidates],
        },
    )


def notice_digest(service_id: str, endpoint: OverlayEndpoint) -> bytes:
    """What the winner signs when it reports its deployment directly."""
    return _canonical(
        "deployment-notice", {"service": service_id.lower(), "endpoint": _endpoint_body(endpoint)}
    )


def encode_requirements(need: ServiceNeed, consumer_name: str, traceparent: str = "") -> bytes:
    app = need.app
    body = {
        "f": need.federation_id,
        "c": consumer_name,
        "i": app.image,
        "r": app.replicas,
        "cpu": app.cpu_millicores,
        "mem": app.memory_mib,
        "e": app.echo_port,
    }
    if traceparent:
        body["tp"] = traceparent
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def decode_requirements(raw: bytes) -> tuple[str, str, AppSpec, str]:
    """(federation id, consumer name, app, traceparent)."""
    try:
        body = json.loads(raw)
        app = AppSpec(
            image=body["i"],
            replicas=int(body["r"]),
            cpu_millicores=int(body.get("cpu", 0)),
            memory_mib=int(body.get("mem", 0)),
            echo_port=int(body.get("e", 7)),
        ).validate()
        return str(body["f"]), str(body.get("c", "")), app, str(body.get("tp", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"unreadable service requirements: {exc}") from None


@dataclass
class _Auction:
    """Consumer-side view of one announced service."""

    service_id: str
    deadline: int
    block: int
    winner: str = ""
    # Where the winner's Mff server is (address, TLS name), once known.
    mff: tuple[str, str] | None = None
    # The latest bid of every provider (a lowered re-bid replaces the first).
    bids: dict[str, Offer] = field(default_factory=dict)


@dataclass
class _Won:
    """Provider-side record of a service we bid on."""

    service_id: str
    federation_id: str
    consumer: str  # chain address
    offer_ref: str
    app: AppSpec
    traceparent: str = ""
    deploying: bool = False


class ChainTransport:
    name = "chain"
    # The auction ends on-chain (k bids or the first block past the bidding
    # deadline) and solicit_offers ends with it; the workflow's own timer is
    # only a safety net, so give it room for block production.
    offer_grace = 60.0

    def __init__(
        self,
        system_id: str,
        client: ChainClient,
        contract_address: str,
        account: LocalAccount,
        tls: TlsPaths,
        confirm_window: int = CONFIRM_WINDOW_S,
        block_period: int | None = None,
        traces: TracerProvider | None = None,
    ) -> None:
        self.system_id = system_id
        self.client = client
        self.account = account
        self.address = account.address
        self.contract = client.contract(contract_address, fedc.abi())
        self._abi = fedc.abi()
        self._contract_address = to_checksum_address(contract_address)
        self._mff_endpoint = ""  # known once the server listens (start)
        self._tls = tls
        self._confirm_window = confirm_window
        self._provider: ProviderHandler | None = None
        self._members: dict[str, tuple[str, bytes]] = {}  # address -> (name, pubkey)
        self._auctions: dict[str, _Auction] = {}  # federation id -> auction
        self._won: dict[str, _Won] = {}  # service id -> what we bid on
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._period: int | None = block_period
        self.tracer = tracing.tracer(traces, "mecfed.chain")
        self._interceptors = tracing.client_interceptors(traces)
        self._member_ready = asyncio.Event()
        self._withdraw_lock = asyncio.Lock()
        self.gate = ChainGate(self)

    # --- plumbing ----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: %s", what, exc)
                return None

        task = asyncio.create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _topic(self, event: str) -> str:
        from mecfed.chain.client import event_topic

        return event_topic(self._abi, event)

    def _stream(self, events: list[str], *filters: str | None, from_block: int | None = None):
        topics: list[Any] = [[self._topic(e) for e in events], *filters]
        return self.client.subscribe_logs(self._contract_address, topics, from_block, abi=self._abi)

    async def _member(self, address: str) -> tuple[str, bytes]:
        address = to_checksum_address(address)
        known = self._members.get(address)
        if known is None:
            fns = self.contract.functions
            name = await self.client.call(fns.memberName(address))
            key = await self.client.call(fns.memberKey(address))
            if not key:
                raise PermissionDenied(f"{address} is not a federation member")
            known = self._members[address] = (name, bytes(key))
        return known

    async def start(self, provider: ProviderHandler, mff_endpoint: str) -> None:
        self._provider = provider
        self._mff_endpoint = mff_endpoint
        # Listen from the current block on *before* registering: an
        # announcement in the block that admits us must not slip past.
        head = await self.client.block_number()
        me = _address_topic(self.address)
        streams = {
            "announcements": self._stream(["ServiceAnnounced"], from_block=head),
            "endpoints": self._stream(["ConsumerEndpoint"], None, None, me, from_block=head),
            "terminations": self._stream(["ServiceTerminated"], from_block=head),
            "awards": self._stream(["ServiceAwarded"], from_block=head),
        }
        self._spawn(self._serve_announcements(streams["announcements"]), "announcements")
        self._spawn(self._serve(streams["endpoints"], self._on_consumer_endpoint), "endpoints")
        self._spawn(self._serve(streams["terminations"], self._on_terminated), "terminations")
        self._spawn(self._serve(streams["awards"], self._on_awarded), "awards")
        for stream in streams.values():
            await stream.wait_live(timeout=30)
        await fedc.ensure_member(self.client, self._contract_address, self.account, self.system_id)
        self._member_ready.set()

    async def _serve(self, stream: Any, handler: Any) -> None:
        try:
            async for event in stream:
                self._spawn(handler(event), f"{event['event']} {event['args'].get('id', b'')!r}")
        finally:
            await stream.close()

    async def _serve_announcements(self, stream: Any) -> None:
        """Bids on a burst of announcements in an order of this provider's
        own (a hash of its address and the service id), not in block order.

        Every bid holds capacity and raises the load factor of the next
        quote. If all providers quoted a burst in block order, auction i
        would find every provider at the same load and the cheapest tariff
        would win every auction; in provider-specific orders the load a
        provider quotes at differs per auction, so the wins spread."""
        events: asyncio.Queue[Any] = asyncio.Queue()

        async def read() -> None:
            async for event in stream:
                events.put_nowait(event)

        reader = asyncio.create_task(read(), name="announcements reader")
        try:
            while True:
                first = asyncio.ensure_future(events.get())
                await asyncio.wait({first, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    reader.result()  # the stream failed: re-raise; or it ended
                    return
                await asyncio.sleep(ANNOUNCEMENT_BURST_S)
                burst = [first.result()]
                while not events.empty():
                    burst.append(events.get_nowait())
                for event in sorted(burst, key=self._bid_order):
                    self._spawn(self._on_announced(event), f"bid {event['args']['id']!r}")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.close()

    def _bid_order(self, event: Any) -> bytes:
        return hashlib.sha256(self.address.encode() + bytes(event["args"]["id"])).digest()

    async def close(self) -> None:
        """Bounded: a stream stuck reconnecting must not hold up shutdown."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in stuck:
                log.warning("task %s did not stop within %s s", task.get_name(), CLOSE_TIMEOUT_S)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        try:
            await asyncio.wait_for(self.client.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("chain client did not close within %s s", CLOSE_TIMEOUT_S)

    # --- consumer side -----------------------------------------------------

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        # Bids need blocks: a window shorter than a few block periods would
        # close before any provider could answer the announcement.
        window = max(
            math.ceil(need.requirements.offer_timeout_ms / 1000),
            3 * await self._block_period(),
            MIN_BIDDING_WINDOW_S,
        )
        with step_span(self.tracer, "announce", bidding_window_s=window) as span:
            # The traceparent rides in the announcement: providers' spans
            # join this trace although no gRPC call carries it to them.
            requirements = encode_requirements(need, self.system_id, tracing.inject_traceparent())
            receipt = await self.client.transact(
                self.contract.functions.announce(
                    need.requirements.max_price,
                    need.requirements.offers_to_wait_for,
                    window,
                    self._confirm_window,
                    requirements,
                ),
                value=need.requirements.max_price,
            )
            announced = self._decode(receipt.logs, "ServiceAnnounced")
            service_id = "0x" + bytes(announced["args"]["id"]).hex()
            _tx_attributes(span, receipt, service_id=service_id)
        auction = _Auction(
            service_id,
            int(announced["args"]["biddingDeadline"]),
            receipt.block_number,
        )
        self._auctions[need.federation_id] = auction
        stream = self._stream(
            ["BidPlaced", "ServiceAwarded"], service_id, from_block=receipt.block_number
        )
        heads = self.client.new_heads()
        events: asyncio.Queue[Any] = asyncio.Queue()

        async def pump_logs() -> None:
            async for event in stream:
                await events.put(event)

        async def pump_heads() -> None:
            # Bidding ends with the first block at or past the deadline.
            async for head in heads:
                if _int(head["timestamp"]) >= auction.deadline:
                    await events.put(None)
                    return

        pumps = [asyncio.create_task(pump_logs()), asyncio.create_task(pump_heads())]
        seen: set[str] = set()
        try:
            while True:
                event = await events.get()
                if event is None:
                    return
                args = event["args"]
                if event["event"] == "ServiceAwarded":
                    auction.winner = to_checksum_address(args["provider"])
                    return
                provider = to_checksum_address(args["provider"])
                try:
                    offer = await self._offer_from_bid(auction, provider, args)
                except MecfedError as exc:
                    log.warning("%s: unusable bid from %s: %s", service_id, provider, exc)
                    continue
                auction.bids[provider] = offer
                if provider in seen:
                    continue  # a lowered re-bid: award() reads the contract's choice
                seen.add(provider)
                yield offer
        finally:
            for pump in pumps:
                pump.cancel()
            await stream.close()
            await heads.close()

    async def _offer_from_bid(self, auction: _Auction, provider: str, args: Any) -> Offer:
        name, _ = await self._member(provider)
        mff = decode_endpoint(open_sealed(self.account, bytes(args["sealedEndpoint"])))
        ref = json.dumps(
            {
                "service": auction.service_id,
                "provider": provider,
                "mff": mff["mff"],
                "name": mff.get("name", name),
            }
        )
        return Offer(
            provider_id=name,
            price=int(args["price"]),
            ref=ref,
            valid_until=auction.deadline + self._confirm_window,
        )

    def _decode(self, logs: list[dict[str, Any]], event: str) -> Any:
        from mecfed.chain.abi import EventDecoder
        from mecfed.chain.subscriptions import normalize_log

        decoder = EventDecoder(self._abi)
        topic = HexBytes(self._topic(event))
        for raw in logs:
            entry = normalize_log(raw)
            if entry["topics"] and entry["topics"][0] == topic:
                return decoder(entry)
        raise FailedPrecondition(f"transaction emitted no {event}")

    async def award(self, need: ServiceNeed, offer: Offer) -> Offer:
        """The contract, not our reading of the logs, decides the winner:
        returns the winning offer (normally ``offer``)."""
        auction = self._auctions.get(need.federation_id)
        if auction is None:
            raise FailedPrecondition(f"{need.federation_id} was never announced")
        fns = self.contract.functions
        if await self.client.call(fns.stateOf(auction.service_id)) != fedc.AWARDED:
            # Fewer than k bids: the auction closes by itself once a block at
            # or past the deadline exists; no transaction is needed for that.
            await self._wait_chain_time(auction.deadline)
        view = await self.client.call(fns.serviceOf(auction.service_id))
        winner = to_checksum_address(view[7])
        auction.winner = winner
        if winner == json.loads(offer.ref)["provider"] and offer.price == int(view[8]):
            return offer
        won = auction.bids.get(winner)
        if won is None or won.price != int(view[8]):
            won = await self._bid_from_logs(auction, winner)
        log.info(
            "%s: the contract awarded %s at %s", auction.service_id, won.provider_id, won.price
        )
        return won

    async def _bid_from_logs(self, auction: _Auction, provider: str) -> Offer:
        """The provider's latest bid, read back from the chain."""
        logs = await self.client.request(
            "eth_getLogs",
            [
                {
                    "address": self._contract_address,
                    "fromBlock": hex(auction.block),
                    "toBlock": "latest",
                    "topics": [
                        self._topic("BidPlaced"),
                        auction.service_id,
                        _address_topic(provider),
                    ],
                }
            ],
        )
        if not logs:
            raise FailedPrecondition(f"no bid of the winner {provider} on {auction.service_id}")
        event = self._decode(logs[-1:], "BidPlaced")
        return await self._offer_from_bid(auction, provider, event["args"])

    async def _block_period(self) -> int:
        """The chain's block period in whole seconds: configured, else the
        median of the last few block intervals (at least 1)."""
        if self._period is not None:
            return self._period
        latest = await self.client.request("eth_getBlockByNumber", ["latest", False])
        number, stamps = _int(latest["number"]), [_int(latest["timestamp"])]
        for n in range(number - 1, max(number - 6, -1), -1):
            block = await self.client.request("eth_getBlockByNumber", [hex(n), False])
            stamps.append(_int(block["timestamp"]))
        intervals = sorted(a - b for a, b in itertools.pairwise(stamps))
        period = max(1, intervals[len(intervals) // 2]) if intervals else 1
        if len(intervals) >= 3:
            self._period = period  # enough history to trust it
        return period

    async def _wait_chain_time(self, timestamp: int) -> None:
        heads = self.client.new_heads()
        try:
            latest = await self.client.request("eth_getBlockByNumber", ["latest", False])
            if _int(latest["timestamp"]) >= timestamp:
                return
            async for head in heads:
                if _int(head["timestamp"]) >= timestamp:
                    return
        finally:
            await heads.close()

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        ref = json.loads(offer.ref)
        service_id, provider = ref["service"], ref["provider"]
        _, provider_key = await self._member(provider)
        sealed = seal(
            provider_key,
            encode_endpoint(
                {
                    "f": order.federation_id,
                    "e": _endpoint_body(order.consumer_endpoint),
                    "c": pack_candidates(order.candidates),
                }
            ),
        )
        slow = asyncio.create_task(self._await_confirmation(service_id, provider))
        # The on-chain record of our endpoint; also the winner's slow path.
        self._spawn(
            self.client.transact(self.contract.functions.sendConsumerEndpoint(service_id, sealed)),
            f"sendConsumerEndpoint {service_id}",
        )
        auction = self._auctions.get(order.federation_id)
        if auction is not None:
            auction.mff = (ref["mff"], ref["name"])
        fast = asyncio.create_task(self._deploy_direct(ref, order, timeout))
        try:
            done, _ = await asyncio.wait(
                {fast, slow}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if fast in done and fast.exception() is None:
                return fast.result()
            if fast in done and not isinstance(fast.exception(), _RETRY_ON_CHAIN):
                raise fast.exception()  # the winner tried and failed: no point waiting
            if fast in done:
                log.warning(
                    "%s: direct hand-off failed (%s); waiting for the chain",
                    service_id,
                    fast.exception(),
                )
                done, _ = await asyncio.wait({slow}, timeout=timeout)
            if slow in done:
                return slow.result()
            raise DeadlineExceeded(f"{offer.provider_id} did not deploy within {timeout:.0f} s")
        finally:
            for task in (fast, slow):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if fast.done() and not fast.cancelled() and fast.exception() is None:
                # Keep the chain honest: warn if the confirmation never lands.
                self._spawn(
                    asyncio.wait_for(
                        self._await_confirmation(service_id, provider), self._confirm_window
                    ),
                    f"on-chain confirmation of {service_id}",
                )

    def _peer_stub(self, mff: str, name: str) -> peer_pb2_grpc.FederationPeerStub:
        channel = self._channels.get(mff)
        if channel is None:
            channel = self._channels[mff] = security.secure_channel(
                mff, self._tls, name, interceptors=self._interceptors
            )
        return peer_pb2_grpc.FederationPeerStub(channel)

    async def _deploy_direct(
        self, ref: dict[str, Any], order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        service_id = ref["service"]
        stub = self._peer_stub(ref["mff"], ref["name"])
        request = peer_pb2.InstallAppRequest(
            offer_id=service_id,
            federation_id=order.federation_id,
            consumer_endpoint=order.consumer_endpoint.to_proto(),
            candidates=[c.to_proto() for c in order.candidates],
            consumer_signature=sign_message(
                self.account,
                order_digest(
                    service_id, order.federation_id, order.consumer_endpoint, order.candidates
                ),
            ),
        )
        try:
            with step_span(self.tracer, "handoff", provider=ref["name"], service_id=service_id):
                installed = await stub.InstallApp(request, timeout=timeout)
            details = installed
            # Read to the end (the provider closes it after a terminal state).
            async for details in stub.WatchAppInstance(  # noqa: B007
                peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id),
                timeout=timeout,
            ):
                pass
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"direct hand-off to {ref['name']}") from None
        if details.state != common_pb2.INSTANCE_STATE_READY:
            raise DeploymentFailed(f"{ref['name']} could not deploy: {details.error.detail}")
        endpoint = OverlayEndpoint.from_proto(details.provider_endpoint)
        verify_signer(
            notice_digest(service_id, endpoint), details.deployment_notice, ref["provider"]
        )
        return DeploymentResult(details.app_instance_id, endpoint)

    async def _await_confirmation(self, service_id: str, provider: str) -> DeploymentResult:
        stream = self._stream(
            ["DeploymentConfirmed"],
            service_id,
            None,
            _address_topic(provider),
            from_block=self._auction_block(service_id),
        )
        try:
            async for event in stream:
                body = decode_endpoint(
                    open_sealed(self.account, bytes(event["args"]["sealedEndpoint"]))
                )
                return DeploymentResult(service_id, _endpoint_from(body["e"]))
        finally:
            await stream.close()
        raise DeadlineExceeded(f"no confirmation of {service_id}")

    def _auction_block(self, service_id: str) -> int | None:
        for auction in self._auctions.values():
            if auction.service_id == service_id:
                return auction.block
        return None

    async def terminate(self, federation_id: str, provider_id: str, app_instance_id: str) -> None:
        """Ends the service on-chain from whatever state it reached, so no
        escrow stays locked: Deployed -> terminate, Open -> cancel, Awarded
        to a winner that never confirmed -> reopen + cancel once its confirm
        window is over (in the background)."""
        auction = self._auctions.get(federation_id)
        if auction is None:
            return  # never announced: nothing on the chain
        # Ask the provider directly too, so it need not wait for a block.
        if app_instance_id and auction.mff is not None:
            with contextlib.suppress(MecfedError, grpc.RpcError):
                await self._peer_stub(*auction.mff).RemoveApp(
                    peer_pb2.AppInstanceRequest(app_instance_id=app_instance_id), timeout=30
                )
        fns = self.contract.functions
        state = await self.client.call(fns.stateOf(auction.service_id))
        if state == fedc.AWARDED and app_instance_id and auction.winner:
            # A direct hand-off succeeded; its on-chain confirmation is due.
            with contextlib.suppress(MecfedError, TimeoutError):
                await asyncio.wait_for(
                    self._await_confirmation(auction.service_id, auction.winner),
                    3 * await self._block_period() + 5,
                )
            state = await self.client.call(fns.stateOf(auction.service_id))
        if state == fedc.DEPLOYED:
            await self.client.transact(fns.terminate(auction.service_id))
        elif state == fedc.OPEN:
            await self.client.transact(fns.cancel(auction.service_id))
        elif state == fedc.AWARDED:
            self._spawn(self._recover_escrow(auction.service_id), f"escrow {auction.service_id}")
            return
        self._spawn(self._withdraw(), "withdraw")

    async def _recover_escrow(self, service_id: str) -> None:
        fns = self.contract.functions
        view = await self.client.call(fns.serviceOf(service_id))
        await self._wait_chain_time(int(view[6]) + 1)  # confirm deadline passed
        await self.client.transact(fns.reopen(service_id, 1))
        await self.client.transact(fns.cancel(service_id))
        await self._withdraw()

    async def _withdraw(self) -> None:
        # One at a time: withdraw() pays out every credit, so a second one
        # sent before the first is mined would revert and waste its gas.
        async with self._withdraw_lock:
            fns = self.contract.functions
            if await self.client.call(fns.credits(self.address)):
                await self.client.transact(fns.withdraw())

    # --- provider side -----------------------------------------------------

    async def _on_announced(self, event: Any) -> None:
        args = event["args"]
        consumer = to_checksum_address(args["consumer"])
        if consumer == self.address or self._provider is None:
            return
        service_id = "0x" + bytes(args["id"]).hex()
        if service_id in self._won:
            return  # seen already (e.g. replayed after a reconnect): one bid each
        federation_id, _, app, traceparent = decode_requirements(bytes(args["requirements"]))
        need = ServiceNeed(federation_id, consumer, app, Requirements(int(args["maxPrice"])))
        with step_span(
            self.tracer,
            "provider.bid",
            context=tracing.extract_context(traceparent),
            federation_id=federation_id,
            service_id=service_id,
            provider=self.system_id,
            announced_in_block=event["blockNumber"],
        ) as span:
            try:
                offer = await self._provider.quote(need, binding=True)
            except MecfedError as exc:
                log.debug("no bid on %s: %s", service_id, exc)
                set_attributes(span, declined=str(exc))
                return
            _, consumer_key = await self._member(consumer)
            await self._member_ready.wait()  # bids from non-members revert
            sealed = seal(
                consumer_key, encode_endpoint({"mff": self._mff_endpoint, "name": self.system_id})
            )
            self._won[service_id] = _Won(
                service_id, federation_id, consumer, offer.ref, app, traceparent
            )
            try:
                receipt = await self.client.transact(
                    self.contract.functions.bid(service_id, offer.price, sealed)
                )
            except BaseException as exc:
                # No bid on chain, so no award will ever release the capacity
                # the quote holds (its validity runs past the confirm window).
                self._won.pop(service_id, None)
                self._provider.withdraw(offer.ref)
                if fedc.auction_closed(exc):
                    log.debug("%s closed before our bid: %s", service_id, exc)
                    set_attributes(span, declined=str(exc))
                    return
                raise
            _tx_attributes(span, receipt, price=offer.price)

    async def _on_consumer_endpoint(self, event: Any) -> None:
        """Slow path: the consumer's order arrives on-chain only."""
        service_id = "0x" + bytes(event["args"]["id"]).hex()
        won = self._won.get(service_id)
        if won is None or won.deploying or self._provider is None:
            return
        body = decode_endpoint(open_sealed(self.account, bytes(event["args"]["sealedEndpoint"])))
        endpoint = _endpoint_from(body["e"])
        candidates = unpack_candidates(body["c"])
        won.deploying = True
        with step_span(
            self.tracer,
            "provider.deploy_from_chain",
            context=tracing.extract_context(won.traceparent),
            service_id=service_id,
        ):
            app = await self._provider.accept(won.offer_ref, won.consumer, won.federation_id)
            result = await self._provider.deploy(
                DeploymentOrder(won.federation_id, won.consumer, app, endpoint, candidates)
            )
            await self.confirm(service_id, result.provider_endpoint)

    async def confirm(self, service_id: str, endpoint: OverlayEndpoint) -> None:
        won = self._won[service_id]
        _, consumer_key = await self._member(won.consumer)
        sealed = seal(consumer_key, encode_endpoint({"e": _endpoint_body(endpoint)}))
        with step_span(self.tracer, "confirmation", service_id=service_id) as span:
            receipt = await self.client.transact(
                self.contract.functions.confirmDeployment(service_id, sealed)
            )
            _tx_attributes(span, receipt)
        self._spawn(self._withdraw(), "withdraw")  # the price is ours now

    async def _on_awarded(self, event: Any) -> None:
        """A bid of ours that lost frees the capacity it held."""
        service_id = "0x" + bytes(event["args"]["id"]).hex()
        won = self._won.get(service_id)
        if won is None or self._provider is None:
            return
        if to_checksum_address(event["args"]["provider"]) != self.address:
            self._provider.withdraw(won.offer_ref)
            self._won.pop(service_id, None)

    async def _on_terminated(self, event: Any) -> None:
        service_id = "0x" + bytes(event["args"]["id"]).hex()
        won = self._won.pop(service_id, None)
        if won is not None and won.deploying and self._provider is not None:
            await self._provider.release(won.federation_id, won.consumer)


class ChainGate:
    """Admits an order handed over Mff gRPC on the chain backend: it must be
    signed by the service's on-chain consumer, and we must have won."""

    direct_offers = False

    def __init__(self, transport: ChainTransport) -> None:
        self.t = transport

    async def admit(self, request: peer_pb2.InstallAppRequest, caller: str) -> tuple[str, str]:
        service_id = request.offer_id.lower()
        won = self.t._won.get(service_id)
        if won is None:
            raise FailedPrecondition(f"we did not bid on service {service_id}")
        endpoint = OverlayEndpoint.from_proto(request.consumer_endpoint)
        candidates = tuple(TunnelCandidate.from_proto(c) for c in request.candidates)
        signer = recover_signer(
            order_digest(service_id, request.federation_id, endpoint, candidates),
            bytes(request.consumer_signature),
        )
        if signer != won.consumer or request.federation_id != won.federation_id:
            raise PermissionDenied(f"order for {service_id} is not signed by its consumer")
        fns = self.t.contract.functions
        state = await self.t.client.call(fns.stateOf(service_id))
        view = await self.t.client.call(fns.serviceOf(service_id))
        if state != fedc.AWARDED or to_checksum_address(view[7]) != self.t.address:
            raise FailedPrecondition(
                f"service {service_id} is {fedc.STATE_NAMES[state]}, not awarded to us"
            )
        if won.deploying:
            raise FailedPrecondition(f"service {service_id} is already being deployed")
        won.deploying = True
        return won.consumer, won.offer_ref

    async def notice(self, offer_ref: str, endpoint: OverlayEndpoint) -> bytes:
        service_id = next(s for s, w in self.t._won.items() if w.offer_ref == offer_ref)
        # The on-chain confirmation (and payment) follows off the critical path.
        self.t._spawn(self.t.confirm(service_id, endpoint), f"confirmDeployment {service_id}")
        return sign_message(self.t.account, notice_digest(service_id, endpoint))


def _int(value: int | str) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _address_topic(address: str) -> str:
    return "0x" + "0" * 24 + to_checksum_address(address)[2:].lower()


def _tx_attributes(span: Any, receipt: Any, **extra: Any) -> None:
    set_attributes(
        span,
        tx_hash=receipt.tx_hash,
        block=receipt.block_number,
        gas_used=receipt.gas_used,
        **extra,
    )


__all__ = ["ChainGate", "ChainTransport", "notice_digest", "order_digest"]

"""The Federation contract as the MEF sees it: a typed facade over the
committed artifact's ABI, its custom errors as domain errors, and its events
filtered on the node by their indexed arguments."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes

from mecfed import errors
from mecfed.chain.artifact import federation_abi, federation_artifact
from mecfed.chain.client import ChainClient, Event, Receipt
from mecfed.chain.events import EventDecoder
from mecfed.chain.federation_types import (
    ALLOWLIST,
    LIMIT_NAMES,
    MAJORITY,
    STATUS_BY_ERROR,
    Announced,
    BidInfo,
    Member,
    MembershipPolicy,
    ServiceState,
    ServiceView,
    Windows,
    auction_closed,
    limits_of,
    status_for,
)
from mecfed.chain.revert import ContractRevert, revert_class_for
from mecfed.chain.sealing import pubkey_of
from mecfed.chain.subscriptions import LogStream


def artifact() -> dict[str, Any]:
    return federation_artifact()


def abi() -> list[dict[str, Any]]:
    return federation_abi()


# Keyword filters of events() -> indexed argument names.
_FILTERS = {"service_id": "id", "consumer": "consumer", "provider": "provider"}


class FederationContract:
    """One deployed Federation contract, used through one :class:`ChainClient`.

    Reverts raise :class:`ContractRevert` subclasses that also are the domain
    class of :data:`STATUS_BY_ERROR` (whatever the client's own hook).
    """

    def __init__(self, client: ChainClient, address: str) -> None:
        self.client = client
        self.address = to_checksum_address(address)
        self.abi = federation_abi()
        self.contract = client.contract(self.address, self.abi)
        self._events = EventDecoder(client.w3, self.abi)
        self._indexed = {
            e["name"]: [(i["name"], i["type"]) for i in e["inputs"] if i.get("indexed")]
            for e in self.abi
            if e.get("type") == "event"
        }
        self._members: dict[str, Member] = {}

    @classmethod
    async def deploy(
        cls,
        client: ChainClient,
        policy: MembershipPolicy = MembershipPolicy.ALLOWLIST,
        members: Sequence[str] = (),
    ) -> FederationContract:
        """Deploys the contract (the sender becomes its admin)."""
        built = federation_artifact()
        address, _ = await client.deploy(
            built["abi"],
            built["bytecode"],
            int(policy),
            [to_checksum_address(m) for m in members],
        )
        return cls(client, address)

    # -- reads ----------------------------------------------------------------

    async def state(self, service_id: str) -> ServiceState:
        return ServiceState(await self._call("stateOf", _service_id_bytes(service_id)))

    async def service(self, service_id: str) -> ServiceView:
        return ServiceView.of(await self._call("serviceOf", _service_id_bytes(service_id)))

    async def member(self, address: str) -> Member | None:
        """The member at ``address`` (cached), None for non-members."""
        address = to_checksum_address(address)
        known = self._members.get(address)
        if known is None:
            name, key = await asyncio.gather(
                self._call("memberName", address), self._call("memberKey", address)
            )
            if not key:
                return None
            known = self._members[address] = Member(address, name, bytes(key))
        return known

    async def is_member(self, address: str) -> bool:
        return bool(await self._call("isMember", to_checksum_address(address)))

    async def credits(self, address: str) -> int:
        return int(await self._call("credits", to_checksum_address(address)))

    async def total_members(self) -> int:
        return int(await self._call("totalMembers"))

    async def limits(self) -> dict[str, int]:
        return limits_of(await self._call("limits"))

    # -- transactions ---------------------------------------------------------

    async def register(self, name: str, pubkey: bytes) -> Receipt:
        return await self._transact("register", name, bytes(pubkey), purpose=f"register {name}")

    async def ensure_member(self, name: str) -> None:
        """Registers this client's account under ``name`` unless a member."""
        if await self.is_member(self.client.address):
            return
        try:
            await self.register(name, pubkey_of(self.client.account))
        except ContractRevert as exc:
            if exc.error_name != "AlreadyMember":  # registered concurrently
                raise

    async def allow(self, address: str) -> Receipt:
        return await self._transact(
            "allow", to_checksum_address(address), purpose=f"allow {address}"
        )

    async def announce(
        self,
        max_price: int,
        k: int,
        windows: Windows,
        requirements: bytes,
        *,
        purpose: str | None = None,
        timeout: float | None = None,
        valid_until: float | None = None,
    ) -> Announced:
        """Announces a service, escrowing ``max_price``. ``purpose`` names it
        in the journal (e.g. "announce <federation id>"); a receipt wait past
        ``timeout`` raises :class:`~mecfed.chain.receipts.NotMined` (maybe
        sent: see :meth:`announced`); not mined by ``valid_until`` (default:
        the client's ``valid_for["announce"]``), it is replaced by a no-op."""
        receipt = await self._transact(
            "announce",
            max_price,
            k,
            windows.bidding,
            windows.order,
            windows.deploy,
            windows.challenge,
            bytes(requirements),
            value=max_price,
            purpose=purpose or "announce",
            timeout=timeout,
            valid_until=valid_until,
        )
        return self.announced(receipt)

    async def wait_announced(self, tx_hash: str, timeout: float | None = None) -> Announced:
        """The announcement of a maybe-sent ``announce`` (after NotMined),
        once mined; FailedPrecondition if it was replaced (never executes),
        NotMined if still pending after ``timeout``."""
        receipt = await self.client.wait_receipt(tx_hash, timeout, self.abi)
        return self.announced(receipt)

    @staticmethod
    def announced(receipt: Receipt) -> Announced:
        event = receipt.event("ServiceAnnounced")
        return Announced(
            service_id="0x" + bytes(event.args["id"]).hex(),
            bidding_deadline=int(event.args["biddingDeadline"]),
            block_number=receipt.block_number,
            receipt=receipt,
            bond=int(event.args["bond"]),
        )

    async def bid(
        self, service_id: str, price: int, sealed_endpoint: bytes, *, bond: int | None = None
    ) -> Receipt:
        """Bids, paying the bond due: ``bond`` (the announced bond, if we hold
        none on this service; 0 if we do), or looked up when None."""
        if bond is None:
            held = (await self.bid_of(service_id, self.client.address)).bonded
            bond = 0 if held else (await self.service(service_id)).bond
        return await self._transact(
            "bid",
            _service_id_bytes(service_id),
            price,
            bytes(sealed_endpoint),
            value=bond,
            purpose=f"bid {service_id}",
        )

    async def bid_of(self, service_id: str, provider: str) -> BidInfo:
        price, round_, live, excluded, bonded = await self._call(
            "bidOf", _service_id_bytes(service_id), to_checksum_address(provider)
        )
        return BidInfo(int(price), int(round_), bool(live), bool(excluded), bool(bonded))

    async def acknowledge(self, service_id: str) -> Receipt:
        """The consumer's traffic check passed: releases the price."""
        return await self._transact(
            "acknowledge", _service_id_bytes(service_id), purpose=f"acknowledge {service_id}"
        )

    async def settle(self, service_id: str) -> Receipt:
        """Books the payment after an unchallenged challenge window (anyone)."""
        return await self._transact(
            "settle", _service_id_bytes(service_id), purpose=f"settle {service_id}"
        )

    async def reclaim_bond(self, service_id: str) -> Receipt:
        return await self._transact(
            "reclaimBond", _service_id_bytes(service_id), purpose=f"reclaim bond {service_id}"
        )

    async def award(self, service_id: str) -> Receipt:
        return await self._transact(
            "award", _service_id_bytes(service_id), purpose=f"award {service_id}"
        )

    async def send_consumer_endpoint(self, service_id: str, sealed: bytes) -> Receipt:
        return await self._transact(
            "sendConsumerEndpoint",
            _service_id_bytes(service_id),
            bytes(sealed),
            purpose=f"order {service_id}",
        )

    async def confirm_deployment(self, service_id: str, sealed: bytes) -> Receipt:
        return await self._transact(
            "confirmDeployment",
            _service_id_bytes(service_id),
            bytes(sealed),
            purpose=f"confirm {service_id}",
        )

    async def cancel(self, service_id: str) -> Receipt:
        return await self._transact(
            "cancel", _service_id_bytes(service_id), purpose=f"cancel {service_id}"
        )

    async def reopen(self, service_id: str, bidding_window: int) -> Receipt:
        return await self._transact(
            "reopen", _service_id_bytes(service_id), bidding_window, purpose=f"reopen {service_id}"
        )

    async def decline(self, service_id: str) -> Receipt:
        """The winner gives up: a new round without it (ServiceReopened)."""
        return await self._transact(
            "decline", _service_id_bytes(service_id), purpose=f"decline {service_id}"
        )

    async def terminate(self, service_id: str) -> Receipt:
        return await self._transact(
            "terminate", _service_id_bytes(service_id), purpose=f"terminate {service_id}"
        )

    async def withdraw(self) -> Receipt:
        return await self._transact("withdraw", purpose="withdraw credits")

    # -- events ---------------------------------------------------------------

    def events(
        self,
        names: Sequence[str],
        *,
        service_id: str | None = None,
        consumer: str | None = None,
        provider: str | None = None,
        from_block: int | None = None,
        confirmations: int | None = None,
        name: str | None = None,
        removals: bool | None = None,
    ) -> LogStream:
        """A live stream of the events ``names``, filtered on the node by the
        given indexed arguments (None: any), from ``from_block`` (None: the
        next block), replayed after reconnects. ``confirmations``, ``name``
        (a durable cursor) and ``removals`` (reorged logs delivered with
        ``Event.removed``): as :meth:`ChainClient.logs` (None: the client's
        defaults)."""
        topics = self.topics(names, service_id=service_id, consumer=consumer, provider=provider)
        return self.client.logs(
            self.address,
            topics,
            from_block,
            self.abi,
            confirmations=confirmations,
            name=name,
            removals=removals,
        )

    async def past_events(
        self,
        names: Sequence[str],
        *,
        service_id: str | None = None,
        consumer: str | None = None,
        provider: str | None = None,
        from_block: int,
        to_block: int | str = "latest",
    ) -> list[Event]:
        topics = self.topics(names, service_id=service_id, consumer=consumer, provider=provider)
        return await self.client.get_logs(self.address, topics, from_block, to_block, self.abi)

    def topics(
        self,
        names: Sequence[str],
        *,
        service_id: str | None = None,
        consumer: str | None = None,
        provider: str | None = None,
    ) -> list[Any]:
        """The topic filter for ``names`` and the keyword filters. A filter
        must name an indexed argument in the same position of every event
        (ValueError otherwise)."""
        if isinstance(names, str) or not names:
            raise ValueError("names: a non-empty sequence of event names")
        for name in names:
            if name not in self._indexed:
                raise ValueError(f"the Federation contract has no event {name}")
        given = {"service_id": service_id, "consumer": consumer, "provider": provider}
        topics: list[Any] = [[self._events.topic(n) for n in names]]
        for keyword, value in given.items():
            if value is None:
                continue
            arg = _FILTERS[keyword]
            places = set()
            for name in names:
                indexed = [n for n, _ in self._indexed[name]]
                if arg not in indexed:
                    raise ValueError(f"{name} has no indexed {arg!r}: cannot filter by {keyword}")
                places.add((indexed.index(arg), self._indexed[name][indexed.index(arg)][1]))
            if len(places) > 1:
                raise ValueError(f"{arg!r} is not in the same position in {', '.join(names)}")
            ((index, abi_type),) = places
            position = index + 1
            topics.extend([None] * (position + 1 - len(topics)))
            topics[position] = self._topic_value(abi_type, keyword, value)
        return topics

    def _topic_value(self, abi_type: str, keyword: str, value: str) -> str:
        if abi_type == "address":
            typed: Any = to_checksum_address(value)
        elif abi_type == "bytes32":
            typed = _service_id_bytes(value) if keyword == "service_id" else HexBytes(value)
        else:
            typed = value
        return HexBytes(self.client.w3.codec.encode([abi_type], [typed])).to_0x_hex()

    # -- plumbing -------------------------------------------------------------

    def _function(self, name: str, *args: Any) -> Any:
        try:
            function = getattr(self.contract.functions, name)
        except AttributeError:  # web3's ABIFunctionNotFound
            raise errors.FailedPrecondition(
                f"the Federation contract at {self.address} has no {name}()"
            ) from None
        return function(*args)

    async def _call(self, name: str, *args: Any) -> Any:
        try:
            return await self.client.call(self._function(name, *args))
        except ContractRevert as exc:
            raise _mapped(exc) from exc

    async def _transact(
        self,
        name: str,
        *args: Any,
        value: int = 0,
        purpose: str | None = None,
        timeout: float | None = None,
        valid_until: float | None = None,
    ) -> Receipt:
        """``purpose`` is journalled (and named in health() when wedged)."""
        try:
            return await self.client.transact(
                self._function(name, *args),
                value,
                timeout=timeout,
                purpose=purpose,
                valid_until=valid_until,
            )
        except ContractRevert as exc:
            raise _mapped(exc) from exc


async def deploy(
    client: ChainClient,
    policy: MembershipPolicy | int = MembershipPolicy.ALLOWLIST,
    members: Sequence[str] = (),
) -> str:
    """Deploys the contract; its address (for callers that only need that)."""
    contract = await FederationContract.deploy(client, MembershipPolicy(policy), members)
    return contract.address


def _mapped(exc: ContractRevert) -> ContractRevert:
    """``exc`` as the domain class of its error name (if not already)."""
    status = STATUS_BY_ERROR.get(exc.error_name)
    if status is None or isinstance(exc, status):
        return exc
    return revert_class_for(status)(
        exc.error_name, exc.error_args, exc.message, data=exc.data, tx_hash=exc.tx_hash
    )


def _service_id_bytes(service_id: str | bytes) -> bytes:
    raw = bytes(service_id) if isinstance(service_id, bytes | bytearray) else None
    if raw is None:
        text = str(service_id)
        if not re.fullmatch(r"0x[0-9a-fA-F]{64}", text):
            raise errors.InvalidArgument.field("service_id", "must be 0x and 64 hex digits")
        raw = bytes.fromhex(text[2:])
    if len(raw) != 32:
        raise errors.InvalidArgument.field("service_id", "must be 32 bytes")
    return raw


__all__ = [
    "ALLOWLIST",
    "LIMIT_NAMES",
    "MAJORITY",
    "STATUS_BY_ERROR",
    "Announced",
    "BidInfo",
    "FederationContract",
    "Member",
    "MembershipPolicy",
    "ServiceState",
    "ServiceView",
    "Windows",
    "abi",
    "artifact",
    "auction_closed",
    "deploy",
    "limits_of",
    "status_for",
]

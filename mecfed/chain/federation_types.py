"""The Federation contract's types as the MEF sees them: states, the error
-> status map, the views and what transactions return (re-exported by
:mod:`mecfed.chain.federation`)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from eth_utils import to_checksum_address

from mecfed import errors
from mecfed.chain.client import Receipt
from mecfed.chain.revert import ContractRevert


class ServiceState(enum.IntEnum):
    NONE = 0
    OPEN = 1
    AWARDED = 2
    DEPLOYED = 3
    TERMINATED = 4
    CANCELLED = 5
    CLOSING = 6  # the k-th bid's block: bids in it still compete
    ACKNOWLEDGED = 7  # paid (by the consumer's acknowledgement or after the challenge window)

    @property
    def awarded(self) -> bool:
        """A winner exists that can no longer change: AWARDED, or CLOSING as
        read from a mined block (every bid of the closing block is in it)."""
        return self in (ServiceState.AWARDED, ServiceState.CLOSING)

    @property
    def settled(self) -> bool:
        """Nothing of the escrow is left for the consumer to recover."""
        return self in (ServiceState.TERMINATED, ServiceState.CANCELLED, ServiceState.ACKNOWLEDGED)


class MembershipPolicy(enum.IntEnum):
    ALLOWLIST = 0
    MAJORITY = 1


ALLOWLIST, MAJORITY = MembershipPolicy.ALLOWLIST, MembershipPolicy.MAJORITY

# One mapping, documented in the contract's NatSpec header.
STATUS_BY_ERROR: dict[str, type[errors.MecfedError]] = {
    "NotMember": errors.PermissionDenied,
    "NotAdmin": errors.PermissionDenied,
    "WrongPolicy": errors.FailedPrecondition,
    "NotAllowed": errors.PermissionDenied,
    "AlreadyMember": errors.AlreadyExists,
    "BadName": errors.InvalidArgument,
    "BadPublicKey": errors.InvalidArgument,
    "NotApplicant": errors.NotFound,
    "AlreadyApproved": errors.AlreadyExists,
    "EscrowMismatch": errors.InvalidArgument,
    "InvalidK": errors.InvalidArgument,
    "InvalidWindow": errors.InvalidArgument,
    "RequirementsTooLong": errors.InvalidArgument,
    "PayloadTooLong": errors.InvalidArgument,
    "UnknownService": errors.NotFound,
    "WrongState": errors.FailedPrecondition,
    "NotConsumer": errors.PermissionDenied,
    "OwnService": errors.PermissionDenied,
    "BiddingClosed": errors.DeadlineExceeded,
    "PriceOutOfRange": errors.InvalidArgument,
    "BidNotLower": errors.FailedPrecondition,
    "NotEligible": errors.PermissionDenied,
    "BondMismatch": errors.InvalidArgument,
    "DeadlineNotPassed": errors.FailedPrecondition,
    "NoBids": errors.FailedPrecondition,
    "NotWinner": errors.PermissionDenied,
    "OrderWindowOver": errors.DeadlineExceeded,
    "ConfirmWindowOver": errors.DeadlineExceeded,
    "NotParty": errors.PermissionDenied,
    "TooManyRounds": errors.ResourceExhausted,
    "NoBond": errors.FailedPrecondition,
    "BondLocked": errors.FailedPrecondition,
    "NothingToWithdraw": errors.FailedPrecondition,
    "TransferFailed": errors.Internal,
    "Reentrancy": errors.Aborted,
}


def status_for(error_name: str) -> type[errors.MecfedError] | None:
    """The domain class of a Federation custom error (``ChainClient`` hook)."""
    return STATUS_BY_ERROR.get(error_name)


def auction_closed(exc: BaseException) -> bool:
    """A bid refused because the auction ended first (its k-th bid or its
    deadline came before ours): normal when more providers bid than k."""
    return isinstance(exc, ContractRevert) and exc.error_name in ("WrongState", "BiddingClosed")


def limits_of(values: Sequence[int]) -> dict[str, int]:
    """The contract's ``limits()`` by name."""
    return dict(zip(LIMIT_NAMES, (int(v) for v in values), strict=True))


LIMIT_NAMES = (
    "max_name",
    "max_requirements",
    "max_sealed",
    "max_k",
    "min_bidding_window",
    "max_bidding_window",
    "min_order_window",
    "max_order_window",
    "min_deploy_window",
    "max_deploy_window",
    "min_challenge_window",
    "max_challenge_window",
    "bond_divisor",
)


@dataclass(frozen=True)
class ServiceView:
    """The contract's ``ServiceView`` struct, field by field (snake case).

    Built from web3's named output, so fields the contract adds are not
    lost: those this class does not name yet land in ``extra``; named ones
    the deployed contract lacks keep their defaults.
    """

    consumer: str
    max_price: int
    k: int
    bid_count: int
    state: ServiceState
    deadline: int  # bidding deadline; the closing block's time once CLOSING
    confirm_deadline: int
    winner: str
    best_price: int
    round: int
    confirm_window: int = 0  # (older contracts)
    bidding_window: int = 0
    quorum: int = 0  # (older contracts)
    bond: int = 0
    close_block: int = 0
    order_deadline: int = 0
    challenge_deadline: int = 0
    order_window: int = 0
    deploy_window: int = 0
    challenge_window: int = 0
    ordered: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, named: Any) -> ServiceView:
        values = {_snake(k): v for k, v in named._asdict().items()}
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs["state"] = ServiceState(kwargs["state"])
        for key in ("consumer", "winner"):
            kwargs[key] = to_checksum_address(kwargs[key])
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**kwargs, extra=extra)


@dataclass(frozen=True)
class Member:
    address: str
    name: str
    pubkey: bytes  # 64 bytes, uncompressed secp256k1 without the 0x04 prefix


@dataclass(frozen=True)
class Announced:
    service_id: str  # "0x" + 64 hex, lower case
    bidding_deadline: int
    block_number: int
    receipt: Receipt
    bond: int = 0


@dataclass(frozen=True)
class Windows:
    """The windows of an announcement (seconds; bounds in the contract's
    ``limits()``): bidding, then the consumer's order, the winner's
    deployment (from the order deadline), the consumer's challenge (from the
    confirmation)."""

    bidding: int
    order: int = 60
    deploy: int = 300
    challenge: int = 300


@dataclass(frozen=True)
class BidInfo:
    price: int
    round: int
    live: bool
    excluded: bool
    bonded: bool


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

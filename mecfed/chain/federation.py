"""The Federation contract as the MEF sees it: the committed artifact, how
its custom errors map to gRPC statuses, deployment and membership."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from mecfed import errors
from mecfed.chain.artifact import federation_abi, federation_artifact
from mecfed.chain.client import ChainClient
from mecfed.chain.revert import ContractRevert
from mecfed.chain.sealing import pubkey_of

ALLOWLIST, MAJORITY = 0, 1
STATE_NAMES = ("None", "Open", "Awarded", "Deployed", "Terminated", "Cancelled")
OPEN, AWARDED, DEPLOYED = 1, 2, 3

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
    "DeadlineNotPassed": errors.FailedPrecondition,
    "NoBids": errors.FailedPrecondition,
    "NotWinner": errors.PermissionDenied,
    "ConfirmWindowOver": errors.DeadlineExceeded,
    "NotParty": errors.PermissionDenied,
    "TooManyRounds": errors.ResourceExhausted,
    "NothingToWithdraw": errors.FailedPrecondition,
    "TransferFailed": errors.Unavailable,
    "Reentrancy": errors.FailedPrecondition,
}


def status_for(error_name: str) -> type[errors.MecfedError] | None:
    return STATUS_BY_ERROR.get(error_name)


def auction_closed(exc: BaseException) -> bool:
    """A bid refused because the auction ended first (its k-th bid or its
    deadline came before ours): normal when more providers bid than k."""
    return isinstance(exc, ContractRevert) and exc.error_name in ("WrongState", "BiddingClosed")


def artifact() -> dict[str, Any]:
    return federation_artifact()


def abi() -> list[dict[str, Any]]:
    return federation_abi()


async def deploy(client: ChainClient, policy: int = ALLOWLIST, members: list[str] = ()) -> str:
    """Deploys the contract (the sender becomes its admin); returns its address."""
    contract, _ = await client.deploy(abi(), artifact()["bytecode"], policy, list(members))
    return contract.address


async def ensure_member(client: ChainClient, address: str, account: LocalAccount, name: str):
    """Registers ``account`` under ``name`` unless it already is a member."""
    contract = client.contract(address, abi())
    if await client.call(contract.functions.isMember(account.address)):
        return
    await client.transact(contract.functions.register(name, pubkey_of(account)))

"""Signed per-period SLA reports (issue 11): what a party or an oracle says
about one period of one federation, signed with its chain key.

The signed digest is the one the contract recomputes before ``ecrecover``:
``keccak256(abi.encode(TAG, chainId, verifyingContract, federationId,
period, role, rttUs, lossPpm, availabilityPpm))``, signed as an EIP-191
personal message. Chain id and contract address bind a report to one
deployment (a report for another chain or contract does not verify); the
federation id and period bind it to one period (no replay into another).
The direct backend uses the same digest with chain id 0 and the zero
address, signed by the system's own key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from mecfed.errors import InvalidArgument, PermissionDenied
from mecfed.model.sla import Measurement

TAG = "mecfed.sla.report.v1"
ZERO_ADDRESS = "0x" + "00" * 20
# secp256k1 order / 2: a signature with a higher s is the malleated twin of
# a valid one; refused, as the contract refuses it.
_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class Reporter(IntEnum):
    ORACLE = 0
    CONSUMER = 1
    PROVIDER = 2


@dataclass(frozen=True)
class Domain:
    """Where a report counts: one chain and one contract (direct: 0, zero)."""

    chain_id: int = 0
    contract: str = ZERO_ADDRESS


@dataclass(frozen=True)
class PeriodReport:
    federation_id: bytes  # 32 bytes (the chain's service id; direct: keccak of the id)
    period: int
    reporter: Reporter
    measurement: Measurement

    def __post_init__(self) -> None:
        if len(self.federation_id) != 32:
            raise InvalidArgument.field("federation_id", "must be 32 bytes")
        if not 0 <= self.period < 2**32:
            raise InvalidArgument.field("period", f"must be a uint32, got {self.period}")


@dataclass(frozen=True)
class SignedReport:
    report: PeriodReport
    signer: str  # checksummed address
    signature: bytes  # 65 bytes r || s || v


def digest(domain: Domain, report: PeriodReport) -> bytes:
    m = report.measurement
    return keccak(
        encode(
            [
                "string",
                "uint256",
                "address",
                "bytes32",
                "uint32",
                "uint8",
                "uint32",
                "uint32",
                "uint32",
            ],
            [
                TAG,
                domain.chain_id,
                to_checksum_address(domain.contract),
                report.federation_id,
                report.period,
                int(report.reporter),
                m.rtt_us,
                m.loss_ppm,
                m.availability_ppm,
            ],
        )
    )


def sign(account: LocalAccount, domain: Domain, report: PeriodReport) -> SignedReport:
    signed = account.sign_message(encode_defunct(primitive=digest(domain, report)))
    return SignedReport(report, to_checksum_address(account.address), bytes(signed.signature))


def recover(domain: Domain, signed: SignedReport) -> str:
    """The address that signed; PermissionDenied unless it is ``signed.signer``."""
    sig = signed.signature
    if len(sig) != 65:
        raise InvalidArgument.field("signature", f"must be 65 bytes, got {len(sig)}")
    if int.from_bytes(sig[32:64], "big") > _HALF_ORDER:
        raise InvalidArgument.field("signature", "has a high s value (malleated)")
    try:
        address = Account.recover_message(
            encode_defunct(primitive=digest(domain, signed.report)), signature=sig
        )
    except Exception as exc:  # eth_keys raises several types for a bad signature
        raise InvalidArgument.field("signature", f"does not verify: {exc}") from None
    if address != to_checksum_address(signed.signer):
        raise PermissionDenied(f"report signed by {address}, not by {signed.signer}")
    return address


__all__ = ["Domain", "PeriodReport", "Reporter", "SignedReport", "digest", "recover", "sign"]

"""Signed SLA period reports: they verify for their own domain, federation
and period only; forged, malleated and truncated signatures are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from mecfed.chain.sla_reports import (
    Domain,
    PeriodReport,
    Reporter,
    SignedReport,
    recover,
    sign,
)
from mecfed.errors import InvalidArgument, PermissionDenied
from mecfed.model.sla import Measurement

ORACLE = Account.from_key("0x" + "11" * 32)
OTHER = Account.from_key("0x" + "22" * 32)
DOMAIN = Domain(chain_id=31337, contract="0x" + "ab" * 20)
REPORT = PeriodReport(b"\x01" * 32, 3, Reporter.ORACLE, Measurement(1_500, 0, 1_000_000))
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_round_trip():
    signed = sign(ORACLE, DOMAIN, REPORT)
    assert recover(DOMAIN, signed) == ORACLE.address


@pytest.mark.parametrize(
    "change",
    [
        lambda s: replace(s, report=replace(s.report, period=4)),
        lambda s: replace(s, report=replace(s.report, federation_id=b"\x02" * 32)),
        lambda s: replace(s, report=replace(s.report, reporter=Reporter.CONSUMER)),
        lambda s: replace(s, report=replace(s.report, measurement=Measurement(1_500, 1, 10**6))),
        lambda s: replace(s, signer=OTHER.address),
    ],
    ids=["other-period", "other-federation", "other-role", "other-values", "claimed-signer"],
)
def test_a_changed_report_does_not_verify(change):
    with pytest.raises(PermissionDenied):
        recover(DOMAIN, change(sign(ORACLE, DOMAIN, REPORT)))


@pytest.mark.parametrize(
    "domain", [Domain(1, DOMAIN.contract), Domain(31337, "0x" + "cd" * 20), Domain()]
)
def test_a_report_counts_in_its_own_domain_only(domain):
    with pytest.raises(PermissionDenied):
        recover(domain, sign(ORACLE, DOMAIN, REPORT))


def test_malleated_signature_is_refused():
    signed = sign(ORACLE, DOMAIN, REPORT)
    r, s, v = (
        signed.signature[:32],
        int.from_bytes(signed.signature[32:64], "big"),
        signed.signature[64],
    )
    twin = r + (N - s).to_bytes(32, "big") + bytes([55 - v + 0 if v in (27, 28) else v ^ 1])
    with pytest.raises(InvalidArgument, match="high s"):
        recover(DOMAIN, SignedReport(signed.report, signed.signer, twin))


@pytest.mark.parametrize("sig", [b"", b"\x00" * 64, b"\x00" * 65, b"\xff" * 66])
def test_garbage_signatures_are_refused(sig):
    with pytest.raises((InvalidArgument, PermissionDenied)):
        recover(DOMAIN, SignedReport(REPORT, ORACLE.address, sig))


def test_report_fields_are_bounded():
    with pytest.raises(InvalidArgument, match="federation_id"):
        PeriodReport(b"\x01" * 31, 0, Reporter.ORACLE, Measurement(0, 0, 0))
    with pytest.raises(InvalidArgument, match="period"):
        PeriodReport(b"\x01" * 32, 2**32, Reporter.ORACLE, Measurement(0, 0, 0))

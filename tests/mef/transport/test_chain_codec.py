"""The chain transport's codecs: what goes into the contract and what is
signed, read back from untrusted bytes."""

from __future__ import annotations

import pytest
from eth_account import Account

from mecfed.chain.sealing import (
    encode_endpoint,
    pubkey_of,
    recover_signer,
    seal,
    sign_message,
)
from mecfed.errors import InvalidArgument, PermissionDenied
from mecfed.model import (
    AppSpec,
    OverlayEndpoint,
    Requirements,
    Resources,
    ServiceNeed,
    TunnelCandidate,
)
from mef.transport.chain import codec

CONSUMER = Account.from_key(b"\x01" * 32)
PROVIDER = Account.from_key(b"\x02" * 32)
SERVICE = "0x" + "ab" * 32
ENDPOINT = OverlayEndpoint("10.213.0.10", "172.30.7.0/24", ("172.30.7.1", "172.30.7.2"))
CANDIDATES = (TunnelCandidate(5000, 4789), TunnelCandidate(16_777_215, 65535))


def need() -> ServiceNeed:
    app = AppSpec("mecfed/echo:1", 2, Resources(250, 64), echo_port=7007)
    return ServiceNeed("fed-0123456789abcdef", CONSUMER.address, app, Requirements(1000))


def test_requirements_round_trip_with_traceparent():
    tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    raw = codec.encode_requirements(need(), "mec-01", tp)
    out = codec.decode_requirements(raw)
    assert out == codec.Announcement("fed-0123456789abcdef", "mec-01", need().app, tp)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1,2]",
        b'{"f":"fed-1","i":"mecfed/echo:1"}',  # replicas missing
        b'{"f":"fed-1","i":"Bad/Image","r":1}',  # upper case image
        b'{"f":"fed-1","i":"mecfed/echo:1","r":1,"mem":3}',  # below Docker's minimum
        b'{"f":"fed-1","i":"mecfed/echo:1","r":true}',  # a bool is not an int
        b'{"f":"fed-1","i":"mecfed/echo:1","r":99}',  # above MAX_REPLICAS
        b"\xff\xfe",
    ],
)
def test_malformed_requirements_are_refused(raw):
    with pytest.raises(InvalidArgument):
        codec.decode_requirements(raw)


def test_endpoint_body_is_compact_and_round_trips():
    body = codec.endpoint_body(ENDPOINT.with_tunnel(CANDIDATES[0]))
    assert body["a"] == [1, 2]  # host offsets, not addresses
    assert codec.endpoint_from_body(body) == ENDPOINT.with_tunnel(CANDIDATES[0])


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"u": "10.0.0.1", "s": "172.30.7.0/24", "a": [300]},  # outside the subnet
        {"u": "10.0.0.1", "s": "172.30.7.0/24", "a": ["1"]},  # not an int
        {"u": "0.0.0.0", "s": "172.30.7.0/24", "a": []},  # not a unicast underlay
        {"u": "10.0.0.1", "s": "172.30.0.0/16", "a": []},  # not a /24
        {"u": "10.0.0.1", "s": "172.30.7.0/24", "a": [1], "v": 5},  # VNI without port
        {"u": "10.0.0.1", "s": "172.30.7.0/24"},  # no app list
    ],
)
def test_malformed_endpoints_are_refused(body):
    with pytest.raises(InvalidArgument):
        codec.endpoint_from_body(body)


def test_candidates_pack_to_five_bytes_each():
    text = codec.pack_candidates(CANDIDATES)
    assert len(text) == 16  # base64 of 10 bytes
    assert codec.unpack_candidates(text) == CANDIDATES


@pytest.mark.parametrize("text", ["", "!!!", "AAAA", "AAAAAAA=", "A" * 120])
def test_malformed_candidates_are_refused(text):
    with pytest.raises(InvalidArgument):
        codec.unpack_candidates(text)


def test_sealed_payloads_open_only_for_their_recipient():
    contact = codec.MffContact("10.213.0.11:50051", "mec-02")
    blob = codec.seal_contact(pubkey_of(CONSUMER), contact)
    assert codec.open_contact(CONSUMER, blob) == contact
    with pytest.raises(PermissionDenied):
        codec.open_contact(PROVIDER, blob)

    order = codec.SealedOrder("fed-1", ENDPOINT, CANDIDATES)
    sealed = codec.seal_order(pubkey_of(PROVIDER), order)
    assert len(sealed) <= 256  # the contract's MAX_SEALED
    assert codec.open_order(PROVIDER, sealed) == order

    confirmed = ENDPOINT.with_tunnel(CANDIDATES[0])
    assert (
        codec.open_confirmation(CONSUMER, codec.seal_confirmation(pubkey_of(CONSUMER), confirmed))
        == confirmed
    )


def test_a_sealed_contact_without_a_port_is_refused():
    blob = seal(pubkey_of(CONSUMER), encode_endpoint({"mff": "nohost", "name": "x"}))
    with pytest.raises(InvalidArgument):
        codec.open_contact(CONSUMER, blob)


def test_order_digest_binds_every_field():
    base = codec.order_digest(SERVICE, "fed-1", ENDPOINT, CANDIDATES)
    assert base.startswith(b"mecfed/v1 order\n")
    assert (
        codec.order_digest(SERVICE.upper().replace("0X", "0x"), "fed-1", ENDPOINT, CANDIDATES)
        == base
    )
    variants = [
        codec.order_digest("0x" + "cd" * 32, "fed-1", ENDPOINT, CANDIDATES),
        codec.order_digest(SERVICE, "fed-2", ENDPOINT, CANDIDATES),
        codec.order_digest(SERVICE, "fed-1", ENDPOINT.with_app_ips(("172.30.7.3",)), CANDIDATES),
        codec.order_digest(SERVICE, "fed-1", ENDPOINT, CANDIDATES[:1]),
    ]
    assert len({base, *variants}) == 5
    signature = sign_message(CONSUMER, base)
    assert recover_signer(base, signature) == CONSUMER.address
    assert recover_signer(variants[1], signature) != CONSUMER.address


def test_notice_digest_binds_service_and_endpoint():
    ep = ENDPOINT.with_tunnel(CANDIDATES[0])
    base = codec.notice_digest(SERVICE, ep)
    assert base.startswith(b"mecfed/v1 deployment-notice\n")
    assert codec.notice_digest(SERVICE, ENDPOINT.with_tunnel(CANDIDATES[1])) != base
    assert codec.notice_digest("0x" + "cd" * 32, ep) != base

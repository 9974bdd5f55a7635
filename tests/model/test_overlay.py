"""Tests for mecfed.model.overlay: tunnel candidates, overlay endpoints and
the traffic report."""

from __future__ import annotations

import pytest

from mecfed.model import OverlayEndpoint, TrafficReport, TunnelCandidate
from mecfed.model.overlay import require_candidates
from tests.model.support import invalid

UNDERLAY = "192.168.1.10"
SUBNET = "10.9.0.0/24"


# --- tunnel candidates -----------------------------------------------------------


@pytest.mark.parametrize("vni", [1, 2, 2**24 - 2, 2**24 - 1])
def test_vni_inside(vni: int) -> None:
    assert TunnelCandidate(vni, 4789).vni == vni


@pytest.mark.parametrize("vni", [0, -1, 2**24, 2**32 - 1])
def test_vni_outside(vni: int) -> None:
    with invalid("vni", f"is {vni}; it must be between 1 and 16777215"):
        TunnelCandidate(vni, 4789)


@pytest.mark.parametrize("port", [1024, 1025, 4789, 65534, 65535])
def test_tunnel_port_inside(port: int) -> None:
    assert TunnelCandidate(1, port).udp_port == port


@pytest.mark.parametrize("port", [0, 1, 1023, 65536])
def test_tunnel_port_outside(port: int) -> None:
    with invalid("udp_port", f"is {port}; it must be between 1024 and 65535"):
        TunnelCandidate(1, port)


def candidates(n: int) -> tuple[TunnelCandidate, ...]:
    return tuple(TunnelCandidate(1000 + i, 4789 + i) for i in range(n))


@pytest.mark.parametrize("n", [1, 2, 15, 16])
def test_candidate_count_inside(n: int) -> None:
    require_candidates(candidates(n), "candidates")


@pytest.mark.parametrize("n", [0, 17, 100])
def test_candidate_count_outside(n: int) -> None:
    with invalid("candidates", f"has {n} entries; it must have 1..16"):
        require_candidates(candidates(n), "candidates")


def test_candidates_duplicate_pair() -> None:
    dup = (TunnelCandidate(7, 5000), TunnelCandidate(8, 5000), TunnelCandidate(7, 5000))
    with invalid("candidates", r"lists a \(vni, udp_port\) pair twice"):
        require_candidates(dup, "candidates")


def test_candidates_same_vni_other_port_is_no_duplicate() -> None:
    require_candidates((TunnelCandidate(7, 5000), TunnelCandidate(7, 5001)), "candidates")


# --- overlay endpoints -------------------------------------------------------------


def test_endpoint_without_tunnel() -> None:
    ep = OverlayEndpoint(UNDERLAY, SUBNET)
    assert ep.tunnel is None and ep.app_ips == ()
    with invalid("provider_endpoint.vni", "is required"):
        ep.require_tunnel("provider_endpoint")


def test_endpoint_with_tunnel() -> None:
    ep = OverlayEndpoint(UNDERLAY, SUBNET, ("10.9.0.2",), vni=42, udp_port=4789)
    assert ep.tunnel == TunnelCandidate(42, 4789)
    assert ep.require_tunnel("provider_endpoint") == TunnelCandidate(42, 4789)


def test_endpoint_tunnel_needs_both_halves() -> None:
    with invalid("udp_port"):
        OverlayEndpoint(UNDERLAY, SUBNET, vni=42)
    with invalid("vni"):
        OverlayEndpoint(UNDERLAY, SUBNET, udp_port=4789)
    with invalid("vni"):
        OverlayEndpoint(UNDERLAY, SUBNET, vni=2**24, udp_port=4789)
    with invalid("udp_port"):
        OverlayEndpoint(UNDERLAY, SUBNET, vni=1, udp_port=80)


def test_with_tunnel_and_with_app_ips() -> None:
    ep = OverlayEndpoint(UNDERLAY, SUBNET)
    tunneled = ep.with_tunnel(TunnelCandidate(9, 5000))
    assert (tunneled.vni, tunneled.udp_port) == (9, 5000) and ep.vni == 0
    assert tunneled.with_app_ips(("10.9.0.130",)).app_ips == ("10.9.0.130",)
    with invalid("app_ips[0]", "is outside"):
        tunneled.with_app_ips(("10.8.0.1",))


def test_require_remote_of() -> None:
    ep = OverlayEndpoint(UNDERLAY, SUBNET)
    assert ep.require_remote_of("192.168.1.11", "provider_endpoint") is ep
    with invalid("provider_endpoint.underlay_ip", "is this system's own underlay address"):
        ep.require_remote_of(UNDERLAY, "provider_endpoint")


@pytest.mark.parametrize("underlay", ["", "0.0.0.0", "127.0.0.1", "224.0.0.5", "::1", "x"])
def test_endpoint_underlay_is_checked(underlay: str) -> None:
    with invalid("underlay_ip"):
        OverlayEndpoint(underlay, SUBNET)


@pytest.mark.parametrize("subnet", ["", "10.9.0.0/16", "10.9.0.1/24", "127.0.0.0/24"])
def test_endpoint_subnet_is_checked(subnet: str) -> None:
    with invalid("subnet"):
        OverlayEndpoint(UNDERLAY, subnet)


def test_endpoint_app_ips_inside_the_subnet() -> None:
    ips = ("10.9.0.1", "10.9.0.127", "10.9.0.128", "10.9.0.254")
    assert OverlayEndpoint(UNDERLAY, SUBNET, ips).app_ips == ips


@pytest.mark.parametrize(
    ("ips", "field", "match"),
    [
        (("10.9.0.2", "10.9.1.2"), "app_ips[1]", "is outside 10.9.0.0/24"),
        (("10.9.0.0",), "app_ips[0]", "is not a host address"),
        (("10.9.0.2", "10.9.0.3", "10.9.0.255"), "app_ips[2]", "is not a host address"),
        (("10.9.0.2", "nope"), "app_ips[1]", "is not an IPv4 address"),
        (("fd00::2",), "app_ips[0]", "is not an IPv4 address"),
        (("10.9.0.2", "10.9.0.3", "10.9.0.2"), "app_ips", "lists an address twice"),
    ],
)
def test_endpoint_app_ips_checked(ips: tuple[str, ...], field: str, match: str) -> None:
    with invalid(field, match):
        OverlayEndpoint(UNDERLAY, SUBNET, ips)


def test_endpoint_app_ip_count() -> None:
    hosts = tuple(f"10.9.0.{i}" for i in range(1, 128))
    assert len(OverlayEndpoint(UNDERLAY, SUBNET, hosts[:126]).app_ips) == 126
    with invalid("app_ips", "has 127 entries; at most 126"):
        OverlayEndpoint(UNDERLAY, SUBNET, hosts)


# --- traffic report ----------------------------------------------------------------


def test_traffic_ok_and_loss() -> None:
    assert TrafficReport(20, 20).ok and TrafficReport(20, 20).loss == 0.0
    assert not TrafficReport(20, 19).ok
    assert TrafficReport(20, 19).loss == pytest.approx(0.05)
    assert TrafficReport(4, 0).loss == 1.0 and not TrafficReport(4, 0).ok
    # Nothing sent proves nothing: not ok, although nothing was lost.
    assert not TrafficReport(0, 0).ok and TrafficReport(0, 0).loss == 0.0


def test_traffic_merge() -> None:
    merged = TrafficReport.merge(
        [
            TrafficReport(10, 10, rtt_ms=1.0, rtt_max_ms=2.0, warmup_ms=30.0),
            TrafficReport(10, 5, rtt_ms=4.0, rtt_max_ms=9.0, warmup_ms=10.0),
        ]
    )
    assert (merged.sent, merged.received) == (20, 15)
    assert merged.rtt_ms == pytest.approx((10 * 1.0 + 5 * 4.0) / 15)  # weighted by echoes
    assert merged.rtt_max_ms == 9.0 and merged.warmup_ms == 30.0
    assert not merged.ok and merged.loss == pytest.approx(0.25)


def test_traffic_merge_all_ok_is_ok() -> None:
    merged = TrafficReport.merge([TrafficReport(5, 5, 1.0), TrafficReport(5, 5, 3.0)])
    assert merged.ok and merged.rtt_ms == pytest.approx(2.0)


def test_traffic_merge_nothing_received() -> None:
    merged = TrafficReport.merge([TrafficReport(3, 0, rtt_ms=0.0), TrafficReport(3, 0)])
    assert merged == TrafficReport(6, 0, 0.0, 0.0, 0.0)


def test_traffic_merge_empty() -> None:
    merged = TrafficReport.merge([])
    assert merged == TrafficReport(0, 0) and not merged.ok

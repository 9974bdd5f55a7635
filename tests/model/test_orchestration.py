"""Tests for mecfed.model.orchestration."""

from __future__ import annotations

import pytest

from mecfed.model import (
    AppInstance,
    InstanceState,
    OverlayEndpoint,
    OverlayReservation,
    Role,
    TrafficCheck,
    TunnelCandidate,
)
from mecfed.v1 import common_pb2
from tests.model.support import invalid

ENDPOINT = OverlayEndpoint("10.0.0.1", "10.9.0.0/24")


def test_instance_state_values_equal_the_proto() -> None:
    for state in InstanceState:
        assert common_pb2.InstanceState.Name(state.value) == f"INSTANCE_STATE_{state.name}"


def test_instance_state_terminal() -> None:
    assert {s for s in InstanceState if s.terminal} == {
        InstanceState.READY,
        InstanceState.FAILED,
        InstanceState.TERMINATED,
    }


def test_role_is_a_string() -> None:
    assert Role("provider") is Role.PROVIDER and str(Role.CONSUMER) == "consumer"
    assert f"{Role.PROVIDER}" == "provider"


def test_app_instance_defaults() -> None:
    inst = AppInstance("i1", "host-a")
    assert inst.state == InstanceState.READY and inst.overlay_ips == ()


# --- overlay reservation -------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 16])
def test_reservation_candidates_inside(n: int) -> None:
    cands = tuple(TunnelCandidate(100 + i, 4789) for i in range(n))
    assert OverlayReservation(ENDPOINT, cands).candidates == cands


@pytest.mark.parametrize("n", [0, 17])
def test_reservation_candidates_outside(n: int) -> None:
    with invalid("candidates", f"has {n} entries; it must have 1..16"):
        OverlayReservation(ENDPOINT, tuple(TunnelCandidate(100 + i, 4789) for i in range(n)))


def test_reservation_duplicate_candidates() -> None:
    with invalid("candidates", "twice"):
        OverlayReservation(ENDPOINT, (TunnelCandidate(5, 4789), TunnelCandidate(5, 4789)))


# --- traffic check -----------------------------------------------------------------


def test_traffic_check_defaults() -> None:
    assert TrafficCheck() == TrafficCheck(count=20, interval_ms=10, timeout_ms=500, echo_port=7)


@pytest.mark.parametrize(
    ("field", "inside", "outside"),
    [
        ("count", (1, 2, 999, 1000), (0, -1, 1001)),
        ("interval_ms", (0, 1, 999, 1000), (-1, 1001)),
        ("timeout_ms", (1, 2, 9_999, 10_000), (0, 10_001)),
        ("echo_port", (1, 2, 65_534, 65_535), (0, 65_536)),
    ],
)
def test_traffic_check_bounds(
    field: str, inside: tuple[int, ...], outside: tuple[int, ...]
) -> None:
    for value in inside:
        assert getattr(TrafficCheck(**{field: value}), field) == value
    for value in outside:
        with invalid(field, f"is {value}; it must be between"):
            TrafficCheck(**{field: value})

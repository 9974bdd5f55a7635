"""Tests for mecfed.model.federation: the federation record and the
messages of its workflow."""

from __future__ import annotations

import time

import pytest

from mecfed import errors
from mecfed.model import (
    AppSpec,
    DeploymentOrder,
    Federation,
    FederationRequest,
    FederationState,
    Installation,
    OfferRequest,
    OverlayEndpoint,
    Problem,
    Requirements,
    ServiceNeed,
    Step,
    TunnelCandidate,
)
from mecfed.model.checks import MAX_PRICE
from mecfed.v1 import common_pb2
from tests.model.support import invalid

APP = AppSpec("nginx")
REQ = Requirements(max_price=1000)
ENDPOINT = OverlayEndpoint("10.0.0.1", "10.9.0.0/24", ("10.9.0.2",))
CANDIDATES = (TunnelCandidate(100, 4789),)


def test_federation_state_values_equal_the_proto() -> None:
    for state in FederationState:
        assert common_pb2.FederationState.Name(state.value) == f"FEDERATION_STATE_{state.name}"


def test_federation_state_terminal() -> None:
    assert {s for s in FederationState if s.terminal} == {
        FederationState.ESTABLISHED,
        FederationState.DEGRADED,
        FederationState.FAILED,
        FederationState.TERMINATED,
    }
    assert {s for s in FederationState if s.live} == {
        FederationState.ESTABLISHED,
        FederationState.DEGRADED,
    }


# --- requirements ----------------------------------------------------------------


def test_requirements_defaults() -> None:
    assert REQ.offers_to_wait_for == 1 and REQ.offer_timeout_ms == 3000


@pytest.mark.parametrize("price", [1, MAX_PRICE])
def test_requirements_price_inside(price: int) -> None:
    assert Requirements(price).max_price == price


def test_requirements_price_outside() -> None:
    with invalid("max_price", "must be greater than 0"):
        Requirements(0)
    with invalid("max_price", "at most"):
        Requirements(MAX_PRICE + 1)


@pytest.mark.parametrize(
    ("field", "inside", "outside"),
    [
        ("offers_to_wait_for", (1, 2, 63, 64), (0, -1, 65)),
        ("offer_timeout_ms", (1, 2, 599_999, 600_000), (0, 600_001)),
    ],
)
def test_requirements_bounds(field: str, inside: tuple[int, ...], outside: tuple[int, ...]) -> None:
    for value in inside:
        assert getattr(Requirements(1, **{field: value}), field) == value
    for value in outside:
        with invalid(field, f"is {value}; it must be between"):
            Requirements(1, **{field: value})


# --- requests and orders -------------------------------------------------------------


def test_federation_request() -> None:
    req = FederationRequest("svc", APP, REQ)
    assert req.request_id == ""
    assert FederationRequest("svc", APP, REQ, request_id="req-1").request_id == "req-1"
    with invalid("service_name"):
        FederationRequest("Svc", APP, REQ)
    with invalid("service_name", "is required"):
        FederationRequest("", APP, REQ)
    with invalid("request_id", "is not a valid id"):
        FederationRequest("svc", APP, REQ, request_id="a b")
    with invalid("request_id"):
        FederationRequest("svc", APP, REQ, request_id="r" * 65)


def test_service_need() -> None:
    ServiceNeed("fed-1", "consumer", APP, REQ)
    with invalid("federation_id", "is required"):
        ServiceNeed("", "consumer", APP, REQ)
    with invalid("federation_id"):
        ServiceNeed("-fed", "consumer", APP, REQ)


def test_offer_request() -> None:
    OfferRequest("fed-1", APP, 1)
    with invalid("federation_id"):
        OfferRequest("", APP, 1)
    with invalid("max_price"):
        OfferRequest("fed-1", APP, 0)
    with invalid("max_price"):
        OfferRequest("fed-1", APP, MAX_PRICE + 1)


def test_deployment_order() -> None:
    order = DeploymentOrder("fed-1", "consumer", APP, ENDPOINT, CANDIDATES)
    assert order.candidates == CANDIDATES
    with invalid("federation_id"):
        DeploymentOrder("", "consumer", APP, ENDPOINT, CANDIDATES)
    with invalid("candidates", "has 0 entries"):
        DeploymentOrder("fed-1", "consumer", APP, ENDPOINT, ())
    with invalid("candidates", "twice"):
        DeploymentOrder("fed-1", "consumer", APP, ENDPOINT, CANDIDATES * 2)
    many = tuple(TunnelCandidate(i, 4789) for i in range(1, 18))
    with invalid("candidates", "has 17 entries"):
        DeploymentOrder("fed-1", "consumer", APP, ENDPOINT, many)


@pytest.mark.parametrize("offer_id", ["o", "x" * 128, "0xabc:17", "offer with spaces"])
def test_installation_offer_id_inside(offer_id: str) -> None:
    assert Installation(offer_id, "fed-1", ENDPOINT, CANDIDATES).offer_id == offer_id


@pytest.mark.parametrize("offer_id", ["", "x" * 129, "o\n", "\x00"])
def test_installation_offer_id_outside(offer_id: str) -> None:
    with invalid("offer_id", "is required"):
        Installation(offer_id, "fed-1", ENDPOINT, CANDIDATES)


def test_installation_other_fields() -> None:
    assert Installation("o", "fed-1", ENDPOINT, CANDIDATES, b"s" * 256).consumer_signature
    with invalid("consumer_signature", "longer than 256 bytes"):
        Installation("o", "fed-1", ENDPOINT, CANDIDATES, b"s" * 257)
    with invalid("federation_id"):
        Installation("o", "", ENDPOINT, CANDIDATES)
    with invalid("candidates"):
        Installation("o", "fed-1", ENDPOINT, ())


# --- problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "title", "status"),
    [
        (errors.InvalidArgument.field("x", "is bad"), "InvalidArgument", 400),
        (errors.NotFound("no such federation"), "NotFound", 404),
        (errors.AlreadyExists("dup"), "AlreadyExists", 409),
        (errors.FailedPrecondition("expired"), "FailedPrecondition", 412),
        (errors.Aborted("given up"), "Aborted", 409),
        (errors.DeploymentFailed("no containers"), "DeploymentFailed", 409),
        (errors.PermissionDenied("no"), "PermissionDenied", 403),
        (errors.Unauthenticated("who"), "Unauthenticated", 401),
        (errors.ResourceExhausted("full"), "ResourceExhausted", 429),
        (errors.Unavailable("down"), "Unavailable", 503),
        (errors.DeadlineExceeded("slow"), "DeadlineExceeded", 504),
        (errors.Cancelled("bye"), "Cancelled", 499),
        (errors.Internal("bug"), "Internal", 500),
    ],
)
def test_problem_of_domain_errors(exc: errors.MecfedError, title: str, status: int) -> None:
    assert Problem.of(exc) == Problem(title, status, exc.message)


@pytest.mark.parametrize("exc", [RuntimeError("secret /etc/path"), KeyError("k"), ValueError()])
def test_problem_of_other_errors_hides_details(exc: BaseException) -> None:
    problem = Problem.of(exc)
    assert (problem.title, problem.status) == ("Internal", 500)
    assert "secret" not in problem.detail and "log" in problem.detail


# --- records -----------------------------------------------------------------------------


def test_step_seconds() -> None:
    assert Step("deploy", 10.0, 12.5).seconds == 2.5


def test_federation_evolve_makes_a_new_version() -> None:
    fed = Federation("fed-1", "svc", APP, REQ, "consumer", "direct", updated_at=1.0)
    assert fed.state == FederationState.REQUESTED and fed.offers == () and fed.error is None
    before = time.time()
    nxt = fed.evolve(state=FederationState.COLLECTING_OFFERS, price=7)
    assert nxt is not fed and fed.state == FederationState.REQUESTED
    assert nxt.state == FederationState.COLLECTING_OFFERS and nxt.price == 7
    assert nxt.updated_at >= before and nxt.created_at == fed.created_at

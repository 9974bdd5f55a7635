"""Test doubles of the MEF's neighbours: the local MEO, an Mff transport and
a clock. Unit tests of the workflows use them alone; the conformance suite
uses FakeOrchestrator behind real MEF servers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from mecfed.errors import DeploymentFailed, NotFound, Unavailable
from mecfed.model import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    Federation,
    Offer,
    OverlayEndpoint,
    OverlayReservation,
    Role,
    ServiceNeed,
    ServiceStatus,
    TrafficCheck,
    TrafficReport,
    TunnelCandidate,
)
from mef.transport.base import Capabilities, Fallback, ProviderHandler
from mef.transport.direct import TlsGate


class FakeClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeOrchestrator:
    """Records what the workflow asked of its MEO; failures on demand."""

    system_id: str
    underlay_ip: str
    apps: set[str] = field(default_factory=lambda: {"svc"})
    fail_deploy: bool = False
    deploy_delay: float = 0.0
    lose_traffic: bool = False
    deployed: dict[str, AppSpec] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    reserved: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)
    checks: list[TrafficCheck] = field(default_factory=list)
    # Added for issue 10 (defaults keep the old behaviour).
    break_watch: bool = False
    require_delay: float = 0.0
    watches: list[str] = field(default_factory=list)
    # Blocks deploy/verify steps until set (a federation held mid-flight).
    hold: asyncio.Event | None = None

    async def require_app(self, name: str) -> None:
        if self.require_delay:
            await asyncio.sleep(self.require_delay)  # as a real MEO round trip
        if name not in self.apps:
            raise NotFound(f"app {name!r} not found")

    async def reserve_overlay(self, federation_id: str, candidates: int) -> OverlayReservation:
        self.reserved.add(federation_id)
        return OverlayReservation(
            OverlayEndpoint(self.underlay_ip, "172.30.1.0/24"),
            tuple(TunnelCandidate(5000 + i, 4789) for i in range(candidates)),
        )

    async def deploy_federated(self, order: DeploymentOrder) -> OverlayEndpoint:
        await asyncio.sleep(self.deploy_delay)
        if self.fail_deploy:
            raise DeploymentFailed("image pull failed (forced by the test)")
        self.deployed[order.federation_id] = order.app
        return dataclasses.replace(
            order.consumer_endpoint,
            underlay_ip=self.underlay_ip,
            app_ips=("172.30.1.129",),
        ).with_tunnel(order.candidates[0])

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint:
        self.connected.add(federation_id)
        return OverlayEndpoint(
            self.underlay_ip,
            provider_endpoint.subnet,
            ("172.30.1.1",),
            provider_endpoint.vni,
            provider_endpoint.udp_port,
        )

    async def verify_traffic(self, federation_id: str, check: TrafficCheck) -> TrafficReport:
        if self.hold is not None:
            await self.hold.wait()
        self.checks.append(check)
        received = check.count // 2 if self.lose_traffic else check.count
        return TrafficReport(check.count, received, 0.2, 0.4)

    async def list_services(self) -> list[ServiceStatus]:
        ids = self.deployed.keys() | self.connected | self.reserved
        return [ServiceStatus(fid, Role.CONSUMER) for fid in sorted(ids)]

    async def watch_traffic(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        self.watches.append(federation_id)
        while federation_id in self.connected:
            if self.break_watch:
                raise Unavailable("local MEO WatchTraffic: stream broke (forced by the test)")
            received = check.count // 2 if self.lose_traffic else check.count
            yield TrafficReport(check.count, received, 0.2, 0.4, measured_at=time.time())
            await asyncio.sleep(period_ms / 1000)

    async def release(self, federation_id: str, consumer_id: str = "") -> None:
        self.released.append(federation_id)
        self.deployed.pop(federation_id, None)
        self.connected.discard(federation_id)
        self.reserved.discard(federation_id)


@dataclass
class ScriptedProvider:
    """One provider as a fake transport sees it."""

    system_id: str
    price: int
    fails: bool = False
    endpoint_ip: str = "10.213.0.50"
    # Goes silent during the deployment (the transport gives up: Unavailable).
    dies: bool = False


class FakeTransport:
    """An in-memory Mff transport with scripted providers. ``fallback``
    chooses which capability it announces; with MARKET it plays a market
    that re-awards to the next cheapest provider."""

    name = "fake"

    def __init__(
        self, providers: Sequence[ScriptedProvider], fallback: Fallback = Fallback.NEXT_OFFER
    ) -> None:
        self.providers = {p.system_id: p for p in providers}
        self.capabilities = Capabilities(offer_grace=0.0, fallback=fallback)
        self.gate = TlsGate()
        self.awards: list[str] = []
        self.deploys: list[str] = []
        self.terminated: list[str] = []
        self.solicited: list[ServiceNeed] = []
        # Added for issue 10 (defaults keep the old behaviour): terminate
        # raises Unavailable while set; every call, acknowledged or not, is in
        # ``terminate_calls`` as (federation id, provider id).
        self.unreachable = False
        self.terminate_calls: list[tuple[str, str]] = []
        self.established_calls: list[str] = []
        # Blocks deploy() until set.
        self.hold: asyncio.Event | None = None

    async def start(self, provider: ProviderHandler, deployments: object, mff: str) -> None:
        return None

    async def close(self) -> None:
        return None

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        self.solicited.append(need)
        for p in self.providers.values():
            await asyncio.sleep(0)
            yield Offer(p.system_id, p.price, f"ref-{p.system_id}", valid_until=2e9)

    async def award(
        self, need: ServiceNeed, ranked: Sequence[Offer], failed: Sequence[Offer]
    ) -> Offer | None:
        if self.capabilities.fallback == Fallback.MARKET:
            left = sorted(
                (
                    p
                    for p in self.providers.values()
                    if p.system_id not in {f.provider_id for f in failed}
                ),
                key=lambda p: p.price,
            )
            offer = (
                Offer(left[0].system_id, left[0].price, f"market-{left[0].system_id}", 2e9)
                if left
                else None
            )
        else:
            offer = next((o for o in ranked if o not in failed), None)
        if offer is not None:
            self.awards.append(offer.provider_id)
        return offer

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        self.deploys.append(offer.provider_id)
        p = self.providers[offer.provider_id]
        if self.hold is not None:
            await self.hold.wait()
        if p.dies:
            raise Unavailable(f"{p.system_id} went silent while deploying (scripted)")
        if p.fails:
            raise DeploymentFailed(f"{p.system_id} could not deploy: no room (scripted)")
        endpoint = dataclasses.replace(
            order.consumer_endpoint, underlay_ip=p.endpoint_ip, app_ips=("172.30.1.129",)
        ).with_tunnel(order.candidates[0])
        return DeploymentResult(f"{p.system_id}/inst", endpoint)

    async def reconcile(self, live_federation_ids: set[str]) -> None:
        return None

    async def established(self, federation: Federation) -> None:
        self.established_calls.append(federation.federation_id)

    def health(self) -> str | None:
        return None

    async def terminate(self, federation: Federation) -> None:
        self.terminate_calls.append((federation.federation_id, federation.provider_id))
        if self.unreachable:
            raise Unavailable(f"RemoveApp at {federation.provider_id}: unreachable (scripted)")
        self.terminated.append(federation.federation_id)


@dataclass
class ProviderMeo:
    """A provider's MEO as the provider workflow sees it: services keyed by
    (consumer, federation), a deployment that can be held mid-way
    (``hold``), rejected at once (``fail``), and a record of every release
    and cancelled deployment. Resources are made only when a deployment
    finishes; a cancelled one leaves nothing (as the real MEO's roll-back)."""

    underlay_ip: str = "10.213.0.20"
    fail: bool = False
    hold: asyncio.Event | None = None
    unavailable: bool = False
    services: dict[tuple[str, str], AppSpec] = field(default_factory=dict)
    started: list[tuple[str, str]] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)
    orders: list[DeploymentOrder] = field(default_factory=list)

    async def deploy_federated(self, order: DeploymentOrder) -> OverlayEndpoint:
        key = (order.consumer_id, order.federation_id)
        self.started.append(key)
        self.orders.append(order)
        if self.fail and self.hold is None:
            # Refused before the first await: the fastest failure there is.
            raise DeploymentFailed("image pull failed (forced by the test)")
        try:
            if self.hold is not None:
                await self.hold.wait()
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        if self.fail:
            raise DeploymentFailed("image pull failed (forced by the test)")
        self.services[key] = order.app
        return dataclasses.replace(
            order.consumer_endpoint, underlay_ip=self.underlay_ip, app_ips=("172.30.1.129",)
        ).with_tunnel(order.candidates[0])

    async def release(self, federation_id: str, consumer_id: str = "") -> None:
        if self.unavailable:
            from mecfed.errors import Unavailable

            raise Unavailable("local MEO ReleaseService: connection refused (test)")
        self.released.append((consumer_id, federation_id))
        self.services.pop((consumer_id, federation_id), None)

    async def list_services(self) -> list[ServiceStatus]:
        if self.unavailable:
            from mecfed.errors import Unavailable

            raise Unavailable("local MEO ListServices: connection refused (test)")
        return [
            ServiceStatus(fid, Role.PROVIDER, consumer_id=cid) for cid, fid in sorted(self.services)
        ]

    async def require_app(self, name: str) -> None:
        return None

    async def reserve_overlay(self, federation_id: str, candidates: int) -> OverlayReservation:
        raise AssertionError("a provider does not reserve overlays")

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint:
        raise AssertionError("a provider does not connect overlays")

    async def verify_traffic(self, federation_id: str, check: TrafficCheck) -> TrafficReport:
        raise AssertionError("a provider does not verify traffic")

    async def watch_traffic(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        raise AssertionError("a provider does not watch traffic")
        yield  # an async generator

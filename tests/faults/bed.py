"""A real testbed to inject faults into: MEF and MEO processes in network
namespaces, Docker containers, VXLAN links and (chain backend) an anvil node.

:class:`FaultBed` kills processes (SIGKILL, no chance to clean up), brings
them back (the testbed's ``up`` restarts exactly the dead ones and waits for
their health), cuts underlay links, and reports what is left behind: the
containers, federation links and MEO records of every federation, the
consumer's non-final records and (chain) the escrow still locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import docker
import grpc
from pyroute2 import IPRoute

from mecfed.config import SystemConfig
from mecfed.rpc import security
from mecfed.testbed import Testbed
from mecfed.testbed.state import SystemState
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as meo_pb
from mecfed.v1 import orchestrator_pb2_grpc as meo_grpc
from meo.network import LINK_PREFIXES

IMAGE = "mecfed/echo:1"
S = common_pb2  # FederationState values
FINAL = {S.FEDERATION_STATE_FAILED, S.FEDERATION_STATE_TERMINATED}
LIVE = {S.FEDERATION_STATE_ESTABLISHED, S.FEDERATION_STATE_DEGRADED}
SETTLED = FINAL | LIVE


def state_name(value: int) -> str:
    return common_pb2.FederationState.Name(value).removeprefix("FEDERATION_STATE_")


@dataclass
class FaultBed:
    testbed: Testbed
    backend: str
    n: int
    up_args: dict[str, Any]
    systems: list[SystemState] = field(default_factory=list)
    configs: dict[str, SystemConfig] = field(default_factory=dict)
    service: str = ""

    # --- bring-up and processes ----------------------------------------------

    async def up(self) -> None:
        state = await self.testbed.up(self.n, backend=self.backend, **self.up_args)
        self.systems = state.systems
        self.configs = {s.system_id: SystemConfig.load(s.config_path) for s in state.systems}

    @property
    def consumer(self) -> SystemConfig:
        return self.configs[self.systems[0].system_id]

    @property
    def providers(self) -> list[SystemConfig]:
        return [self.configs[s.system_id] for s in self.systems if s.role == "provider"]

    def pid(self, system_id: str, component: str) -> int:
        state = self.testbed.load_state()
        assert state is not None
        return state.system(system_id).pids[component]

    def kill(self, system_id: str, component: str) -> None:
        """SIGKILL: the process gets no chance to release anything."""
        pid = self.pid(system_id, component)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
        raise AssertionError(f"{component} of {system_id} (pid {pid}) survived SIGKILL")

    async def revive(self) -> None:
        """Restarts every dead process and waits until all are healthy."""
        await self.up()

    # --- Mfm -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def mfm(self) -> AsyncIterator[federator_pb2_grpc.MecFederatorStub]:
        c = self.consumer
        async with security.secure_channel(c.mef_listen, c.tls, c.system_id) as channel:
            yield federator_pb2_grpc.MecFederatorStub(channel)

    @contextlib.asynccontextmanager
    async def meo(self, config: SystemConfig) -> AsyncIterator[meo_grpc.MecOrchestratorStub]:
        async with security.secure_channel(
            config.meo_listen, config.tls, config.system_id
        ) as channel:
            yield meo_grpc.MecOrchestratorStub(channel)

    async def ensure_service(self) -> str:
        self.service = f"svc-{self.consumer.system_id}"
        async with self.meo(self.consumer) as meo:
            try:
                await meo.GetApp(meo_pb.GetAppRequest(name=self.service), timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                await meo.CreateApp(
                    meo_pb.CreateAppRequest(
                        name=self.service, spec=common_pb2.AppSpec(image=IMAGE, replicas=1)
                    ),
                    timeout=60,
                )
        return self.service

    def federation_request(self, **requirements: Any) -> federator_pb2.RequestFederationRequest:
        req = {"max_price": 10**9, "offer_timeout_ms": 3000, **requirements}
        return federator_pb2.RequestFederationRequest(
            service_name=self.service,
            app=common_pb2.AppSpec(image=IMAGE, replicas=1),
            requirements=common_pb2.Requirements(**req),
        )

    async def request(self, **requirements: Any) -> str:
        async with self.mfm() as mfm:
            fed = await mfm.RequestFederation(self.federation_request(**requirements), timeout=30)
        return fed.federation_id

    async def get(self, federation_id: str) -> federator_pb2.Federation:
        async with self.mfm() as mfm:
            return await mfm.GetFederation(
                federator_pb2.GetFederationRequest(federation_id=federation_id), timeout=30
            )

    async def wait_for(
        self,
        federation_id: str,
        states: Iterable[int],
        timeout: float = 90,
        *,
        passed: bool = True,
    ) -> federator_pb2.Federation:
        """The first version of the federation in one of ``states`` (or a
        final state, which ends the wait too); with ``passed``, also one
        whose history shows it went through one of them."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        last: federator_pb2.Federation | None = None
        while time.monotonic() < deadline:
            try:
                async with self.mfm() as mfm:
                    stream = mfm.WatchFederation(
                        federator_pb2.WatchFederationRequest(
                            federation_id=federation_id, follow_after_terminal=True
                        ),
                        timeout=max(deadline - time.monotonic(), 0.1),
                    )
                    async for fed in stream:
                        last = fed
                        # A state may be over before the watch began: its
                        # history still says it was reached.
                        went = {h.state for h in fed.history} if passed else set()
                        if fed.state in wanted or fed.state in FINAL or went & wanted:
                            return fed
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    break
                await asyncio.sleep(0.2)  # the MEF is restarting
        raise AssertionError(
            f"{federation_id} never reached {sorted(map(state_name, wanted))}; "
            f"last: {state_name(last.state) if last else None}"
        )

    async def settle(self, federation_id: str, timeout: float = 120) -> federator_pb2.Federation:
        return await self.wait_for(federation_id, SETTLED, timeout)

    async def terminate(self, federation_id: str, timeout: float = 120) -> federator_pb2.Federation:
        async with self.mfm() as mfm:
            await mfm.TerminateFederation(
                federator_pb2.TerminateFederationRequest(federation_id=federation_id), timeout=60
            )
        fed = await self.wait_for(federation_id, FINAL, timeout)
        return fed

    async def terminate_all(self) -> None:
        async with self.mfm() as mfm:
            listed = await mfm.ListFederations(federator_pb2.ListFederationsRequest(), timeout=30)
        for fed in listed.federations:
            if fed.state != S.FEDERATION_STATE_TERMINATED:
                await self.terminate(fed.federation_id)

    # --- faults on the underlay -------------------------------------------------

    async def set_underlay(self, system_id: str, up: bool) -> None:
        await asyncio.to_thread(self._set_underlay, system_id, up)

    def _set_underlay(self, system_id: str, up: bool) -> None:
        """Cuts (or restores) a system's port on the underlay bridge: its
        Mff, Mfm-to-chain and data-plane traffic all stop."""
        state = self.testbed.load_state()
        assert state is not None
        index = state.system(system_id).index
        port = self.testbed.underlay.system_port(index)
        with IPRoute(netns=self.testbed.underlay.namespace) as ipr:
            (idx,) = ipr.link_lookup(ifname=port)
            ipr.link("set", index=idx, state="up" if up else "down")

    # --- what is left behind ------------------------------------------------------

    async def leftovers(self) -> dict[str, Any]:
        """Everything a federation made that still exists anywhere. Empty
        when every federation is released: no federation containers, no
        federation links, no MEO records, no unsettled consumer record."""
        found: dict[str, Any] = {}
        client = docker.from_env()
        containers = await asyncio.to_thread(
            client.containers.list,
            all=True,
            filters={"label": [f"mecfed.testbed={self.testbed.name}", "mecfed.federation"]},
        )
        if containers:
            found["containers"] = sorted(c.name for c in containers)
        for s in self.systems:
            links = await asyncio.to_thread(federation_links, s.namespace)
            if links:
                found[f"links@{s.system_id}"] = links
            async with self.meo(self.configs[s.system_id]) as meo:
                services = await meo.ListServices(meo_pb.ListServicesRequest(), timeout=30)
            if services.services:
                found[f"meo@{s.system_id}"] = sorted(
                    f"{x.consumer_id or '-'}/{x.federation_id}" for x in services.services
                )
        async with self.mfm() as mfm:
            listed = await mfm.ListFederations(federator_pb2.ListFederationsRequest(), timeout=30)
        unsettled = [
            f"{f.federation_id}:{state_name(f.state)}"
            for f in listed.federations
            if f.state not in FINAL
        ]
        if unsettled:
            found["records"] = unsettled
        return found

    async def assert_clean(self, timeout: float = 30) -> None:
        """Waits (bounded) for every release to land, then asserts nothing is left."""
        deadline = time.monotonic() + timeout
        while True:
            left = await self.leftovers()
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert left == {}, left

    async def assert_healthy_federation(self) -> None:
        """The beds still work: capacity and links were given back."""
        fid = await self.request()
        fed = await self.settle(fid)
        assert fed.state == S.FEDERATION_STATE_ESTABLISHED, fed.error
        await self.terminate(fid)


def federation_links(namespace: str) -> list[str]:
    with IPRoute(netns=namespace) as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(tuple(LINK_PREFIXES)))

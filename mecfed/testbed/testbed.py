"""N MEC systems on one machine: plan, then PKI, network, chain, configs and
MEF/MEO processes; and the way back.

``Testbed.up(n)`` builds everything idempotently; ``Testbed.down()`` removes
everything, also after the bring-up was killed half-way. For that the state
file (``<state_dir>/testbed.json``) names each namespace and link *before* it
is created, and ``down()`` does not rely on it alone: it also removes every
namespace and root-ns link named with the testbed prefix, every process tagged
``MECFED_TESTBED=<name>`` or living in one of those namespaces, and every
Docker container and network labelled ``mecfed.testbed=<name>``.

Contract with the MEO: processes get ``MECFED_TESTBED=<name>`` (and
``MECFED_SYSTEM_ID``, ``MECFED_ROLE``, ``MECFED_IMAGE``) in their
environment; the MEO should label its containers (and Docker networks)
``mecfed.testbed=$MECFED_TESTBED`` next to ``mecfed.system`` so that
``down()`` finds them even if the MEO died. A ``netns`` VIM records its
namespaces under ``<run_dir>/meo/netns-vim``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mecfed import tracing
from mecfed.testbed import netns
from mecfed.testbed.containers import remove_containers
from mecfed.testbed.pki import Pki
from mecfed.testbed.plan import COMPONENTS, Params, Plan, Underlay, check_name, make_plan
from mecfed.testbed.state import DOWN, STARTING, UP, StateFile, SystemState, TestbedState
from mecfed.testbed.supervisor import Process, Supervisor, wait_all_healthy

log = logging.getLogger(__name__)

DEFAULT_STATE_ROOT = Path("/var/lib/mecfed/testbed")

# (component, config path) -> argv. Tests substitute a stand-in server.
ProcessCommand = Callable[[str, Path], Sequence[str]]


def default_command(component: str, config_path: Path) -> list[str]:
    return [sys.executable, "-m", component, "--config", str(config_path)]


class Testbed:
    """A set of MEC systems in network namespaces on this machine."""

    __test__ = False

    def __init__(
        self,
        name: str = "mecfed",
        state_dir: Path | None = None,
        subnet: str = "10.213.0.0/16",
        base_port: int = 50051,
        *,
        command: ProcessCommand = default_command,
        health_timeout: float = 120.0,
        stop_timeout: float = 5.0,
    ) -> None:
        check_name(name)
        self.name = name
        self.prefix = f"{name}-"
        # One directory per testbed name, so testbeds never share state.
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_ROOT / name
        self.underlay = Underlay.of(self.prefix, subnet)
        self.base_port = base_port
        self.command = command
        self.health_timeout = health_timeout
        # The plan's TLS paths (plan.pki_dir) are this CA's.
        self.pki = Pki(self.state_dir / "pki", ca_name=f"{name} testbed CA")
        self.supervisor = Supervisor(name, stop_timeout=stop_timeout)
        self._file = StateFile(self.state_dir / "testbed.json")

    @property
    def state_path(self) -> Path:
        return self._file.path

    def load_state(self) -> TestbedState | None:
        return self._file.load()

    # -- bring-up -----------------------------------------------------------

    async def up(
        self,
        n: int,
        *,
        backend: str = "direct",
        vim: str = "docker",
        consumers: int | None = None,
        image: str = "mecfed/echo:1",
        offer_policies: Mapping[str, dict[str, Any]] | None = None,
        seed: int = 0,
        block_time: float | None = 1.0,
        otlp_endpoint: str | None = None,
        warm_pool: int | None = None,
    ) -> TestbedState:
        """Brings up ``n`` MEC systems and waits until every MEF and MEO
        answers the gRPC health check.

        ``offer_policies`` maps a system id or a role ("provider",
        "consumer") to the protobuf-JSON OfferPolicy of those systems; a
        system id wins over its role. Without one, consumers make no offers
        and providers get tariff policies dealt from ``seed``. ``warm_pool``
        is the number of started spare app containers each provider's MEO
        keeps (Docker VIM; default: twice a provider's fair share of the
        consumers). Calling ``up`` again with the same arguments keeps what
        runs; with different ones it rebuilds.
        """
        params = Params.build(
            n,
            backend=backend,
            vim=vim,
            consumers=consumers,
            image=image,
            offer_policies=offer_policies,
            seed=seed,
            block_time=block_time,
            otlp_endpoint=tracing.resolve_endpoint(otlp_endpoint) or "",
            warm_pool=warm_pool,
            base_port=self.base_port,
        )
        plan = make_plan(self.name, self.state_dir, self.underlay, params)
        state = await self._fresh_or_reused(plan)

        def save() -> None:
            self._file.save(state)

        save()  # before anything is created
        await asyncio.to_thread(netns.check_subnet_free, self.underlay)
        await asyncio.to_thread(self._issue_identities, plan)
        old = {s.system_id: s.pids for s in state.systems}
        state.systems = [SystemState.of(s, old.get(s.system_id)) for s in plan.systems]
        save()

        def record(kind: str, name: str) -> None:
            if state.record(kind, name):
                save()

        await asyncio.to_thread(
            netns.provision, self.underlay, [s.index for s in plan.systems], record
        )
        if params.backend == "chain":
            # Only the chain backend loads the chain client.
            from mecfed.testbed.chain import ensure_chain

            await ensure_chain(plan, state.chain, self.supervisor, save)
            save()
        for system in plan.systems:
            plan.system_config(system, contract=state.chain.get("contract")).save(
                system.config_path
            )

        deadline = time.monotonic() + self.health_timeout
        checks = []
        for system, sys_state in zip(plan.systems, state.systems, strict=True):
            for component in COMPONENTS:
                proc = self._ensure_process(plan, sys_state, component)
                target = system.mef_listen if component == "mef" else system.meo_listen
                checks.append((target, system.tls, system.system_id, proc))
        save()
        # On failure the state stays STARTING; down() clears the partial testbed.
        await wait_all_healthy(checks, deadline=deadline)
        state.status = UP
        save()
        log.info("testbed %s up: %d systems", self.name, n)
        return state

    async def _fresh_or_reused(self, plan: Plan) -> TestbedState:
        """Reuses only a complete testbed with the same parameters; anything
        else (a crashed bring-up, a lost state file) is cleared first, so no
        unrecorded process of an earlier attempt can hold a port."""
        state = self.load_state()
        if (
            state is not None
            and state.status == UP
            and state.params == plan.params.as_dict()
            and state.subnet == str(self.underlay.subnet)
        ):
            return state
        await self.down()
        return TestbedState(
            name=self.name,
            prefix=self.prefix,
            subnet=str(self.underlay.subnet),
            gateway=str(self.underlay.gateway),
            status=STARTING,
            params=plan.params.as_dict(),
        )

    def _issue_identities(self, plan: Plan) -> None:
        """One certificate per system (kept when still valid) and its directory."""
        for system in plan.systems:
            system.run_dir.mkdir(parents=True, exist_ok=True)
            self.pki.issue(system.system_id, [system.underlay_ip])

    def _ensure_process(self, plan: Plan, system: SystemState, component: str) -> Process:
        run_dir = Path(system.run_dir)
        known = self.supervisor.running(
            component, system.pids.get(component), run_dir / f"{component}.log"
        )
        if known is not None:
            return known
        proc = self.supervisor.start(
            component,
            self.command(component, Path(system.config_path)),
            namespace=system.namespace,
            run_dir=run_dir,
            env={
                "MECFED_SYSTEM_ID": system.system_id,
                "MECFED_ROLE": system.role,
                "MECFED_IMAGE": plan.params.image,
            },
        )
        system.pids[component] = proc.pid
        return proc

    # -- teardown -----------------------------------------------------------

    async def down(self) -> None:
        """Removes processes, containers, namespaces and links; idempotent and
        independent of how complete the state file is. Processes get SIGTERM
        (MEF and MEO shut down gracefully) and SIGKILL after a bound."""
        state = self.load_state()
        pids: set[int] = set()
        if state is not None:
            pids |= self.supervisor.ours(pid for s in state.systems for pid in s.pids.values())
        pids |= set(await asyncio.to_thread(self.supervisor.tagged))
        in_ns = await asyncio.to_thread(netns.namespace_pids, self.prefix)
        pids |= {pid for ns_pids in in_ns.values() for pid in ns_pids}
        await self.supervisor.stop_all(pids)
        await asyncio.to_thread(remove_containers, self.name)
        if state is not None:
            for s in state.systems:
                vim_dir = Path(s.run_dir) / "meo" / "netns-vim"
                await asyncio.to_thread(netns.remove_vim_namespaces, vim_dir)
        await asyncio.to_thread(netns.remove_all, self.prefix)
        if state is not None:
            state.status = DOWN
            state.namespaces, state.links = [], []
            for s in state.systems:
                s.pids = {}
                # The MEO's records describe containers and links that are
                # gone now; a later bring-up must start from a clean slate.
                shutil.rmtree(Path(s.run_dir) / "meo", ignore_errors=True)
            self._file.save(state)
        log.info("testbed %s down", self.name)


__all__ = ["DEFAULT_STATE_ROOT", "ProcessCommand", "Testbed", "default_command"]

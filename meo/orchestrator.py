"""The MEO: one object composing its parts, for the servicer (meo.server),
the tests and anything that runs a MEO in-process.

* :mod:`meo.apps`       app lifecycle and instance creation (all or nothing)
* :mod:`meo.overlay`    both ends of a federation's overlay
* :mod:`meo.liveness`   the consumer's traffic check and runtime liveness
* :mod:`meo.state`      what it made and what it is about to make (intents),
                        persisted in sqlite; its installation id
* :mod:`meo.recovery`   reconcile after a restart, cleanup after a crash
* :mod:`meo.placement`  which host a new instance runs on
* :mod:`meo.alloc`      VNIs, VXLAN ports and overlay subnets

It takes and returns :mod:`mecfed.model` values, which have validated
themselves; plain names and ids come checked from the wire
(:mod:`mecfed.wire.orchestrator`). Errors are :mod:`mecfed.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from opentelemetry.trace import Tracer

from mecfed.config import SystemConfig
from mecfed.errors import InvalidArgument
from mecfed.model import (
    App,
    AppInstance,
    AppSpec,
    DeploymentOrder,
    OverlayEndpoint,
    OverlayReservation,
    ServiceStatus,
    TrafficCheck,
    TrafficReport,
)
from mecfed.model.checks import require_underlay_ip
from mecfed.storage import Database
from mecfed.tracing import tracer as make_tracer
from meo.alloc import OverlayAllocator
from meo.apps import Apps
from meo.liveness import Liveness
from meo.network import NetworkOps
from meo.overlay import Overlays
from meo.placement import HostSelector
from meo.recovery import Recovery
from meo.state import State, open_database
from meo.vim.base import VimDriver


def state_path(config: SystemConfig) -> Path:
    """The MEO's database file in the config's state directory."""
    return Path(config.state_dir) / f"meo-{config.system_id}.db"


class Orchestrator:
    def __init__(
        self,
        config: SystemConfig,
        vims: Mapping[str, VimDriver],
        *,
        net: NetworkOps | None = None,
        state_file: str | Path | None = None,
        db: Database | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """``db`` (or the sqlite file ``state_file``, default
        :func:`state_path`) holds the state and the installation id; a VIM
        scoped to an installation must be scoped to this one."""
        try:
            require_underlay_ip(config.underlay_ip, "underlay_ip")
        except InvalidArgument as exc:
            raise ValueError(f"config of {config.system_id}: {exc.message}") from None
        self.config = config
        self.tracer = tracer or make_tracer(None)
        placement = HostSelector(vims)
        self.vims: Mapping[str, VimDriver] = placement.vims
        net = net or NetworkOps()
        self.state_file = Path(state_file or state_path(config))
        legacy = Path(config.state_dir) / f"meo-{config.system_id}.json"
        self._state = State(db or open_database(self.state_file), config.system_id, legacy)
        self.installation = self._state.installation
        for vim in self.vims.values():
            scope = getattr(vim, "installation", "")
            if scope and scope != self.installation:
                raise ValueError(
                    f"VIM {vim.host} belongs to installation {scope}, not {self.installation}"
                )
        alloc = OverlayAllocator(
            vni_range=config.vni_range,
            port_range=config.vxlan_port_range,
            overlay_pool=config.overlay_pool,
            host_vxlans=net.existing_vxlans,
            reservations=self._state.reservations,
        )
        self._apps = Apps(config.system_id, self._state, placement)
        self._overlays = Overlays(
            config.underlay_ip, self._state, self._apps, alloc, net, self.tracer
        )
        self._liveness = Liveness(self._state, self._apps, self._overlays, self.tracer)
        self._recovery = Recovery(self._state, self._apps, self._overlays, net)

    @property
    def state(self) -> State:
        return self._state

    @property
    def fail_after(self) -> Callable[[str], None] | None:
        """Test hook: called after each instance is started ("instance") and
        after each overlay step ("bridge", "vxlan", "veth0")."""
        return self._overlays.fail_after

    @fail_after.setter
    def fail_after(self, hook: Callable[[str], None] | None) -> None:
        self._overlays.fail_after = hook
        self._apps.fail_after = hook

    # --- apps --------------------------------------------------------------

    async def create_app(self, name: str, spec: AppSpec) -> App:
        return await self._apps.create(name, spec)

    def get_app(self, name: str) -> App:
        return self._apps.get(name)

    def list_apps(self) -> list[App]:
        return self._apps.list()

    async def scale_app(self, name: str, replicas: int) -> App:
        return await self._apps.scale(name, replicas)

    async def delete_app(self, name: str) -> None:
        await self._apps.delete(name)

    # --- federations -------------------------------------------------------

    async def deploy_federated_service(
        self, order: DeploymentOrder
    ) -> tuple[OverlayEndpoint, tuple[AppInstance, ...]]:
        """Provider: the app's replicas and this end of the overlay."""
        return await self._overlays.deploy(order)

    async def reserve_overlay(self, federation_id: str, count: int) -> OverlayReservation:
        """Consumer: ``count`` tunnel candidates and a /24 for a new federation."""
        return await self._overlays.reserve(federation_id, count)

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider: OverlayEndpoint
    ) -> OverlayEndpoint:
        """Consumer: this end of the overlay, joining ``service_name``'s instances."""
        return await self._overlays.connect(federation_id, service_name, provider)

    async def verify_traffic(
        self, federation_id: str, check: TrafficCheck | None = None
    ) -> TrafficReport:
        """Consumer: app-to-app echoes across the overlay."""
        return await self._liveness.verify(federation_id, check or TrafficCheck())

    def watch_traffic(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        """Consumer: one series every ``period_ms`` until the federation is
        released; NotFound if it is not connected."""
        return self._liveness.watch(federation_id, check, period_ms)

    async def release_service(self, federation_id: str, consumer_id: str = "") -> None:
        """Either end: removes everything of the federation (provider side:
        of ``consumer_id``'s), cancelling a deployment of it under way;
        idempotent."""
        await self._overlays.release(federation_id, consumer_id)

    async def service_status(self, federation_id: str, consumer_id: str = "") -> ServiceStatus:
        return await self._overlays.status(federation_id, consumer_id)

    async def list_services(self) -> list[ServiceStatus]:
        """Every federation this host holds resources for, both roles."""
        return await self._overlays.list()

    # --- process lifecycle -------------------------------------------------

    def load(self) -> None:
        """Reads the state a previous run left (restart without cleanup)."""
        self._state.load()

    async def reconcile(self) -> None:
        await self._recovery.reconcile()

    async def warm_up(self) -> None:
        """Prepares the VIMs (warm pools) before the MEO serves."""
        for vim in self.vims.values():
            await vim.fill()

    async def close(self) -> None:
        for vim in self.vims.values():
            await vim.close()

    async def cleanup_all(self) -> None:
        """Removes everything this MEO made, recorded or left by a crash."""
        await self._recovery.cleanup_all()

    def summary(self) -> dict[str, list[str]]:
        """Names of the apps, federations and reservations it holds."""
        return self._state.summary()


__all__ = ["Orchestrator", "state_path"]

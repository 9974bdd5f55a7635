"""The MEO core: app lifecycle and the two ends of a federation's overlay.

Transport independent: the gRPC servicer (meo.server) only maps messages.
Every public method validates its input and raises mecfed.errors exceptions.

Provider flow:  DeployFederatedService (replicas + overlay, all or nothing).
Consumer flow:  ReserveOverlay -> (MEF asks the provider) -> ConnectOverlay
                -> VerifyTraffic.
Both:           ReleaseService (idempotent), GetServiceStatus.

What this MEO owns (apps, federations, reservations) is written to a JSON
file in ``state_dir`` after every change, so :meth:`cleanup_all` can remove
it after a crash; it also sweeps by label and link-name prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.trace import Tracer

from mecfed.config import SystemConfig
from mecfed.errors import (
    AlreadyExists,
    DeploymentFailed,
    FailedPrecondition,
    InvalidArgument,
    MecfedError,
    NotFound,
)
from mecfed.tracing import set_attributes, step_span
from mecfed.tracing import tracer as make_tracer
from mecfed.validation import MAX_REPLICAS, require_name, require_range
from meo import network
from meo.alloc import Candidate, OverlayAllocator, Reservation, consumer_ip, provider_ip
from meo.model import (
    DEFAULT_ECHO_PORT,
    AppRecord,
    AppSpec,
    Endpoint,
    FederationRecord,
    InstanceRecord,
    require_federation_id,
)
from meo.probe import TrafficReport, probe
from meo.vim.base import LABEL_APP, LABEL_FEDERATION, Instance, VimDriver, instance_name

log = logging.getLogger(__name__)

PROVIDER, CONSUMER = "provider", "consumer"
DEFAULT_CANDIDATES = 4


class HostSelector:
    """Picks the host (VIM) for each new instance: the least-loaded one,
    ties broken by name so placement is reproducible."""

    def __init__(self, vims: Mapping[str, VimDriver]) -> None:
        if not vims:
            raise ValueError("at least one VIM host is needed")
        self.vims = dict(vims)

    def pick(self, load: Mapping[str, int]) -> str:
        return min(self.vims, key=lambda h: (load.get(h, 0), h))


@dataclass
class NetworkOps:
    """The host-network operations, injectable so unit tests need no root."""

    setup_overlay: Callable[..., list[str]] = network.setup_overlay
    teardown: Callable[[str], list[str]] = network.teardown
    links_of: Callable[[str], list[str]] = network.links_of
    existing_vxlans: Callable[[], list[network.VxlanInfo]] = network.existing_vxlans
    all_owned_links: Callable[[], list[str]] = network.all_owned_links
    delete_links: Callable[[list[str]], None] = network.delete_links


@dataclass
class _State:
    apps: dict[str, AppRecord] = field(default_factory=dict)
    federations: dict[str, FederationRecord] = field(default_factory=dict)


def _fed_app_name(federation_id: str) -> str:
    # A DNS label derived from the federation id: deterministic and short.
    return f"fed-{hashlib.sha256(federation_id.encode()).hexdigest()[:12]}"


class Orchestrator:
    def __init__(
        self,
        config: SystemConfig,
        vims: Mapping[str, VimDriver],
        *,
        net: NetworkOps | None = None,
        state_file: str | Path | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.tracer = tracer or make_tracer(None)
        self.selector = HostSelector(vims)
        self.vims = self.selector.vims
        self.net = net or NetworkOps()
        self.alloc = OverlayAllocator(
            vni_range=config.vni_range,
            port_range=config.vxlan_port_range,
            overlay_pool=config.overlay_pool,
            host_vxlans=self.net.existing_vxlans,
        )
        self.state_file = Path(
            state_file or Path(config.state_dir) / f"meo-{config.system_id}.json"
        )
        self._state = _State()
        self._locks: dict[str, asyncio.Lock] = {}
        # Test hook: called after each overlay step ("bridge", "vxlan", "veth0").
        self.fail_after: Callable[[str], None] | None = None

    # --- persistence -------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _save(self) -> None:
        data = {
            "system_id": self.config.system_id,
            "apps": [a.to_dict() for a in self._state.apps.values()],
            "federations": [f.to_dict() for f in self._state.federations.values()],
            "reservations": [r.to_dict() for r in self.alloc.reservations.values()],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.state_file)  # atomic: a crash never leaves half a file

    def load(self) -> None:
        """Reads the state a previous run left (restart without cleanup)."""
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        self._state.apps = {a["name"]: AppRecord.from_dict(a) for a in data.get("apps", [])}
        self._state.federations = {
            f["federation_id"]: FederationRecord.from_dict(f) for f in data.get("federations", [])
        }
        self.alloc.reservations = {
            r["federation_id"]: Reservation.from_dict(r) for r in data.get("reservations", [])
        }

    # --- instances ---------------------------------------------------------

    def _load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for app in self._state.apps.values():
            for inst in app.instances:
                load[inst.host] = load.get(inst.host, 0) + 1
        return load

    async def _create_instances(
        self, app: str, spec: AppSpec, count: int, labels: Mapping[str, str]
    ) -> list[tuple[InstanceRecord, Instance]]:
        """Creates ``count`` replicas; all or nothing."""
        made: list[tuple[InstanceRecord, Instance]] = []
        load = self._load()
        try:
            for _ in range(count):
                host = self.selector.pick(load)
                load[host] = load.get(host, 0) + 1
                name = instance_name(self.config.system_id, app, secrets.token_hex(3))
                inst = await self.vims[host].create_instance(
                    name,
                    spec.image,
                    {**labels, LABEL_APP: app},
                    spec.resources,
                    env={"ECHO_PORT": str(spec.echo_port)},
                )
                made.append((InstanceRecord(id=inst.id, host=host), inst))
        except BaseException as exc:
            await self._delete_instances([r for r, _ in made])
            if isinstance(exc, MecfedError):
                raise
            if not isinstance(exc, Exception):
                raise
            raise DeploymentFailed(f"could not start app {app}: {exc}") from exc
        return made

    async def _delete_instances(self, records: list[InstanceRecord]) -> None:
        for rec in records:
            vim = self.vims.get(rec.host)
            if vim is not None:
                await vim.delete_instance(rec.id)

    async def _live(self, rec: InstanceRecord) -> Instance:
        inst = await self.vims[rec.host].get_instance(rec.id)
        if inst is None or not inst.running or not inst.pid:
            raise FailedPrecondition(f"instance {rec.id[:12]} on {rec.host} is not running")
        return inst

    # --- app lifecycle -----------------------------------------------------

    async def create_app(self, name: str, spec: AppSpec) -> AppRecord:
        require_name(name, "name")
        async with self._lock(f"app:{name}"):
            if name in self._state.apps:
                raise AlreadyExists(f"app {name} already exists")
            made = await self._create_instances(name, spec, spec.replicas, {})
            app = AppRecord(name, spec, [r for r, _ in made])
            self._state.apps[name] = app
            self._save()
            return app

    def get_app(self, name: str) -> AppRecord:
        require_name(name, "name")
        app = self._state.apps.get(name)
        if app is None:
            raise NotFound(f"app {name} not found")
        return app

    def list_apps(self) -> list[AppRecord]:
        return sorted(self._state.apps.values(), key=lambda a: a.name)

    async def scale_app(self, name: str, replicas: int) -> AppRecord:
        app = self.get_app(name)
        require_range(replicas, "replicas", 1, MAX_REPLICAS)
        async with self._lock(f"app:{name}"):
            if app.federation_id:
                raise FailedPrecondition(
                    f"app {name} belongs to federation {app.federation_id}; "
                    "its size is fixed by the federation"
                )
            if self._federations_using(name):
                raise FailedPrecondition(
                    f"app {name} is attached to a federation overlay; release it first"
                )
            if replicas > len(app.instances):
                made = await self._create_instances(
                    name, app.spec, replicas - len(app.instances), {}
                )
                app.instances += [r for r, _ in made]
            elif replicas < len(app.instances):
                gone = app.instances[replicas:]
                await self._delete_instances(gone)
                app.instances = app.instances[:replicas]
            self._save()
            return app

    def _federations_using(self, app_name: str) -> list[str]:
        return [
            f.federation_id
            for f in self._state.federations.values()
            if f.role == CONSUMER and f.app_name == app_name and f.connected
        ]

    async def delete_app(self, name: str) -> None:
        app = self.get_app(name)
        async with self._lock(f"app:{name}"):
            if app.federation_id:
                raise FailedPrecondition(
                    f"app {name} belongs to federation {app.federation_id}; use ReleaseService"
                )
            if feds := self._federations_using(name):
                raise FailedPrecondition(f"app {name} is attached to federation(s) {feds}")
            await self._delete_instances(app.instances)
            self._state.apps.pop(name, None)
            self._save()

    # --- provider side -----------------------------------------------------

    async def deploy_federated_service(
        self,
        federation_id: str,
        consumer_id: str,
        spec: AppSpec,
        consumer: Endpoint,
        candidates: list[Candidate],
    ) -> tuple[Endpoint, list[InstanceRecord]]:
        require_federation_id(federation_id)
        async with self._lock(f"fed:{federation_id}"):
            if federation_id in self._state.federations:
                raise AlreadyExists(f"federation {federation_id} is already deployed here")
            chosen = await self.alloc.claim_first_free(federation_id, candidates)
            app_name = _fed_app_name(federation_id)
            records: list[InstanceRecord] = []
            try:
                with step_span(self.tracer, "image", image=spec.image):
                    for vim in self.vims.values():
                        check = getattr(vim, "check_image", None)
                        if check is not None:
                            await check(spec.image)
                with step_span(self.tracer, "containers", image=spec.image, replicas=spec.replicas):
                    made = await self._create_instances(
                        app_name, spec, spec.replicas, {LABEL_FEDERATION: federation_id}
                    )
                records = [r for r, _ in made]
                attachments = []
                for i, (rec, inst) in enumerate(made):
                    ip = provider_ip(consumer.subnet, i)
                    rec.overlay_ips[federation_id] = str(ip.ip)
                    attachments.append(network.Attachment(inst.pid, inst.netns_path, ip))
                links = await asyncio.to_thread(
                    self.net.setup_overlay,
                    federation_id,
                    vni=chosen.vni,
                    port=chosen.port,
                    local_ip=self.config.underlay_ip,
                    remote_ip=consumer.underlay_ip,
                    attachments=attachments,
                    fail_after=self.fail_after,
                    tracer=self.tracer,
                )
            except BaseException:
                await self._delete_instances(records)
                await asyncio.to_thread(self.net.teardown, federation_id)
                await self.alloc.release(federation_id)
                raise
            local = Endpoint(
                underlay_ip=self.config.underlay_ip,
                vni=chosen.vni,
                udp_port=chosen.port,
                subnet=consumer.subnet,
                app_ips=tuple(r.overlay_ips[federation_id] for r in records),
            )
            self._state.apps[app_name] = AppRecord(app_name, spec, records, federation_id)
            self._state.federations[federation_id] = FederationRecord(
                federation_id,
                PROVIDER,
                app_name=app_name,
                local=local,
                remote=consumer.with_(vni=chosen.vni, udp_port=chosen.port),
                links=links,
                peer_id=consumer_id,
                connected=True,
            )
            self._save()
            return local, records

    # --- consumer side -----------------------------------------------------

    async def reserve_overlay(self, federation_id: str, count: int) -> Reservation:
        require_federation_id(federation_id)
        count = count or DEFAULT_CANDIDATES
        require_range(count, "candidates", 1, 16)
        async with self._lock(f"fed:{federation_id}"):
            fed = self._state.federations.get(federation_id)
            if fed is not None and (fed.role != CONSUMER or fed.connected):
                raise AlreadyExists(f"federation {federation_id} is already set up here")
            res = await self.alloc.reserve(federation_id, count)
            assert res.subnet is not None
            self._state.federations[federation_id] = FederationRecord(
                federation_id,
                CONSUMER,
                local=Endpoint(self.config.underlay_ip, subnet=res.subnet),
            )
            self._save()
            return res

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider: Endpoint
    ) -> Endpoint:
        require_federation_id(federation_id)
        require_name(service_name, "service_name")
        async with self._lock(f"fed:{federation_id}"):
            fed = self._state.federations.get(federation_id)
            res = self.alloc.reservations.get(federation_id)
            if fed is None or fed.role != CONSUMER or res is None or fed.local is None:
                raise NotFound(f"no overlay reservation for federation {federation_id}")
            if fed.connected:
                raise AlreadyExists(f"federation {federation_id} is already connected")
            app = self._state.apps.get(service_name)
            if app is None:
                raise NotFound(f"app {service_name} not found")
            if app.federation_id:
                raise InvalidArgument(f"app {service_name} is a provider app of another federation")
            chosen = Candidate(provider.vni, provider.udp_port)
            if chosen not in res.candidates:
                raise InvalidArgument(
                    f"provider_endpoint vni {provider.vni}/udp_port {provider.udp_port} "
                    "is not one of the candidates reserved for this federation"
                )
            if provider.subnet != fed.local.subnet:
                raise InvalidArgument(
                    f"provider_endpoint.subnet {provider.subnet} differs from the reserved "
                    f"{fed.local.subnet}"
                )
            async with self._lock(f"app:{service_name}"):
                attachments = []
                ips = []
                for i, rec in enumerate(app.instances):
                    inst = await self._live(rec)
                    ip = consumer_ip(fed.local.subnet, i)
                    ips.append(str(ip.ip))
                    attachments.append(network.Attachment(inst.pid, inst.netns_path, ip))
                links = await asyncio.to_thread(
                    self.net.setup_overlay,
                    federation_id,
                    vni=chosen.vni,
                    port=chosen.port,
                    local_ip=self.config.underlay_ip,
                    remote_ip=provider.underlay_ip,
                    attachments=attachments,
                    fail_after=self.fail_after,
                    tracer=self.tracer,
                )
                for rec, ip in zip(app.instances, ips, strict=True):
                    rec.overlay_ips[federation_id] = ip
            await self.alloc.narrow(federation_id, chosen)
            fed.app_name = service_name
            fed.local = fed.local.with_(vni=chosen.vni, udp_port=chosen.port, app_ips=tuple(ips))
            fed.remote = provider
            fed.links = links
            fed.connected = True
            self._save()
            return fed.local

    async def verify_traffic(
        self,
        federation_id: str,
        count: int,
        interval_ms: int,
        timeout_ms: int,
        echo_port: int = 0,
    ) -> TrafficReport:
        require_federation_id(federation_id)
        count = count or 20
        interval_ms = interval_ms or 10
        timeout_ms = timeout_ms or 500
        require_range(count, "count", 1, 1000)
        require_range(interval_ms, "interval_ms", 0, 1000)
        require_range(timeout_ms, "timeout_ms", 1, 10000)
        echo_port = echo_port or DEFAULT_ECHO_PORT
        require_range(echo_port, "echo_port", 1, 65535)
        fed = self._federation(federation_id)
        if fed.role != CONSUMER or not fed.connected or fed.remote is None:
            raise FailedPrecondition(
                f"federation {federation_id} has no connected consumer end on this host"
            )
        app = self.get_app(fed.app_name)
        if not app.instances:
            raise FailedPrecondition(f"app {app.name} has no instances")
        if not fed.remote.app_ips:
            raise FailedPrecondition("the provider reported no app instance addresses")
        inst = await self._live(app.instances[0])
        with step_span(
            self.tracer, "probe", targets=",".join(fed.remote.app_ips), count=count
        ) as span:
            report = await probe(
                inst.netns_path,
                list(fed.remote.app_ips),
                echo_port,
                count=count,
                interval_ms=interval_ms,
                timeout_ms=timeout_ms,
            )
            set_attributes(
                span,
                sent=report.sent,
                received=report.received,
                loss=report.loss,
                rtt_ms=report.rtt_ms,
                warmup_ms=round(report.warmup_ms, 1),
            )
        return report

    # --- both sides --------------------------------------------------------

    def _federation(self, federation_id: str) -> FederationRecord:
        fed = self._state.federations.get(federation_id)
        if fed is None:
            raise NotFound(f"federation {federation_id} not found on this host")
        return fed

    async def release_service(self, federation_id: str) -> None:
        require_federation_id(federation_id)
        async with self._lock(f"fed:{federation_id}"):
            fed = self._state.federations.get(federation_id)
            # Links first (they may reference instances), by name so that even
            # a half-made overlay from a crashed call goes.
            await asyncio.to_thread(self.net.teardown, federation_id)
            if fed is not None and fed.role == PROVIDER:
                app = self._state.apps.pop(fed.app_name, None)
                if app is not None:
                    await self._delete_instances(app.instances)
            for app in self._state.apps.values():
                for rec in app.instances:
                    rec.overlay_ips.pop(federation_id, None)
            for vim in self.vims.values():  # leftovers by label (crash mid-deploy)
                for inst in await vim.list_instances({LABEL_FEDERATION: federation_id}):
                    await vim.delete_instance(inst.id)
            await self.alloc.release(federation_id)
            self._state.federations.pop(federation_id, None)
            self._save()

    async def service_status(
        self, federation_id: str
    ) -> tuple[FederationRecord, list[InstanceRecord], list[str]]:
        require_federation_id(federation_id)
        fed = self._federation(federation_id)
        instances: list[InstanceRecord] = []
        if fed.app_name in self._state.apps:
            instances = self._state.apps[fed.app_name].instances
        links = await asyncio.to_thread(self.net.links_of, federation_id)
        return fed, instances, links

    # --- cleanup -----------------------------------------------------------

    async def reconcile(self) -> None:
        """Brings the recorded state in line with what still runs after a
        restart: a federation that lost an instance cannot carry traffic any
        more and is released; a local app gets its missing replicas back."""
        for fed_id, fed in list(self._state.federations.items()):
            app = self._state.apps.get(fed.app_name)
            alive = app is not None and all([await self._exists(r) for r in app.instances])
            if not alive:
                log.warning("federation %s lost its instances; releasing it", fed_id)
                await self.release_service(fed_id)
        for app in list(self._state.apps.values()):
            if app.federation_id:
                continue
            present = [r for r in app.instances if await self._exists(r)]
            missing = len(app.instances) - len(present)
            if missing:
                log.warning("app %s lost %d instance(s); replacing them", app.name, missing)
                made = await self._create_instances(app.name, app.spec, missing, {})
                app.instances = present + [r for r, _ in made]
        self._save()

    async def warm_up(self) -> None:
        """Fills the VIMs' warm pools (if any) before the MEO serves."""
        for vim in self.vims.values():
            fill = getattr(vim, "fill", None)
            if fill is not None:
                await fill()

    async def close(self) -> None:
        for vim in self.vims.values():
            close = getattr(vim, "close", None)
            if close is not None:
                await close()

    async def _exists(self, rec: InstanceRecord) -> bool:
        vim = self.vims.get(rec.host)
        if vim is None:
            return False
        inst = await vim.get_instance(rec.id)
        return inst is not None and inst.running

    async def cleanup_all(self) -> None:
        """Removes everything this MEO made: recorded federations and apps,
        plus any link with a federation prefix and any instance labelled with
        this system (leftovers of a crash)."""
        self.load()
        for fed_id in list(self._state.federations):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.net.teardown, fed_id)
        leftovers = await asyncio.to_thread(self.net.all_owned_links)
        await asyncio.to_thread(self.net.delete_links, leftovers)
        for vim in self.vims.values():
            for inst in await vim.list_instances():
                await vim.delete_instance(inst.id)
        self._state = _State()
        self.alloc.reservations.clear()
        self._save()

    def summary(self) -> dict[str, Any]:
        return {
            "apps": sorted(self._state.apps),
            "federations": sorted(self._state.federations),
        }

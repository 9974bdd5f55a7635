"""Both ends of a federation's overlay on this host.

Provider:  :meth:`Overlays.deploy` starts the app's replicas for the foreign
           consumer and builds its end of the overlay (all or nothing).
Consumer:  :meth:`Overlays.reserve` -> (the MEF asks the provider) ->
           :meth:`Overlays.connect` -> :meth:`Overlays.verify`.
Both:      :meth:`Overlays.release` (idempotent), :meth:`Overlays.status`.

Either end is built by one routine, :meth:`Overlays._build_end`: address
the instances in the federation's /24 (consumer low half, provider high
half), set up bridge, VXLAN and veths, record the addresses.

What this module checks is what the model cannot know alone: that the far
end is not this system's own underlay address, that a provider answered
with one of the reserved tunnels and the reserved subnet, and the
lifecycle (connect after reserve, verify after connect).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable

from opentelemetry.trace import Tracer

from mecfed.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from mecfed.model import (
    AppInstance,
    DeploymentOrder,
    OverlayEndpoint,
    OverlayReservation,
    Role,
    ServiceStatus,
    TrafficCheck,
    TrafficReport,
    TunnelCandidate,
)
from mecfed.tracing import set_traffic, step_span
from meo import network
from meo.alloc import OverlayAllocator, consumer_ip, provider_ip
from meo.apps import Apps
from meo.probe import probe
from meo.records import AppRecord, FederationRecord, InstanceRecord
from meo.state import State
from meo.vim.base import LABEL_FEDERATION, Instance

log = logging.getLogger(__name__)

Addressing = Callable[[str, int], ipaddress.IPv4Interface]


def federated_app_name(federation_id: str) -> str:
    """The provider app's name: a DNS label derived from the federation id,
    deterministic and short."""
    return f"fed-{hashlib.sha256(federation_id.encode()).hexdigest()[:12]}"


class Overlays:
    def __init__(
        self,
        underlay_ip: str,
        state: State,
        apps: Apps,
        alloc: OverlayAllocator,
        net: network.NetworkOps,
        tracer: Tracer,
    ) -> None:
        self.underlay_ip = underlay_ip
        self.state = state
        self.apps = apps
        self.alloc = alloc
        self.net = net
        self.tracer = tracer
        # Test hook: called after each overlay step ("bridge", "vxlan", "veth0").
        self.fail_after: Callable[[str], None] | None = None

    async def _build_end(
        self,
        federation_id: str,
        members: list[tuple[InstanceRecord, Instance]],
        address: Addressing,
        subnet: str,
        tunnel: TunnelCandidate,
        remote_ip: str,
    ) -> tuple[list[str], tuple[str, ...]]:
        """This host's end of the overlay for ``members``; all or nothing.
        Returns the links made and the members' overlay addresses."""
        attachments = [
            network.Attachment(inst.pid, inst.netns_path, address(subnet, i))
            for i, (_, inst) in enumerate(members)
        ]
        links = await asyncio.to_thread(
            self.net.setup_overlay,
            federation_id,
            vni=tunnel.vni,
            port=tunnel.udp_port,
            local_ip=self.underlay_ip,
            remote_ip=remote_ip,
            attachments=attachments,
            fail_after=self.fail_after,
            tracer=self.tracer,
        )
        ips = tuple(str(a.ip.ip) for a in attachments)
        for (rec, _), ip in zip(members, ips, strict=True):
            rec.overlay_ips[federation_id] = ip
        return links, ips

    async def _teardown_quietly(self, federation_id: str) -> None:
        try:
            await asyncio.to_thread(self.net.teardown, federation_id)
        except Exception:
            log.exception("rollback could not remove the links of %s", federation_id)

    # --- provider ----------------------------------------------------------

    async def deploy(
        self, order: DeploymentOrder
    ) -> tuple[OverlayEndpoint, tuple[AppInstance, ...]]:
        fid, spec = order.federation_id, order.app
        consumer = order.consumer_endpoint.require_remote_of(self.underlay_ip, "consumer_endpoint")
        async with self.state.federation_lock(fid):
            if fid in self.state.federations:
                raise AlreadyExists(f"federation {fid} is already deployed here")
            app_name = federated_app_name(fid)
            if app_name in self.state.apps:
                raise AlreadyExists(f"app {app_name}, which federation {fid} needs, exists")
            chosen = await self.alloc.claim_first_free(fid, order.candidates)
            records: list[InstanceRecord] = []
            try:
                with step_span(self.tracer, "image", image=spec.image):
                    await self.apps.check_image(spec.image)
                with step_span(self.tracer, "containers", image=spec.image, replicas=spec.replicas):
                    made = await self.apps.create_instances(
                        app_name, spec, spec.replicas, {LABEL_FEDERATION: fid}
                    )
                records = [r for r, _ in made]
                links, ips = await self._build_end(
                    fid, made, provider_ip, consumer.subnet, chosen, consumer.underlay_ip
                )
            except BaseException:
                await self.apps.delete_quietly(records)
                await self._teardown_quietly(fid)
                await self.alloc.release(fid)
                raise
            local = OverlayEndpoint(
                self.underlay_ip, consumer.subnet, ips, vni=chosen.vni, udp_port=chosen.udp_port
            )
            self.state.apps[app_name] = AppRecord(app_name, spec, records, fid)
            self.state.federations[fid] = FederationRecord(
                fid,
                Role.PROVIDER,
                app_name=app_name,
                local=local,
                remote=consumer.with_tunnel(chosen),
                links=links,
                peer_id=order.consumer_id,
                connected=True,
            )
            self.state.save()
            return local, tuple(r.view() for r in records)

    # --- consumer ----------------------------------------------------------

    async def reserve(self, federation_id: str, count: int) -> OverlayReservation:
        async with self.state.federation_lock(federation_id):
            fed = self.state.federations.get(federation_id)
            if fed is not None and (fed.role != Role.CONSUMER or fed.connected):
                raise AlreadyExists(f"federation {federation_id} is already set up here")
            res = await self.alloc.reserve(federation_id, count)
            assert res.subnet is not None
            endpoint = OverlayEndpoint(self.underlay_ip, res.subnet)
            self.state.federations[federation_id] = FederationRecord(
                federation_id, Role.CONSUMER, local=endpoint
            )
            self.state.save()
            return OverlayReservation(endpoint, tuple(res.candidates))

    async def connect(
        self, federation_id: str, service_name: str, provider: OverlayEndpoint
    ) -> OverlayEndpoint:
        provider.require_remote_of(self.underlay_ip, "provider_endpoint")
        tunnel = provider.require_tunnel("provider_endpoint")
        async with self.state.federation_lock(federation_id):
            fed = self.state.federations.get(federation_id)
            res = self.state.reservations.get(federation_id)
            if fed is None or fed.role != Role.CONSUMER or res is None or fed.local is None:
                raise NotFound(f"no overlay reservation for federation {federation_id}")
            if fed.connected:
                raise AlreadyExists(f"federation {federation_id} is already connected")
            app = self.state.app(service_name)
            if app.federation_id:
                raise InvalidArgument.field(
                    "service_name", f"{service_name} is a provider app of another federation"
                )
            if tunnel not in res.candidates:
                raise InvalidArgument.field(
                    "provider_endpoint.vni",
                    f"{tunnel.vni} / udp_port {tunnel.udp_port} is not one of the candidates "
                    "reserved for this federation",
                )
            if provider.subnet != fed.local.subnet:
                raise InvalidArgument.field(
                    "provider_endpoint.subnet",
                    f"{provider.subnet} differs from the reserved {fed.local.subnet}",
                )
            async with self.state.app_lock(service_name):
                members = [(rec, await self.apps.live(rec)) for rec in app.instances]
                links, ips = await self._build_end(
                    federation_id,
                    members,
                    consumer_ip,
                    fed.local.subnet,
                    tunnel,
                    provider.underlay_ip,
                )
            await self.alloc.narrow(federation_id, tunnel)
            fed.app_name = service_name
            fed.local = fed.local.with_tunnel(tunnel).with_app_ips(ips)
            fed.remote = provider
            fed.links = links
            fed.connected = True
            self.state.save()
            return fed.local

    async def verify(self, federation_id: str, check: TrafficCheck) -> TrafficReport:
        fed = self.state.federation(federation_id)
        if not fed.is_connected_consumer or fed.remote is None:
            raise FailedPrecondition(
                f"federation {federation_id} has no connected consumer end on this host"
            )
        app = self.state.app(fed.app_name)
        if not app.instances:
            raise FailedPrecondition(f"app {app.name} has no instances")
        targets = list(fed.remote.app_ips)
        if not targets:
            raise FailedPrecondition("the provider reported no app instance addresses")
        inst = await self.apps.live(app.instances[0])
        with step_span(self.tracer, "probe", targets=",".join(targets), count=check.count) as span:
            try:
                report = await probe(inst.netns_path, targets, check)
            except OSError as exc:
                log.warning("probe from %s failed: %s", inst.id, exc)
                raise FailedPrecondition(
                    f"could not probe from instance {inst.id[:12]}: its network namespace is gone"
                ) from None
            set_traffic(span, report)
        return report

    # --- both --------------------------------------------------------------

    async def release(self, federation_id: str) -> None:
        async with self.state.federation_lock(federation_id):
            fed = self.state.federations.get(federation_id)
            # Links first (they may reference instances), by name so that even
            # a half-made overlay from a crashed call goes.
            await asyncio.to_thread(self.net.teardown, federation_id)
            if fed is not None and fed.role == Role.PROVIDER:
                app = self.state.apps.get(fed.app_name)
                if app is not None:
                    await self.apps.delete_instances(app.instances)
                    self.state.apps.pop(fed.app_name, None)
            for app in self.state.apps.values():
                for rec in app.instances:
                    rec.overlay_ips.pop(federation_id, None)
            await self.apps.sweep({LABEL_FEDERATION: federation_id})  # crash mid-deploy
            await self.alloc.release(federation_id)
            self.state.federations.pop(federation_id, None)
            self.state.save()

    async def status(self, federation_id: str) -> ServiceStatus:
        fed = self.state.federation(federation_id)
        app = self.state.apps.get(fed.app_name)
        links = await asyncio.to_thread(self.net.links_of, federation_id)
        return fed.status(app.instances if app is not None else [], links)


__all__ = ["Overlays", "federated_app_name"]

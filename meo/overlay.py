"""Both ends of a federation's overlay on this host.

Provider:  :meth:`Overlays.deploy` starts the app's replicas for the foreign
           consumer and builds its end of the overlay (all or nothing).
Consumer:  :meth:`Overlays.reserve` -> (the MEF asks the provider) ->
           :meth:`Overlays.connect` -> verify / watch (:mod:`meo.liveness`).
Both:      :meth:`Overlays.release` (idempotent), :meth:`Overlays.status`,
           :meth:`Overlays.list`.

Federations are keyed by (consumer_id, federation_id) (:mod:`meo.records`):
two consumers may use the same federation id at one provider.

Either end is built by one routine, :meth:`Overlays._build_end`: address
the instances in the federation's /24 (consumer low half, provider high
half), set up bridge, VXLAN and veths, record the addresses. The links'
tag is announced by an intent before the first link is made.

A release wins over a deployment or connection of the same federation that
is still in progress: it cancels it, waits until it has rolled back
everything it made, then releases; the cancelled call answers ABORTED.

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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from opentelemetry.trace import Tracer

from mecfed.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from mecfed.model import (
    AppInstance,
    DeploymentOrder,
    OverlayEndpoint,
    OverlayReservation,
    Role,
    ServiceStatus,
    TunnelCandidate,
)
from mecfed.tracing import step_span
from meo import network
from meo.alloc import OverlayAllocator, consumer_ip, provider_ip
from meo.apps import Apps
from meo.records import AppRecord, FederationRecord, FedKey, InstanceRecord, key_text
from meo.state import INSTANCE, OVERLAY, Intent, State
from meo.tasks import undo_if_cancelled, wait_out
from meo.vim.base import LABEL_FEDERATION, Instance

log = logging.getLogger(__name__)
T = TypeVar("T")

Addressing = Callable[[str, int], ipaddress.IPv4Interface]


def federated_app_name(key: str) -> str:
    """The provider app's name: a DNS label derived from the federation's
    key (:func:`meo.records.key_text`), deterministic and short."""
    return f"fed-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


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
        self._ops: dict[FedKey, set[asyncio.Task[Any]]] = {}  # deploys / connects under way
        self._cancelled: set[asyncio.Task[Any]] = set()  # ... that a release cancelled
        self._watchers: dict[FedKey, set[asyncio.Event]] = {}

    # --- helpers -------------------------------------------------------------

    def names(self, key: FedKey, tag: str) -> network.LinkNames:
        return network.LinkNames(self.state.installation, tag, key_text(key))

    async def _new_tag(self, key: FedKey) -> tuple[network.LinkNames, Intent]:
        """A link tag no federation uses and no link on the host has, and
        its intent (written before any link is made)."""
        on_host = await asyncio.to_thread(self.net.host_link_names)
        for attempt in range(64):
            names = self.names(key, network.first_tag(key_text(key), attempt))
            # From here to the intent nothing awaits: no other call can take it.
            if names.tag in self.state.tags_in_use():
                continue
            if any(n[:3] in network.LINK_PREFIXES and n[3:].startswith(names.h) for n in on_host):
                continue
            return names, self.state.intend(OVERLAY, names.tag, key_text(key))
        raise ResourceExhausted(f"no free link names left for {key_text(key)} on this host")

    async def _build_end(
        self,
        names: network.LinkNames,
        members: list[tuple[InstanceRecord, Instance]],
        address: Addressing,
        subnet: str,
        tunnel: TunnelCandidate,
        remote_ip: str,
    ) -> tuple[list[str], tuple[str, ...]]:
        """This host's end of the overlay for ``members``; all or nothing,
        also when cancelled (the set-up thread is waited out and undone).
        Returns the links made and the members' overlay addresses."""
        attachments = [
            network.Attachment(inst.pid, inst.netns_path, address(subnet, i))
            for i, (_, inst) in enumerate(members)
        ]
        links = await undo_if_cancelled(
            asyncio.to_thread(
                self.net.setup_overlay,
                names,
                vni=tunnel.vni,
                port=tunnel.udp_port,
                local_ip=self.underlay_ip,
                remote_ip=remote_ip,
                attachments=attachments,
                fail_after=self.fail_after,
                tracer=self.tracer,
            ),
            lambda _: asyncio.to_thread(self.net.teardown, names),
            f"setting up the overlay of {names.key}",
        )
        ips = tuple(str(a.ip.ip) for a in attachments)
        for (rec, _), ip in zip(members, ips, strict=True):
            rec.overlay_ips[names.key] = ip
        return links, ips

    async def _teardown(self, names: network.LinkNames, intent: Intent | None) -> None:
        """Rollback of one overlay; its intent stays if the links could not go."""
        try:
            await asyncio.to_thread(self.net.teardown, names)
        except Exception:
            log.exception("rollback could not remove the links of %s", names.key)
            return
        if intent is not None:
            self.state.settle([intent])

    async def _rollback_instances(self, records: list[InstanceRecord]) -> None:
        gone = await self.apps.delete_quietly(records)
        self.state.forget(INSTANCE, [r.name for r in gone if r.name])

    async def _cancellable(self, key: FedKey, work: Coroutine[Any, Any, T]) -> T:
        """Runs ``work`` so that a release of ``key`` can cancel it."""
        task = asyncio.ensure_future(work)
        self._ops.setdefault(key, set()).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if task not in self._cancelled:
                raise  # our caller was cancelled (e.g. the RPC): pass it on
            raise Aborted(
                f"federation {key[1]} was released while it was being set up; "
                "everything it made was removed"
            ) from None
        finally:
            self._cancelled.discard(task)
            ops = self._ops.get(key, set())
            ops.discard(task)
            if not ops:
                self._ops.pop(key, None)

    # --- provider ----------------------------------------------------------

    async def deploy(
        self, order: DeploymentOrder
    ) -> tuple[OverlayEndpoint, tuple[AppInstance, ...]]:
        order.consumer_endpoint.require_remote_of(self.underlay_ip, "consumer_endpoint")
        key = (order.consumer_id, order.federation_id)
        return await self._cancellable(key, self._deploy(order, key))

    async def _deploy(
        self, order: DeploymentOrder, key: FedKey
    ) -> tuple[OverlayEndpoint, tuple[AppInstance, ...]]:
        fid, spec, consumer = order.federation_id, order.app, order.consumer_endpoint
        kt = key_text(key)
        async with self.state.federation_lock(key):
            if key in self.state.federations:
                raise AlreadyExists(
                    f"federation {fid} of consumer {order.consumer_id} is already deployed here"
                )
            app_name = federated_app_name(kt)
            if app_name in self.state.apps:
                raise AlreadyExists(f"app {app_name}, which federation {fid} needs, exists")
            chosen = await self.alloc.claim_first_free(kt, order.candidates)
            records: list[InstanceRecord] = []
            names: network.LinkNames | None = None
            intent: Intent | None = None
            try:
                with step_span(self.tracer, "image", image=spec.image):
                    await self.apps.check_image(spec.image)
                with step_span(self.tracer, "containers", image=spec.image, replicas=spec.replicas):
                    made = await self.apps.create_instances(
                        app_name, spec, spec.replicas, {LABEL_FEDERATION: kt}, kt
                    )
                records = [r for r, _ in made]
                names, intent = await self._new_tag(key)
                links, ips = await self._build_end(
                    names, made, provider_ip, consumer.subnet, chosen, consumer.underlay_ip
                )
            except BaseException:
                await wait_out(asyncio.ensure_future(self._undo_deploy(kt, records, names, intent)))
                raise
            local = OverlayEndpoint(
                self.underlay_ip, consumer.subnet, ips, vni=chosen.vni, udp_port=chosen.udp_port
            )
            self.state.apps[app_name] = AppRecord(app_name, spec, records, fid)
            self.state.federations[key] = FederationRecord(
                fid,
                Role.PROVIDER,
                app_name=app_name,
                local=local,
                remote=consumer.with_tunnel(chosen),
                links=links,
                peer_id=order.consumer_id,
                connected=True,
                tag=names.tag,
            )
            self.state.save()  # settles the intents: the record owns it all now
            return local, tuple(r.view() for r in records)

    async def _undo_deploy(
        self,
        kt: str,
        records: list[InstanceRecord],
        names: network.LinkNames | None,
        intent: Intent | None,
    ) -> None:
        if names is not None:
            await self._teardown(names, intent)
        await self._rollback_instances(records)
        await self.alloc.release(kt)

    # --- consumer ----------------------------------------------------------

    async def reserve(self, federation_id: str, count: int) -> OverlayReservation:
        key = ("", federation_id)
        async with self.state.federation_lock(key):
            fed = self.state.federations.get(key)
            if fed is not None and fed.connected:
                raise AlreadyExists(f"federation {federation_id} is already set up here")
            res = await self.alloc.reserve(federation_id, count)
            assert res.subnet is not None
            endpoint = OverlayEndpoint(self.underlay_ip, res.subnet)
            self.state.federations[key] = FederationRecord(
                federation_id, Role.CONSUMER, local=endpoint
            )
            self.state.save()
            return OverlayReservation(endpoint, tuple(res.candidates))

    async def connect(
        self, federation_id: str, service_name: str, provider: OverlayEndpoint
    ) -> OverlayEndpoint:
        provider.require_remote_of(self.underlay_ip, "provider_endpoint")
        tunnel = provider.require_tunnel("provider_endpoint")
        key = ("", federation_id)
        return await self._cancellable(key, self._connect(key, service_name, provider, tunnel))

    async def _connect(
        self, key: FedKey, service_name: str, provider: OverlayEndpoint, tunnel: TunnelCandidate
    ) -> OverlayEndpoint:
        federation_id = key[1]
        async with self.state.federation_lock(key):
            fed = self.state.federations.get(key)
            res = self.state.reservations.get(federation_id)
            if fed is None or res is None or fed.local is None:
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
                names, intent = await self._new_tag(key)
                try:
                    links, ips = await self._build_end(
                        names, members, consumer_ip, fed.local.subnet, tunnel, provider.underlay_ip
                    )
                    await self.alloc.narrow(federation_id, tunnel)
                except BaseException:
                    for rec, _ in members:
                        rec.overlay_ips.pop(names.key, None)
                    await wait_out(asyncio.ensure_future(self._teardown(names, intent)))
                    raise
            fed.app_name = service_name
            fed.local = fed.local.with_tunnel(tunnel).with_app_ips(ips)
            fed.remote = provider
            fed.links = links
            fed.tag = names.tag
            fed.connected = True
            self.state.save()
            return fed.local

    # --- both --------------------------------------------------------------

    async def release(self, federation_id: str, consumer_id: str = "") -> None:
        key = (consumer_id, federation_id)
        # A deployment or connection under way loses: cancelled and rolled back first.
        if ops := list(self._ops.get(key, ())):
            self._cancelled.update(ops)
            for task in ops:
                task.cancel()
            await asyncio.wait(ops)
        kt = key_text(key)
        async with self.state.federation_lock(key):
            fed = self.state.federations.get(key)
            pending = self.state.intents(owner=kt)  # a crashed or failed call's leftovers
            tags = {i.name for i in pending if i.kind == OVERLAY}
            if fed is not None and fed.tag:
                tags.add(fed.tag)
            # Links first (they may reference instances).
            for tag in sorted(tags):
                await asyncio.to_thread(self.net.teardown, self.names(key, tag))
            if fed is not None and not fed.tag and fed.links:  # a record of an earlier version
                await asyncio.to_thread(self.net.delete_links, list(fed.links))
            if fed is not None and fed.role == Role.PROVIDER:
                app = self.state.apps.get(fed.app_name)
                if app is not None:
                    await self.apps.delete_instances(app.instances)
                    self.state.apps.pop(fed.app_name, None)
            for app in self.state.apps.values():
                for rec in app.instances:
                    rec.overlay_ips.pop(kt, None)
            for intent in pending:
                vim = self.apps.vims.get(intent.host)
                if intent.kind == INSTANCE and vim is not None:
                    await vim.delete_instance(intent.name)
            await self.apps.sweep({LABEL_FEDERATION: kt})  # crash mid-deploy
            await self.alloc.release(kt)
            self.state.federations.pop(key, None)
            self.state.save()
            self.state.settle(pending)
            for event in self._watchers.pop(key, set()):
                event.set()

    def watch_released(self, key: FedKey) -> asyncio.Event:
        """Set when ``key`` is released (the caller drops it with :meth:`unwatch`)."""
        event = asyncio.Event()
        self._watchers.setdefault(key, set()).add(event)
        return event

    def unwatch(self, key: FedKey, event: asyncio.Event) -> None:
        events = self._watchers.get(key, set())
        events.discard(event)
        if not events:
            self._watchers.pop(key, None)

    def _status(self, fed: FederationRecord, links: list[str]) -> ServiceStatus:
        app = self.state.apps.get(fed.app_name)
        return fed.status(app.instances if app is not None else [], links)

    async def status(self, federation_id: str, consumer_id: str = "") -> ServiceStatus:
        fed = self.state.federation((consumer_id, federation_id))
        if not fed.tag:
            return self._status(fed, list(fed.links))
        links = await asyncio.to_thread(self.net.links_of, self.names(fed.key, fed.tag))
        return self._status(fed, links)

    async def list(self) -> list[ServiceStatus]:
        """Every federation this host holds resources for, recorded or
        still being deployed (so a restarted federator can release it)."""
        owned = await asyncio.to_thread(self.net.owned_links, self.state.installation)
        out = []
        for key in sorted(self.state.federations):
            fed = self.state.federations[key]
            links = sorted(n for n, t in owned.items() if fed.tag and t == fed.tag)
            out.append(self._status(fed, links if fed.tag else list(fed.links)))
        for consumer, fid in sorted(set(self._ops) - set(self.state.federations)):
            if consumer:
                out.append(ServiceStatus(fid, Role.PROVIDER, consumer_id=consumer))
        return out


__all__ = ["Overlays", "federated_app_name"]

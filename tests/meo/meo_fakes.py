"""A MEO served for real (grpc.aio on 127.0.0.1:0) over a fake VIM and fake
host networking: no root, no Docker. Used by the unit tests of the apps,
the overlay, the state and the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from meo_helpers import make_config

from mecfed.errors import DeploymentFailed, FailedPrecondition, MecfedError
from mecfed.rpc.status import violations_of
from mecfed.v1 import common_pb2, orchestrator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as pb
from meo.network import LinkNames, NetworkOps, installation_prefix
from meo.orchestrator import Orchestrator
from meo.server import MeoServer, allow_any_caller, serve
from meo.vim.base import Instance, Resources

OWN_UNDERLAY = "192.0.2.1"
PEER_UNDERLAY = "192.0.2.2"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class FakeVim:
    host = "fake-host"
    system_id = "sys-a"
    installation = ""  # not scoped: it serves one MEO per test

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.fail_image = "fail/me:1"  # every create fails (as a missing image does)
        self.fail_on_create = 0  # the n-th create (1-based) raises a raw error
        self.creates = 0
        self.dead: set[str] = set()  # instances that stopped running
        # A create waits for ``gate`` (set ``entered`` first): a deployment in progress.
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        # A create runs in a worker thread for this long, as the Docker VIM's do:
        # cancelling the caller does not stop it.
        self.thread_s = 0.0

    async def check_image(self, image: str) -> None:
        if image == "absent/image:1":
            raise FailedPrecondition(f"image {image!r} not found on host {self.host}")

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        self.creates += 1
        if image == self.fail_image:
            raise DeploymentFailed(f"image {image!r} not found on this host")
        if self.creates == self.fail_on_create:
            raise OSError(5, "raw engine text: EIO on /var/lib/secret")
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()

        def start() -> Instance:
            time.sleep(self.thread_s)
            inst = Instance(name, name, 4242, "/proc/4242/ns/net", dict(labels))
            self.instances[name] = inst
            return inst

        return await asyncio.to_thread(start) if self.thread_s else start()

    async def rename_instance(self, instance_id: str, name: str) -> Instance | None:
        return self.instances.get(instance_id)

    async def delete_instance(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]:
        return [
            i
            for i in self.instances.values()
            if all(i.labels.get(k) == v for k, v in (labels or {}).items())
        ]

    async def get_instance(self, instance_id: str) -> Instance | None:
        inst = self.instances.get(instance_id)
        if inst is not None and instance_id in self.dead:
            return Instance(inst.id, inst.name, 0, "", inst.labels, running=False)
        return inst

    async def fill(self) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeNet(NetworkOps):
    """Host networking as a dict of link names per federation key. Builds
    the links step by step (real names) and calls ``fail_after`` like the
    real one; on a failure it removes what it made."""

    def __init__(self) -> None:
        self.links: dict[str, list[str]] = {}
        self.fail_at = ""  # a step name: the set-up fails there (as a netlink error would)
        # Set: the set-up thread stops after the bridge until it is set (``entered`` first).
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        super().__init__(
            setup_overlay=self._setup,
            teardown=self._teardown,
            links_of=lambda names: [n for n in self.links.get(names.key, []) if names.owns(n)],
            existing_vxlans=lambda: [],
            host_link_names=lambda: {n for ls in self.links.values() for n in ls},
            owned_links=self._owned,
            delete_links=self._delete,
        )

    def _owned(self, installation: str) -> dict[str, str]:
        mark = installation_prefix(installation)
        return {n: n[7:13] for ls in self.links.values() for n in ls if n[3:7] == mark}

    def _delete(self, names: list[str]) -> None:
        for key in list(self.links):
            self.links[key] = [n for n in self.links[key] if n not in names]
            if not self.links[key]:
                del self.links[key]

    def _teardown(self, names: LinkNames) -> list[str]:
        gone = [n for n in self.links.get(names.key, []) if names.owns(n)]
        self._delete(gone)
        return gone

    def _setup(
        self,
        names: LinkNames,
        *,
        attachments: list[Any],
        fail_after: Callable[[str], None] | None = None,
        **kw: Any,
    ) -> list[str]:
        made = self.links.setdefault(names.key, [])
        steps = [("bridge", names.bridge), ("vxlan", names.vxlan)]
        steps += [(f"veth{i}", names.veth(i)) for i in range(len(attachments))]
        try:
            for step, link in steps:
                made.append(link)
                if step == self.fail_at:
                    raise DeploymentFailed(f"could not set up the overlay of {names.key}: {step}")
                if fail_after:
                    fail_after(step)
                if step == "bridge" and self.hold is not None:
                    self.entered.set()
                    self.hold.wait()
        except BaseException as exc:
            self._teardown(names)
            if isinstance(exc, MecfedError):
                raise
            raise DeploymentFailed(f"overlay of {names.key} failed") from exc
        return [n for n in made if names.owns(n)]


def recorded(orch: Orchestrator, table: str) -> list[dict[str, Any]]:
    """The rows of one of the MEO's state tables (apps, federations, reservations)."""
    return [json.loads(r["data"]) for r in orch.state.db.query(f"SELECT data FROM meo_{table}")]


@dataclass
class Meo:
    stub: orchestrator_pb2_grpc.MecOrchestratorStub
    orch: Orchestrator
    vim: FakeVim
    net: FakeNet
    server: MeoServer
    channel: grpc.aio.Channel
    tmp: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def leftovers(self, *, keep_apps: tuple[str, ...] = ()) -> dict[str, Any]:
        """Everything the MEO holds beyond ``keep_apps``: must be empty
        after a refused or failed call."""
        state = {t: recorded(self.orch, t) for t in ("apps", "federations", "reservations")}
        summary = self.orch.summary()
        left = {
            "containers": sorted(
                i.name for i in self.vim.instances.values()
                if not any(f"-{a}-" in i.name for a in keep_apps)
            ),
            "links": {f: ls for f, ls in self.net.links.items() if ls},
            "reservations": summary["reservations"],
            "federations": summary["federations"],
            "apps": [a for a in summary["apps"] if a not in keep_apps],
            "state_records": [
                r.get("name") or r.get("federation_id")
                for key in ("apps", "federations", "reservations")
                for r in state.get(key, [])
                if r.get("name") not in keep_apps
            ],
            "intents": [i.name for i in self.orch.state.intents()],
        }  # fmt: skip
        return {k: v for k, v in left.items() if v}


@contextlib.asynccontextmanager
async def running_meo(tmp: Path, **config: Any) -> AsyncIterator[Meo]:
    # Its own pools leave out the tunnel deploy_request offers (VNI 1234, port
    # 4790), so reservations of a test never take it by chance.
    defaults = {
        "underlay_ip": OWN_UNDERLAY,
        "vni_range": (2000, 16_000_000),
        "vxlan_port_range": (4791, 4889),
    }
    cfg = make_config("sys-a", tmp, **{**defaults, **config})
    vim = FakeVim()
    net = FakeNet()
    orch = Orchestrator(cfg, {vim.host: vim}, net=net)
    server = await serve(
        cfg, None, orchestrator=orch, listen="127.0.0.1:0", access=allow_any_caller
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Meo(
            orchestrator_pb2_grpc.MecOrchestratorStub(channel), orch, vim, net, server, channel, tmp
        )
    finally:
        await channel.close()
        await server.stop(None)


def spec(**kw: Any) -> common_pb2.AppSpec:
    return common_pb2.AppSpec(**{"image": "mecfed/echo:1", "replicas": 1, **kw})


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


async def bad_field(call: Any) -> list[str]:
    """The fields an INVALID_ARGUMENT call names in its BadRequest details."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == INVALID, err.value.details()
    return [v.field for v in violations_of(err.value)]


def deploy_request(**kw: Any) -> pb.DeployFederatedServiceRequest:
    base = dict(
        federation_id="fed-1",
        consumer_id="sys-b",
        app=spec(replicas=2),
        consumer_endpoint=common_pb2.OverlayEndpoint(
            underlay_ip="192.0.2.2", subnet="172.30.3.0/24"
        ),
        candidates=[common_pb2.TunnelCandidate(vni=1234, udp_port=4790)],
    )
    base.update(kw)
    return pb.DeployFederatedServiceRequest(**base)


async def reserved(
    env: Meo, fid: str = "f", app: str | None = "client"
) -> tuple[Any, pb.ConnectOverlayRequest]:
    """A consumer reservation (and local app) and the ConnectOverlay request
    a provider's answer would make of it."""
    if app:
        await env.stub.CreateApp(pb.CreateAppRequest(name=app, spec=spec(replicas=2)))
    res = await env.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id=fid))
    subnet = res.consumer_endpoint.subnet
    provider = common_pb2.OverlayEndpoint(
        underlay_ip=PEER_UNDERLAY,
        vni=res.candidates[0].vni,
        udp_port=res.candidates[0].udp_port,
        subnet=subnet,
        app_ips=[subnet.replace("0/24", "129")],
    )
    return res, pb.ConnectOverlayRequest(
        federation_id=fid, service_name=app or "client", provider_endpoint=provider
    )

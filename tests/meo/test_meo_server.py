"""The gRPC surface through a real in-process grpc.aio server on port 0, with
a fake VIM and fake host networking (no root needed): validation and error
codes, app lifecycle, state persistence."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping

import grpc
import pytest
from meo_helpers import make_config

from mecfed.v1 import common_pb2, orchestrator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as pb
from meo.orchestrator import NetworkOps, Orchestrator
from meo.server import serve
from meo.vim.base import Instance, Resources


class FakeVim:
    host = "fake-host"

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.fail_image = "fail/me:1"

    async def create_instance(self, name, image, labels, resources: Resources, env=None):
        from mecfed.errors import DeploymentFailed

        if image == self.fail_image:
            raise DeploymentFailed(f"image {image!r} not found on this host")
        inst = Instance(name, name, 4242, "/proc/4242/ns/net", dict(labels))
        self.instances[name] = inst
        return inst

    async def delete_instance(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)

    async def list_instances(self, labels: Mapping[str, str] | None = None):
        return [
            i
            for i in self.instances.values()
            if all(i.labels.get(k) == v for k, v in (labels or {}).items())
        ]

    async def get_instance(self, instance_id: str):
        return self.instances.get(instance_id)


class FakeNet(NetworkOps):
    def __init__(self) -> None:
        self.links: dict[str, list[str]] = {}
        super().__init__(
            setup_overlay=self._setup,
            teardown=lambda fed: self.links.pop(fed, []),
            links_of=lambda fed: self.links.get(fed, []),
            existing_vxlans=lambda: [],
            all_owned_links=lambda: [n for ls in self.links.values() for n in ls],
            delete_links=lambda names: self.links.clear(),
        )

    def _setup(self, fed, *, attachments, fail_after=None, **kw):
        self.links[fed] = ["mfb", "mfx", *(f"mfv{i}" for i in range(len(attachments)))]
        return self.links[fed]


@pytest.fixture
async def meo(
    tmp_path,
) -> AsyncIterator[tuple[orchestrator_pb2_grpc.MecOrchestratorStub, Orchestrator]]:
    config = make_config("sys-a", tmp_path, underlay_ip="192.0.2.1")
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server, port = await serve(config, None, orchestrator=orch, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield orchestrator_pb2_grpc.MecOrchestratorStub(channel), orch
    finally:
        await channel.close()
        await server.stop(None)


def _spec(**kw) -> common_pb2.AppSpec:
    return common_pb2.AppSpec(**{"image": "mecfed/echo:1", "replicas": 1, **kw})


async def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_app_validation(meo):
    stub, _ = meo
    cases = [
        (pb.CreateAppRequest(name="", spec=_spec()), "name is required"),
        (pb.CreateAppRequest(name="Bad_Name", spec=_spec()), "name"),
        (pb.CreateAppRequest(name="x" * 64, spec=_spec()), "name"),
        (pb.CreateAppRequest(name="a", spec=_spec(replicas=0)), "spec.replicas is 0"),
        (pb.CreateAppRequest(name="a", spec=_spec(replicas=17)), "spec.replicas is 17"),
        (pb.CreateAppRequest(name="a", spec=_spec(image="")), "spec.image is required"),
        (pb.CreateAppRequest(name="a", spec=_spec(image="x" * 300)), "spec.image"),
        (pb.CreateAppRequest(name="a", spec=_spec(echo_port=70000)), "spec.echo_port"),
    ]
    for req, text in cases:
        code, details = await _code(stub.CreateApp(req))
        assert code == INVALID, (req, details)
        assert text in details
    code, _ = await _code(stub.ScaleApp(pb.ScaleAppRequest(name="nope", replicas=2)))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_app_lifecycle(meo, tmp_path):
    stub, orch = meo
    app = await stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec(replicas=2)))
    assert len(app.instances) == 2 and app.instances[0].host == "fake-host"
    code, _ = await _code(stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec())))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    app = await stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=4))
    assert len(app.instances) == 4 and app.spec.replicas == 4
    code, _ = await _code(stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=17)))
    assert code == INVALID
    app = await stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=1))
    assert len(app.instances) == 1
    state = json.loads(orch.state_file.read_text())
    assert [a["name"] for a in state["apps"]] == ["web"]
    assert (await stub.ListApps(pb.ListAppsRequest())).apps[0].name == "web"
    await stub.DeleteApp(pb.DeleteAppRequest(name="web"))
    code, _ = await _code(stub.GetApp(pb.GetAppRequest(name="web")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await _code(stub.DeleteApp(pb.DeleteAppRequest(name="web")))
    assert code == grpc.StatusCode.NOT_FOUND
    vim = next(iter(orch.vims.values()))
    assert vim.instances == {}


async def test_failed_create_rolls_back(meo):
    stub, orch = meo
    code, details = await _code(
        stub.CreateApp(pb.CreateAppRequest(name="x", spec=_spec(image="fail/me:1", replicas=3)))
    )
    assert code == grpc.StatusCode.INTERNAL and "not found" in details
    assert next(iter(orch.vims.values())).instances == {}


def _deploy(**kw) -> pb.DeployFederatedServiceRequest:
    base = dict(
        federation_id="fed-1",
        consumer_id="sys-b",
        app=_spec(replicas=2),
        consumer_endpoint=common_pb2.OverlayEndpoint(
            underlay_ip="192.0.2.2", subnet="172.30.3.0/24"
        ),
        candidates=[common_pb2.TunnelCandidate(vni=1234, udp_port=4790)],
    )
    base.update(kw)
    return pb.DeployFederatedServiceRequest(**base)


async def test_deploy_validation(meo):
    stub, _ = meo
    ep = common_pb2.OverlayEndpoint
    cases = [
        (_deploy(federation_id=""), "federation_id is required"),
        (_deploy(federation_id="a b"), "federation_id"),
        (_deploy(federation_id="x" * 65), "federation_id"),
        (_deploy(consumer_id=""), "consumer_id is required"),
        (_deploy(app=_spec(replicas=0)), "app.replicas"),
        (_deploy(app=_spec(replicas=99)), "app.replicas"),
        (
            _deploy(consumer_endpoint=ep(underlay_ip="300.1.1.1", subnet="172.30.3.0/24")),
            "underlay_ip",
        ),
        (_deploy(consumer_endpoint=ep(underlay_ip="192.0.2.2", subnet="nonsense")), "subnet"),
        (_deploy(consumer_endpoint=ep(underlay_ip="192.0.2.2", subnet="10.0.0.0/16")), "/24"),
        (_deploy(candidates=[]), "candidates"),
        (_deploy(candidates=[common_pb2.TunnelCandidate(vni=0, udp_port=4790)]), "vni"),
        (_deploy(candidates=[common_pb2.TunnelCandidate(vni=1, udp_port=80)]), "udp_port"),
        (
            _deploy(candidates=[common_pb2.TunnelCandidate(vni=1, udp_port=4790)] * 17),
            "candidates",
        ),
    ]
    for req, text in cases:
        code, details = await _code(stub.DeployFederatedService(req))
        assert code == INVALID, (text, details)
        assert text in details, details


async def test_provider_deploy_and_release(meo):
    stub, orch = meo
    resp = await stub.DeployFederatedService(_deploy())
    ep = resp.provider_endpoint
    assert (ep.vni, ep.udp_port, ep.underlay_ip) == (1234, 4790, "192.0.2.1")
    assert list(ep.app_ips) == ["172.30.3.129", "172.30.3.130"]
    code, _ = await _code(stub.DeployFederatedService(_deploy()))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    # Another federation offering only the same tunnel gets RESOURCE_EXHAUSTED.
    code, _ = await _code(stub.DeployFederatedService(_deploy(federation_id="fed-2")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = await stub.GetServiceStatus(pb.GetServiceStatusRequest(federation_id="fed-1"))
    assert status.role == "provider" and len(status.links) == 4
    (fed_app,) = (await stub.ListApps(pb.ListAppsRequest())).apps
    assert fed_app.federation_id == "fed-1"
    code, _ = await _code(stub.DeleteApp(pb.DeleteAppRequest(name=fed_app.name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # provider apps go with ReleaseService
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="fed-1"))
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="fed-1"))
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="never-seen"))
    assert next(iter(orch.vims.values())).instances == {}
    assert (await stub.ListApps(pb.ListAppsRequest())).apps == []
    code, _ = await _code(stub.GetServiceStatus(pb.GetServiceStatusRequest(federation_id="fed-1")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_consumer_validation(meo):
    stub, _ = meo
    code, _ = await _code(
        stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f", candidates=17))
    )
    assert code == INVALID
    code, _ = await _code(stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="")))
    assert code == INVALID
    res = await stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f"))
    assert len(res.candidates) == 4 and res.consumer_endpoint.underlay_ip == "192.0.2.1"
    provider = common_pb2.OverlayEndpoint(
        underlay_ip="192.0.2.9",
        vni=res.candidates[1].vni,
        udp_port=res.candidates[1].udp_port,
        subnet=res.consumer_endpoint.subnet,
        app_ips=[res.consumer_endpoint.subnet.replace("0/24", "129")],
    )
    connect = pb.ConnectOverlayRequest(
        federation_id="f", service_name="client", provider_endpoint=provider
    )
    code, details = await _code(stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.NOT_FOUND and "client" in details
    await stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
    unknown = pb.ConnectOverlayRequest()
    unknown.CopyFrom(connect)
    unknown.federation_id = "other"
    code, _ = await _code(stub.ConnectOverlay(unknown))
    assert code == grpc.StatusCode.NOT_FOUND
    wrong = pb.ConnectOverlayRequest()
    wrong.CopyFrom(connect)
    wrong.provider_endpoint.vni = 1
    code, details = await _code(stub.ConnectOverlay(wrong))
    assert code == INVALID and "not one of the candidates" in details
    bad_ip = pb.ConnectOverlayRequest()
    bad_ip.CopyFrom(connect)
    bad_ip.provider_endpoint.app_ips.append("10.9.9.9")
    code, details = await _code(stub.ConnectOverlay(bad_ip))
    assert code == INVALID and "outside" in details
    con = await stub.ConnectOverlay(connect)
    assert con.consumer_endpoint.vni == res.candidates[1].vni
    assert list(con.consumer_endpoint.app_ips) == [
        res.consumer_endpoint.subnet.replace("0/24", "1")
    ]
    code, _ = await _code(stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    for req in (
        pb.VerifyTrafficRequest(federation_id="f", count=1001),
        pb.VerifyTrafficRequest(federation_id="f", interval_ms=1001),
        pb.VerifyTrafficRequest(federation_id="f", timeout_ms=10001),
    ):
        code, _ = await _code(stub.VerifyTraffic(req))
        assert code == INVALID
    code, _ = await _code(stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id="zzz")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await _code(stub.DeleteApp(pb.DeleteAppRequest(name="client")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="f"))
    await stub.DeleteApp(pb.DeleteAppRequest(name="client"))


async def test_health_and_reflection(meo, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    config = make_config("sys-h", tmp_path)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server, port = await serve(config, None, orchestrator=orch, listen="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="mecfed.v1.MecOrchestrator")
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)

"""The Docker VIM's errors, in our words: a missing image, CPU or memory
beyond the host, an unreachable engine, any other engine refusal; each
through the driver and through a real MEO server, leaving no container."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import docker
import grpc
import pytest
from meo_fakes import FakeNet, code_of, deploy_request, spec
from meo_helpers import PREFIX, make_config

from mecfed.errors import DeploymentFailed, FailedPrecondition, ResourceExhausted, Unavailable
from mecfed.v1 import common_pb2, orchestrator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as pb
from meo.orchestrator import Orchestrator
from meo.server import allow_any_caller, serve
from meo.vim.base import LABEL_APP, LABEL_SYSTEM, Resources
from meo.vim.docker import DockerVim

docker_engine = pytest.mark.integration
ABSENT = "mfmeo/absent:0"


@pytest.fixture
def system_id() -> Iterator[str]:
    sid = f"{PREFIX}d{secrets.token_hex(3)}"
    yield sid
    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_SYSTEM}={sid}"}):
        c.remove(force=True)


def _containers(system_id: str) -> list[str]:
    client = docker.from_env()
    return [
        c.name
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_SYSTEM}={system_id}"})
    ]


def _host() -> tuple[int, int]:
    info = docker.from_env().info()
    return int(info["NCPU"]), int(info["MemTotal"])


BEST_EFFORT = Resources()


async def _create(vim: DockerVim, app: str, image: str, resources: Resources = BEST_EFFORT):
    return await vim.create_instance(
        f"mecfed-{vim.system_id}-{app}-{secrets.token_hex(2)}",
        image,
        {LABEL_APP: app},
        resources,
        {"ECHO_PORT": "7"},
    )


@docker_engine
async def test_a_missing_image_is_named_as_such(echo_image, system_id):
    vim = DockerVim(system_id)
    with pytest.raises(FailedPrecondition) as err:
        await vim.check_image(ABSENT)
    assert ABSENT in err.value.message and "built or loaded locally" in err.value.message
    with pytest.raises(FailedPrecondition) as err:
        await _create(vim, "web", ABSENT)
    assert "not found on host" in err.value.message
    assert _containers(system_id) == []


@docker_engine
async def test_cpu_or_memory_beyond_the_host_is_resource_exhausted(echo_image, system_id):
    cpus, memory = _host()
    vim = DockerVim(system_id)
    if (cpus + 1) * 1000 <= 64_000:
        with pytest.raises(ResourceExhausted) as err:
            await _create(vim, "web", echo_image, Resources(cpu_millicores=(cpus + 1) * 1000))
        assert f"has {cpus} CPUs" in err.value.message and "app web" in err.value.message
    memory_mib = memory // 2**20 + 1
    if memory_mib <= 256 * 1024:
        with pytest.raises(ResourceExhausted) as err:
            await _create(vim, "web", echo_image, Resources(memory_mib=memory_mib))
        assert f"{memory_mib} MiB" in err.value.message
    assert _containers(system_id) == []
    ok = await _create(vim, "web", echo_image, Resources(cpu_millicores=cpus * 1000))
    assert ok.running


@docker_engine
async def test_other_engine_refusals_are_deployment_failed_without_docker_text(
    echo_image, system_id
):
    vim = DockerVim(system_id)
    first = await _create(vim, "web", echo_image)
    with pytest.raises(DeploymentFailed) as err:  # the same name again: a 409 from the engine
        await vim.create_instance(first.name, echo_image, {LABEL_APP: "web"}, Resources())
    assert err.value.message == f"could not start container for app web on {vim.host}"
    assert _containers(system_id) == [first.name]


async def test_an_unreachable_engine_is_unavailable(monkeypatch, system_id):
    monkeypatch.setenv("DOCKER_HOST", f"unix:///nonexistent/{system_id}.sock")
    vim = DockerVim(system_id)
    for call in (vim.list_instances(), vim.get_instance("x"), vim.check_image("a:1")):
        with pytest.raises(Unavailable) as err:
            await call
        assert err.value.message == f"the Docker engine of host {vim.host} is not reachable"
    with pytest.raises(Unavailable):
        await _create(vim, "web", "mecfed/echo:1")


# --- through a real server ----------------------------------------------------------


@pytest.fixture
async def docker_meo(
    tmp_path, system_id
) -> AsyncIterator[orchestrator_pb2_grpc.MecOrchestratorStub]:
    config = make_config(system_id, tmp_path, vxlan_port_range=(4791, 4889))
    vim = DockerVim(system_id)
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server = await serve(
        config, None, orchestrator=orch, listen="127.0.0.1:0", access=allow_any_caller
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield orchestrator_pb2_grpc.MecOrchestratorStub(channel)
    finally:
        await server.stop(None)


@docker_engine
async def test_server_answers_docker_failures_with_their_codes(echo_image, system_id, docker_meo):
    stub = docker_meo
    cpus, _ = _host()
    code, details = await code_of(
        stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec(image=ABSENT, replicas=2)))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not found" in details
    if (cpus + 1) * 1000 <= 64_000:
        too_big = common_pb2.Resources(cpu_millicores=(cpus + 1) * 1000)
        code, _ = await code_of(
            stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec(resources=too_big)))
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, details = await code_of(
        stub.DeployFederatedService(deploy_request(app=spec(image=ABSENT)))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "build or load" in details
    assert _containers(system_id) == []
    assert (await stub.ListApps(pb.ListAppsRequest())).apps == []


async def test_server_answers_an_unreachable_engine_with_unavailable(
    monkeypatch, system_id, docker_meo
):
    monkeypatch.setenv("DOCKER_HOST", f"unix:///nonexistent/{system_id}.sock")
    code, details = await code_of(
        docker_meo.CreateApp(pb.CreateAppRequest(name="web", spec=spec()))
    )
    assert code == grpc.StatusCode.UNAVAILABLE and "not reachable" in details
    assert (await docker_meo.ListApps(pb.ListAppsRequest())).apps == []

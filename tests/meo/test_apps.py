"""App lifecycle through a real server (fake VIM, no root): validation,
create / get / list / scale / delete, all-or-nothing instance creation, and
hostile requests that must be refused with the right code and leave nothing."""

from __future__ import annotations

import grpc
import pytest
from meo_fakes import INVALID, bad_field, code_of, recorded, spec

from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb

_code = code_of
_spec = spec


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
    assert [a["name"] for a in recorded(orch, "apps")] == ["web"]
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
    # DeploymentFailed is an Aborted (rolled back, may succeed elsewhere): ABORTED.
    assert code == grpc.StatusCode.ABORTED and "not found" in details
    assert next(iter(orch.vims.values())).instances == {}


# --- hostile requests ------------------------------------------------------------


def _res(**kw) -> common_pb2.Resources:
    return common_pb2.Resources(**kw)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CreateAppRequest(name="web"), "spec"),  # no spec at all
        (pb.CreateAppRequest(spec=_spec()), "name"),
        (pb.CreateAppRequest(name="-web", spec=_spec()), "name"),
        (pb.CreateAppRequest(name="web", spec=_spec(image="Mecfed/Echo:1")), "spec.image"),
        (pb.CreateAppRequest(name="web", spec=_spec(image="echo:1 ; rm")), "spec.image"),
        (
            pb.CreateAppRequest(name="web", spec=_spec(resources=_res(memory_mib=3))),
            "spec.resources.memory_mib",
        ),
        (
            pb.CreateAppRequest(name="web", spec=_spec(resources=_res(memory_mib=256 * 1024 + 1))),
            "spec.resources.memory_mib",
        ),
        (
            pb.CreateAppRequest(name="web", spec=_spec(resources=_res(cpu_millicores=64_001))),
            "spec.resources.cpu_millicores",
        ),
        (pb.CreateAppRequest(name="web", spec=_spec(replicas=0)), "spec.replicas"),
        (pb.CreateAppRequest(name="web", spec=_spec(echo_port=65536)), "spec.echo_port"),
    ],
)
async def test_create_app_refuses_bad_input_and_leaves_nothing(env, request_, field):
    assert await bad_field(env.stub.CreateApp(request_)) == [field]
    assert env.leftovers() == {}
    assert env.vim.creates == 0  # refused before any instance was asked for


@pytest.mark.parametrize("method", ["GetApp", "DeleteApp"])
@pytest.mark.parametrize("name", ["", "UPPER", "a_b", "x" * 64])
async def test_app_name_is_checked(env, method, name):
    request = getattr(pb, f"{method}Request")(name=name)
    assert await bad_field(getattr(env.stub, method)(request)) == ["name"]


async def test_scale_refuses_bad_input(env):
    stub = env.stub
    await stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec(replicas=2)))
    assert await bad_field(stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=0))) == [
        "replicas"
    ]
    assert await bad_field(stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=17))) == [
        "replicas"
    ]
    assert await bad_field(stub.ScaleApp(pb.ScaleAppRequest(name="Web", replicas=1))) == ["name"]
    code, _ = await code_of(stub.ScaleApp(pb.ScaleAppRequest(name="other", replicas=1)))
    assert code == grpc.StatusCode.NOT_FOUND
    app = await stub.GetApp(pb.GetAppRequest(name="web"))
    assert len(app.instances) == 2 and app.spec.replicas == 2  # untouched
    assert env.leftovers(keep_apps=("web",)) == {}


async def test_unknown_apps_are_not_found(env):
    for call in (
        env.stub.GetApp(pb.GetAppRequest(name="ghost")),
        env.stub.DeleteApp(pb.DeleteAppRequest(name="ghost")),
        env.stub.ScaleApp(pb.ScaleAppRequest(name="ghost", replicas=1)),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND and "ghost" in details


async def test_a_raw_vim_failure_half_way_is_rolled_back_in_our_words(env):
    env.vim.fail_on_create = 2  # the second replica's VIM call blows up
    code, details = await code_of(
        env.stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec(replicas=3)))
    )
    assert code == grpc.StatusCode.ABORTED
    assert "could not start app web" in details
    assert "raw engine text" not in details and "EIO" not in details
    assert env.leftovers() == {}


async def test_scale_up_failure_keeps_the_app_as_it_was(env):
    await env.stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec(replicas=1)))
    env.vim.fail_on_create = 3  # the second of the two new replicas
    code, _ = await code_of(env.stub.ScaleApp(pb.ScaleAppRequest(name="web", replicas=3)))
    assert code == grpc.StatusCode.ABORTED
    app = await env.stub.GetApp(pb.GetAppRequest(name="web"))
    assert len(app.instances) == 1 and len(env.vim.instances) == 1


async def test_the_app_view_reports_what_runs(env):
    app = await env.stub.CreateApp(
        pb.CreateAppRequest(
            name="web",
            spec=_spec(replicas=2, echo_port=9, resources=_res(cpu_millicores=500, memory_mib=64)),
        )
    )
    assert (app.spec.image, app.spec.replicas, app.spec.echo_port) == ("mecfed/echo:1", 2, 9)
    assert (app.spec.resources.cpu_millicores, app.spec.resources.memory_mib) == (500, 64)
    assert all(i.state == common_pb2.INSTANCE_STATE_READY for i in app.instances)
    assert {i.labels["mecfed.app"] for i in env.vim.instances.values()} == {"web"}
    listed = (await env.stub.ListApps(pb.ListAppsRequest())).apps
    assert [a.name for a in listed] == ["web"] and listed[0] == app

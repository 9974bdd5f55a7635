"""The persisted state (sqlite): what is written after each change, a
restart that reads it back, reconcile against what still runs, cleanup
after a crash, and the JSON file of earlier versions (imported once)."""

from __future__ import annotations

import json

import pytest
from meo_fakes import FakeNet, FakeVim, recorded, running_meo, spec
from meo_fakes import deploy_request as _deploy
from meo_fakes import reserved as _reserved
from meo_helpers import make_config

from mecfed.errors import NotFound
from mecfed.model import AppSpec, InstanceState, Resources, Role
from mecfed.storage import MEMORY
from mecfed.v1 import orchestrator_pb2 as pb
from meo.network import LinkNames
from meo.orchestrator import Orchestrator
from meo.records import AppRecord, InstanceRecord
from meo.state import State, open_database


def _restarted(env) -> Orchestrator:
    """A second MEO on the same state file, VIM and host (as after a restart)."""
    orch = Orchestrator(env.orch.config, {env.vim.host: env.vim}, net=env.net)
    orch.load()
    return orch


async def test_every_change_is_written_atomically(env):
    await env.stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec(replicas=2)))
    _, connect = await _reserved(env)
    await env.stub.ConnectOverlay(connect)
    await env.stub.DeployFederatedService(_deploy())
    names = {a["name"] for a in recorded(env.orch, "apps")}
    assert {"client", "web"} < names and len(names) == 3
    assert {f["federation_id"]: f["role"] for f in recorded(env.orch, "federations")} == {
        "f": "consumer",
        "fed-1": "provider",
    }
    assert {r["federation_id"] for r in recorded(env.orch, "reservations")} == {
        "f",
        "sys-b/fed-1",
    }
    assert env.orch.state.intents() == []  # every intent settled by its record


async def test_a_restart_finds_what_it_made(env):
    await env.stub.CreateApp(pb.CreateAppRequest(name="client", spec=spec()))
    _, connect = await _reserved(env, app=None)
    con = await env.stub.ConnectOverlay(connect)
    dep = await env.stub.DeployFederatedService(_deploy())
    again = _restarted(env)
    assert again.summary() == env.orch.summary()
    assert again.get_app("client") == env.orch.get_app("client")
    status = await again.service_status("f")
    assert status.role == Role.CONSUMER and status.local_endpoint is not None
    assert status.local_endpoint.app_ips == tuple(con.consumer_endpoint.app_ips)
    status = await again.service_status("fed-1", "sys-b")
    assert status.local_endpoint is not None and status.consumer_id == "sys-b"
    assert status.local_endpoint.vni == dep.provider_endpoint.vni
    # And it goes on from there: releasing works on the reloaded records.
    await again.release_service("fed-1", "sys-b")
    assert not any(i.labels.get("mecfed.federation") for i in env.vim.instances.values())
    assert again.summary()["federations"] == ["f"]


async def test_reconcile_releases_broken_federations_and_restores_apps(env):
    await env.stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec(replicas=2)))
    _, connect = await _reserved(env, app=None)
    await env.stub.CreateApp(pb.CreateAppRequest(name="client", spec=spec()))
    await env.stub.ConnectOverlay(connect)
    await env.stub.DeployFederatedService(_deploy())
    web = env.orch.get_app("web")
    provider_app = next(a for a in env.orch.list_apps() if a.federation_id == "fed-1")
    env.vim.instances.pop(web.instances[0].instance_id)  # died while the MEO was down
    env.vim.dead.add(provider_app.instances[1].instance_id)
    again = _restarted(env)
    await again.reconcile()
    assert again.summary()["federations"] == ["f"]  # the consumer end still has its app
    assert "sys-b/fed-1" not in env.net.links
    assert "sys-b/fed-1" not in again.summary()["reservations"]
    restored = again.get_app("web")
    assert len(restored.instances) == 2
    assert restored.instances[0].instance_id == web.instances[1].instance_id
    assert not any(i.labels.get("mecfed.federation") for i in env.vim.instances.values())


async def test_cleanup_removes_everything_recorded_or_not(env):
    await env.stub.CreateApp(pb.CreateAppRequest(name="client", spec=spec()))
    _, connect = await _reserved(env, app=None)
    await env.stub.ConnectOverlay(connect)
    await env.stub.DeployFederatedService(_deploy())
    # A half-made overlay nobody recorded.
    env.net.links["crashed-fed"] = [
        LinkNames(env.orch.installation, "abcdef", "crashed-fed").bridge
    ]
    await env.vim.create_instance("mecfed-sys-a-stray-1", "x", {}, Resources())
    await _restarted(env).cleanup_all()
    assert env.net.links == {} and env.vim.instances == {}
    for table in ("apps", "federations", "reservations"):
        assert recorded(env.orch, table) == []


# The file an earlier MEO version wrote (meo/model.py's to_dict forms).
OLD_STATE = {
    "system_id": "sys-a",
    "apps": [
        {
            "name": "web",
            "spec": {
                "image": "mecfed/echo:1",
                "replicas": 1,
                "resources": {"cpu_millicores": 250, "memory_mib": 32},
                "echo_port": 7,
            },
            "instances": [
                {"id": "c1", "host": "fake-host", "overlay_ips": {"f": "172.30.0.1"}, "state": 2}
            ],
            "federation_id": "",
        }
    ],
    "federations": [
        {
            "federation_id": "f",
            "role": "consumer",
            "app_name": "web",
            "local": {
                "underlay_ip": "192.0.2.1",
                "vni": 1000,
                "udp_port": 4789,
                "subnet": "172.30.0.0/24",
                "app_ips": ["172.30.0.1"],
            },
            "remote": {
                "underlay_ip": "192.0.2.2",
                "vni": 1000,
                "udp_port": 4789,
                "subnet": "172.30.0.0/24",
                "app_ips": ["172.30.0.129"],
            },
            "links": ["mfbx", "mfxx", "mfvx0"],
            "peer_id": "",
            "connected": True,
        }
    ],
    "reservations": [
        {"federation_id": "f", "candidates": [[1000, 4789]], "subnet": "172.30.0.0/24"}
    ],
}


def test_the_previous_file_format_is_imported_once(tmp_path):
    path = tmp_path / "meo-sys-a.json"
    path.write_text(json.dumps(OLD_STATE))
    state = State(open_database(tmp_path / "meo.db"), "sys-a", path)
    state.load()
    assert not path.exists() and path.with_name("meo-sys-a.json.imported").exists()
    app = state.app("web")
    assert app.spec == AppSpec("mecfed/echo:1", 1, Resources(250, 32), 7)
    assert app.instances == [InstanceRecord("c1", "fake-host", {"f": "172.30.0.1"})]
    assert app.instances[0].state is InstanceState.READY
    fed = state.federation(("", "f"))
    assert fed.role is Role.CONSUMER and fed.connected and fed.remote is not None
    assert fed.remote.app_ips == ("172.30.0.129",)
    assert state.reservations["f"].candidates[0].udp_port == 4789
    assert state.federations_using("web") == ["f"]
    again = State(state.db, "sys-a", path)
    again.load()  # from the database now, the same records
    assert again.apps == state.apps and again.federations == state.federations
    rows = [json.loads(r["data"]) for r in state.db.query("SELECT data FROM meo_federations")]
    assert rows == OLD_STATE["federations"]


def test_an_unreadable_record_is_skipped_not_fatal(tmp_path, caplog):
    broken = json.loads(json.dumps(OLD_STATE))
    broken["apps"].append({"name": "bad", "spec": {"image": "UPPER", "replicas": 1}})
    broken["apps"].append({"name": "worse"})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(broken))
    state = State(open_database(MEMORY), "sys-a", path)
    state.load()
    assert sorted(state.apps) == ["web"]
    assert "skipping an unreadable app record" in caplog.text


def test_lookups_of_unknown_records_are_not_found(tmp_path):
    state = State(open_database(tmp_path / "s.db"), "sys-a", tmp_path / "none.json")
    state.load()  # nothing was left
    with pytest.raises(NotFound):
        state.app("web")
    with pytest.raises(NotFound, match="of consumer sys-b"):
        state.federation(("sys-b", "f"))
    state.apps["web"] = AppRecord("web", AppSpec("mecfed/echo:1"))
    assert state.summary() == {"apps": ["web"], "federations": [], "reservations": []}


async def test_two_meos_keep_separate_files(tmp_path):
    async with running_meo(tmp_path / "a") as a, running_meo(tmp_path / "b") as b:
        await a.stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec()))
        assert a.orch.state_file != b.orch.state_file
        assert b.orch.summary()["apps"] == []


def test_the_state_file_defaults_to_the_state_dir(tmp_path):
    config = make_config("sys-z", tmp_path)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    assert orch.state_file == tmp_path / "meo-sys-z.db"
    # The installation id is made once and kept with the state.
    again = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    assert again.installation == orch.installation and len(orch.installation) == 16


def test_a_previous_provider_record_moves_to_its_consumer_key(tmp_path):
    """Earlier versions keyed a provider's reservation and addresses by the
    federation id alone: imported, they follow the (consumer, id) key, so a
    release by that key frees the tunnel."""
    old = json.loads(json.dumps(OLD_STATE))
    old["federations"].append(
        {
            "federation_id": "fed-9",
            "role": "provider",
            "app_name": "fed-old",
            "links": ["mfb12345678"],
            "peer_id": "sys-b",
            "connected": True,
        }
    )
    old["reservations"].append({"federation_id": "fed-9", "candidates": [[77, 4800]]})
    old["apps"].append(
        {
            "name": "fed-old",
            "spec": {"image": "mecfed/echo:1", "replicas": 1},
            "instances": [{"id": "c9", "host": "fake-host", "overlay_ips": {"fed-9": "x"}}],
            "federation_id": "fed-9",
        }
    )
    path = tmp_path / "meo-sys-a.json"
    path.write_text(json.dumps(old))
    state = State(open_database(MEMORY), "sys-a", path)
    state.load()
    assert sorted(state.reservations) == ["f", "sys-b/fed-9"]
    assert state.federation(("sys-b", "fed-9")).links == ["mfb12345678"]
    assert state.app("fed-old").instances[0].overlay_ips == {"sys-b/fed-9": "x"}
    assert state.app("web").instances[0].overlay_ips == {"f": "172.30.0.1"}


async def test_reconcile_removes_what_intents_name_and_what_no_record_owns(env):
    """A killed MEO left: a container it announced but never recorded, the
    links of an overlay it announced, a container of this installation with
    no intent at all (e.g. its intent row was settled by a rollback whose
    delete then failed) and a half-made overlay's links found only by their
    alias. A restarted MEO removes them all; it keeps what records own and
    the warm pool's idle spares."""
    await env.stub.CreateApp(pb.CreateAppRequest(name="web", spec=spec()))
    state = env.orch.state
    state.intend("instance", "mecfed-sys-a-x-fed-1-aaaaaa", "sys-b/fed-1", env.vim.host)
    await env.vim.create_instance(
        "mecfed-sys-a-x-fed-1-aaaaaa", "i", {"mecfed.app": "a"}, Resources()
    )
    await env.vim.create_instance(
        "mecfed-sys-a-x-fed-2-bbbbbb", "i", {"mecfed.app": "b"}, Resources()
    )
    await env.vim.create_instance(
        "mecfed-sys-a-x-pool-cccccc", "i", {"mecfed.pool": "k"}, Resources()
    )
    state.intend("overlay", "abcdef", "sys-b/fed-1")
    for tag, key in (("abcdef", "sys-b/fed-1"), ("fedcba", "sys-b/fed-2")):
        names = LinkNames(env.orch.installation, tag, key)
        env.net.links[key] = [names.bridge, names.vxlan]
    again = _restarted(env)
    await again.reconcile()
    assert env.net.links == {} and again.state.intents() == []
    left = sorted(i.name for i in env.vim.instances.values())
    web = [i.instance_id for i in again.get_app("web").instances]
    assert left == sorted(["mecfed-sys-a-x-pool-cccccc", *web])


def test_the_pool_claims_of_an_earlier_version_are_imported(tmp_path):
    from meo.state import DbClaims

    legacy = tmp_path / "warm-pool.json"
    legacy.write_text(json.dumps({"c1": {"mecfed.app": "fed-x"}}))
    db = open_database(tmp_path / "meo.db")
    claims = DbClaims(db, legacy)
    assert claims.load() == {"c1": {"mecfed.app": "fed-x"}} and not legacy.exists()
    claims.save({})
    assert DbClaims(db, legacy).load() == {}

"""Two MEO installations with the same system id on one Docker engine (two
testbeds, say), each with a warm pool: neither adopts, claims, renames nor
deletes the other's containers, whether it starts, deploys, reconciles or
cleans up. Real Docker, fake host networking (the links are covered by
test_network and test_recovery)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from meo_fakes import FakeNet, deploy_request
from meo_helpers import PREFIX, make_config

from mecfed.model.checks import DEFAULT_ECHO_PORT
from mecfed.wire.orchestrator import deploy_from_proto
from meo.orchestrator import Orchestrator, state_path
from meo.state import DbClaims, installation_id, open_database
from meo.vim.base import LABEL_INSTALLATION, LABEL_SYSTEM
from meo.vim.docker import DockerVim
from meo.vim.pool import PooledVim, PoolTemplate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def system_id(echo_image: str) -> Iterator[str]:
    sid = f"{PREFIX}i{secrets.token_hex(3)}"
    yield sid
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_SYSTEM}={sid}"}):
        c.remove(force=True)


def _meo(system_id: str, state_dir: Path) -> Orchestrator:
    config = make_config(system_id, state_dir, underlay_ip="192.0.2.1")
    db = open_database(state_path(config))
    inner = DockerVim(system_id, installation=installation_id(db))
    template = PoolTemplate("mecfed/echo:1", env=(("ECHO_PORT", str(DEFAULT_ECHO_PORT)),))
    pool = PooledVim(inner, template, 1, DbClaims(db), refill_delay=60)
    return Orchestrator(config, {pool.host: pool}, db=db, net=FakeNet())


def _containers(system_id: str) -> dict[str, tuple[str, str]]:
    """id -> (name, installation) of every container of ``system_id``, running or not."""
    rows = docker.from_env().containers.list(
        all=True, filters={"label": f"{LABEL_SYSTEM}={system_id}"}
    )
    return {
        c.id: (c.name, c.labels.get(LABEL_INSTALLATION, "")) for c in rows if c.status == "running"
    }


async def test_installations_with_the_same_system_id_leave_each_other_alone(
    system_id: str, tmp_path: Path
) -> None:
    a = _meo(system_id, tmp_path / "a")
    await a.reconcile()
    await a.warm_up()
    order = deploy_from_proto(deploy_request())
    await a.deploy_federated_service(order)  # claims A's spare, starts one cold
    mine = _containers(system_id)
    assert len(mine) == 2 and {inst for _, inst in mine.values()} == {a.installation}

    b = _meo(system_id, tmp_path / "b")
    assert b.installation != a.installation
    await b.reconcile()  # sweeps orphans: none of A's are B's
    await b.warm_up()  # its own spare, not A's containers
    await b.deploy_federated_service(order)  # the same ids: another installation's federation
    both = _containers(system_id)
    assert {k: v for k, v in both.items() if k in mine} == mine  # A's untouched, names too
    theirs = {k for k, (_, inst) in both.items() if inst == b.installation}
    assert len(theirs) == 2  # its two replicas, one of them its claimed spare

    await b.cleanup_all()
    assert _containers(system_id) == mine
    await a.release_service(order.federation_id, order.consumer_id)
    assert _containers(system_id) == {}
    for orch in (a, b):
        await orch.close()

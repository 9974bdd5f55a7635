"""The warm pool on a real Docker engine: claims hand out started spares,
keep the claim's labels across a restart, and refill after a quiet spell."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import docker
import pytest
from meo_helpers import PREFIX

from meo.vim.base import LABEL_FEDERATION, LABEL_SYSTEM, Resources
from meo.vim.docker import DockerVim
from meo.vim.pool import LABEL_POOL, PooledVim, PoolTemplate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ENV = {"ECHO_PORT": "7"}


@pytest.fixture
def system_id() -> str:
    sid = f"{PREFIX}pool{secrets.token_hex(3)}"
    yield sid
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_SYSTEM}={sid}"}):
        c.remove(force=True)


def _pool(system_id: str, image: str, state: Path, size: int = 2) -> PooledVim:
    template = PoolTemplate(image, env=tuple(ENV.items()))
    return PooledVim(DockerVim(system_id), template, size, state, refill_delay=0.2)


async def _wait_idle(pool: PooledVim, want: int) -> None:
    for _ in range(200):
        if pool.idle == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"pool holds {pool.idle} spares, expected {want}")


async def test_claim_relabel_refill_and_restart(
    echo_image: str, system_id: str, tmp_path: Path
) -> None:
    state = tmp_path / "warm-pool.json"
    pool = _pool(system_id, echo_image, state)
    await pool.fill()
    spares = await pool.inner.list_instances({LABEL_POOL: pool.template.key})
    assert pool.idle == 2 and len(spares) == 2 and all(s.running and s.pid for s in spares)

    labels = {LABEL_FEDERATION: "fed-1", "mecfed.app": "fed-app"}
    inst = await pool.create_instance(
        f"mecfed-{system_id}-app-1", echo_image, labels, Resources(), ENV
    )
    assert inst.id in {s.id for s in spares}, "a matching request claims a spare"
    assert inst.name == f"mecfed-{system_id}-app-1" and inst.running and inst.pid
    assert inst.labels[LABEL_FEDERATION] == "fed-1"
    assert [i.id for i in await pool.list_instances({LABEL_FEDERATION: "fed-1"})] == [inst.id]

    # Another port means another env: not the template, so a cold start.
    cold = await pool.create_instance(
        f"mecfed-{system_id}-app-2", echo_image, {}, Resources(), {"ECHO_PORT": "9"}
    )
    assert cold.id not in {s.id for s in spares}

    await _wait_idle(pool, 2)  # refilled after the quiet spell
    await pool.close()

    # A restarted MEO adopts the spares and still knows the claim's labels.
    again = _pool(system_id, echo_image, state)
    await again.fill()
    assert again.idle == 2
    assert len(await again.inner.list_instances({LABEL_POOL: again.template.key})) == 3
    found = await again.list_instances({LABEL_FEDERATION: "fed-1"})
    assert [i.id for i in found] == [inst.id]

    await again.delete_instance(inst.id)
    assert await again.get_instance(inst.id) is None
    assert "fed-1" not in state.read_text()
    await again.close()


async def test_template_mismatch_and_empty_pool_start_cold(
    echo_image: str, system_id: str, tmp_path: Path
) -> None:
    pool = _pool(system_id, echo_image, tmp_path / "p.json", size=1)
    await pool.fill()
    first = await pool.create_instance(f"mecfed-{system_id}-a", echo_image, {}, Resources(), ENV)
    second = await pool.create_instance(f"mecfed-{system_id}-b", echo_image, {}, Resources(), ENV)
    assert first.running and second.running and first.id != second.id
    limited = await pool.create_instance(
        f"mecfed-{system_id}-c", echo_image, {}, Resources(memory_mib=64), ENV
    )
    assert limited.running
    await pool.close()


def test_pool_size_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        PooledVim(DockerVim("x"), PoolTemplate("img"), -1, tmp_path / "p.json")


async def test_listing_skips_containers_removed_meanwhile(
    echo_image: str, system_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release lists the system's containers while other releases remove
    theirs: one that vanishes between the listing and its inspection is
    skipped, not an error (it was a NotFound that failed terminations)."""
    from docker.models.containers import ContainerCollection

    pool = _pool(system_id, echo_image, tmp_path / "p.json", size=2)
    await pool.fill()
    a = await pool.create_instance(f"mecfed-{system_id}-a", echo_image, {}, Resources(), ENV)
    real_get = ContainerCollection.get

    def get(self: ContainerCollection, container_id: str) -> Any:
        if a.id.startswith(container_id) or container_id.startswith(a.id):
            raise docker.errors.NotFound("gone meanwhile")
        return real_get(self, container_id)

    monkeypatch.setattr(ContainerCollection, "get", get)
    listed = await pool.list_instances()
    monkeypatch.undo()
    assert a.id not in {i.id for i in listed} and len(listed) == 1
    await pool.close()

"""A warm pool in front of the Docker VIM: the MEO keeps a few containers of
its usual app already started, so a deployment claims one (rename, nothing
else) instead of paying for a container start when a federation is on the
clock. Requests that do not match the pool's template start cold as before.

Docker labels cannot change after creation, so the labels a claim adds
(federation, app) are kept here and persisted (:class:`ClaimStore`: the
MEO's database, or a JSON file for a pool used on its own); a MEO that
restarts still finds a claimed container by its federation label.

The pool belongs to one MEO installation, not to a system id: its spares
are found through the inner driver, which lists only its installation's
containers, so a second installation with the same system id on the host
neither adopts, renames nor deletes them. The claims are loaded when the
pool is made, so a reconcile that runs before :meth:`PooledVim.fill` sees a
claimed container as claimed (and removes it if no record owns it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from meo.vim.base import Instance, Resources, VimDriver, name_prefix

log = logging.getLogger(__name__)

LABEL_POOL = "mecfed.pool"  # the template's key; on idle and claimed members


class ClaimStore(Protocol):
    """Where the labels of claimed containers are kept: id -> labels."""

    def load(self) -> dict[str, dict[str, str]]: ...

    def save(self, claims: dict[str, dict[str, str]]) -> None: ...


class JsonClaims:
    """A JSON file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def save(self, claims: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(claims, indent=1))
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class PoolTemplate:
    """What a pooled container runs; a create request must match it exactly."""

    image: str
    resources: Resources = field(default_factory=Resources)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        raw = json.dumps([self.image, asdict(self.resources), self.env], sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    def matches(self, image: str, resources: Resources, env: Mapping[str, str] | None) -> bool:
        return (image, resources, tuple(sorted((env or {}).items()))) == (
            self.image,
            self.resources,
            self.env,
        )


class PooledVim:
    """A :class:`~meo.vim.base.VimDriver` over another (the Docker VIM) with
    ``size`` started spares of ``template``. Refills wait until claims have
    been quiet for ``refill_delay`` s, so they do not compete with the burst
    of deployments they are meant to speed up."""

    def __init__(
        self,
        inner: VimDriver,
        template: PoolTemplate,
        size: int,
        claims: str | Path | ClaimStore,
        *,
        refill_delay: float = 2.0,
    ) -> None:
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.inner = inner
        self.host = inner.host
        self.system_id = inner.system_id
        self.installation = inner.installation
        self.template = template
        self.size = size
        self.refill_delay = refill_delay
        self._store = JsonClaims(claims) if isinstance(claims, str | Path) else claims
        self._idle: list[str] = []  # container ids, started, never handed out
        self._claimed: dict[str, dict[str, str]] = {}  # id -> labels added by the claim
        self._last_claim = 0.0
        self._refill: asyncio.Task[None] | None = None
        self._load()

    # --- pool upkeep ---------------------------------------------------------

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def fill(self) -> None:
        """Adopts the idle spares a previous run left, drops dead ones and
        starts new ones until the pool is full. Called once before serving."""
        await self.inner.fill()
        self._load()
        self._idle = []
        members = await self.inner.list_instances({LABEL_POOL: self.template.key})
        present = {m.id for m in members}
        self._claimed = {i: lab for i, lab in self._claimed.items() if i in present}
        for m in members:
            if m.id in self._claimed:
                continue
            if m.running and m.pid:
                self._idle.append(m.id)
            else:
                await self.inner.delete_instance(m.id)
        self._save()
        for _ in range(self.size - len(self._idle)):
            await self._add_spare()

    async def _add_spare(self) -> None:
        name = f"{name_prefix(self.system_id, self.installation)}pool-{secrets.token_hex(3)}"
        inst = await self.inner.create_instance(
            name,
            self.template.image,
            {LABEL_POOL: self.template.key},
            self.template.resources,
            env=dict(self.template.env),
        )
        self._idle.append(inst.id)

    def _schedule_refill(self) -> None:
        self._last_claim = time.monotonic()
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._refill_loop(), name="pool-refill")

    async def _refill_loop(self) -> None:
        failures = 0
        while len(self._idle) < self.size:
            quiet = time.monotonic() - self._last_claim
            if quiet < self.refill_delay:
                await asyncio.sleep(self.refill_delay - quiet)
                continue
            try:
                await self._add_spare()
                failures = 0
            except Exception:
                failures += 1
                log.warning("warm pool refill failed (%d)", failures, exc_info=True)
                if failures >= 5:
                    return  # cold starts still work; the next claim tries again
                await asyncio.sleep(min(2**failures, 30))

    async def close(self) -> None:
        """Stops refilling; spares stay for the next start (or ``cleanup``)."""
        if self._refill is not None:
            self._refill.cancel()
            await asyncio.gather(self._refill, return_exceptions=True)
        await self.inner.close()

    def _load(self) -> None:
        self._claimed = self._store.load()

    def _save(self) -> None:
        self._store.save(self._claimed)

    # --- VimDriver -------------------------------------------------------------

    async def check_image(self, image: str) -> None:
        await self.inner.check_image(image)

    async def rename_instance(self, instance_id: str, name: str) -> Instance | None:
        inst = await self.inner.rename_instance(instance_id, name)
        return self._with_claim(inst) if inst is not None else None

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        if self.size and self.template.matches(image, resources, env):
            inst = await self._claim(name, labels)
            if inst is not None:
                return inst
        return await self.inner.create_instance(name, image, labels, resources, env)

    async def _claim(self, name: str, labels: Mapping[str, str]) -> Instance | None:
        while self._idle:
            cid = self._idle.pop()
            # Recorded before the rename: after a crash the container is
            # still found by the labels of the federation that claimed it.
            self._claimed[cid] = dict(labels)
            self._save()
            self._schedule_refill()
            try:
                inst = await self.inner.rename_instance(cid, name)
            except Exception:  # a domain error from the VIM: drop the spare, try the next
                log.warning("pooled container %s unusable; dropping it", cid[:12], exc_info=True)
                inst = None
            if inst is None or not inst.running or not inst.pid:
                await self.delete_instance(cid)
                continue
            return self._with_claim(inst)
        return None

    def _with_claim(self, inst: Instance) -> Instance:
        extra = self._claimed.get(inst.id)
        if not extra:
            return inst
        return Instance(
            inst.id, inst.name, inst.pid, inst.netns_path, {**inst.labels, **extra}, inst.running
        )

    async def delete_instance(self, instance_id: str) -> None:
        await self.inner.delete_instance(instance_id)
        if instance_id in self._idle:
            self._idle.remove(instance_id)
        if self._claimed.pop(instance_id, None) is not None:
            self._save()

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]:
        want = dict(labels or {})
        if not want:
            return [self._with_claim(i) for i in await self.inner.list_instances()]
        # Docker filters on the labels it has; a claim's labels live here, so
        # only the claims that can match are inspected (releases call this).
        found = {i.id: self._with_claim(i) for i in await self.inner.list_instances(want)}
        for cid, extra in self._claimed.items():
            if cid in found or not any(k in extra for k in want):
                continue
            if all(extra.get(k, v) == v for k, v in want.items()):
                inst = await self.get_instance(cid)
                if inst is not None:
                    found[cid] = inst
        return [i for i in found.values() if all(i.labels.get(k) == v for k, v in want.items())]

    async def get_instance(self, instance_id: str) -> Instance | None:
        inst = await self.inner.get_instance(instance_id)
        return self._with_claim(inst) if inst is not None else None

"""App lifecycle: create, get, list, scale and delete the apps of this MEC
system, and the instance work every app needs (the overlay's provider apps
too): creating replicas all or nothing, deleting them, finding them alive.

Every instance is announced by an intent (:meth:`meo.state.State.intend`)
before its VIM call starts, and a VIM call cut short by a cancellation is
waited out and undone (:func:`meo.tasks.undo_if_cancelled`): a container
started by a worker thread after its request was cancelled does not stay.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace

from mecfed.errors import AlreadyExists, DeploymentFailed, FailedPrecondition, MecfedError
from mecfed.model import App, AppSpec
from meo.placement import HostSelector
from meo.records import AppRecord, InstanceRecord
from meo.state import INSTANCE, Intent, State
from meo.tasks import undo_if_cancelled
from meo.vim.base import LABEL_APP, Instance, VimDriver, instance_name

log = logging.getLogger(__name__)


class Apps:
    def __init__(self, system_id: str, state: State, placement: HostSelector) -> None:
        self.system_id = system_id
        self.state = state
        self.placement = placement
        self.vims: Mapping[str, VimDriver] = placement.vims
        # Test hook: called after each instance is started ("instance").
        self.fail_after: Callable[[str], None] | None = None

    # --- instances ---------------------------------------------------------

    async def check_image(self, image: str) -> None:
        """Fails before anything is made if a host cannot run ``image``."""
        for vim in self.vims.values():
            await vim.check_image(image)

    async def create_instances(
        self, app: str, spec: AppSpec, count: int, labels: Mapping[str, str], owner: str
    ) -> list[tuple[InstanceRecord, Instance]]:
        """Creates ``count`` replicas of ``spec``; all or nothing. A domain
        error of the VIM passes as it is; anything else is logged and
        becomes DeploymentFailed. Each replica's intent names ``owner``; the
        caller's :meth:`State.save` of the record holding them settles it."""
        made: list[tuple[InstanceRecord, Instance, Intent]] = []
        host = ""
        intent: Intent | None = None
        try:
            for host in self.placement.plan(count, self.state.host_load()):
                vim = self.vims[host]
                suffix = secrets.token_hex(3)
                name = instance_name(self.system_id, app, suffix, self.state.installation)
                intent = self.state.intend(INSTANCE, name, owner, host)
                inst = await undo_if_cancelled(
                    vim.create_instance(
                        name,
                        spec.image,
                        {**labels, LABEL_APP: app},
                        spec.resources,
                        env={"ECHO_PORT": str(spec.echo_port)},
                    ),
                    lambda i, vim=vim: vim.delete_instance(i.id),  # type: ignore[misc]
                    f"starting {name}",
                )
                made.append((InstanceRecord(id=inst.id, host=host, name=name), inst, intent))
                intent = None
                if self.fail_after:
                    self.fail_after("instance")
        except BaseException as exc:
            # A failed VIM call left nothing (the driver's contract), a
            # cancelled one was undone: its intent is settled with the
            # rolled-back ones. What could not be deleted keeps its intent.
            gone = await self.delete_quietly([r for r, _, _ in made])
            self.state.settle(
                [i for r, _, i in made if r in gone] + ([intent] if intent is not None else [])
            )
            if isinstance(exc, MecfedError) or not isinstance(exc, Exception):
                raise
            log.error("starting app %s on %s failed", app, host, exc_info=exc)
            raise DeploymentFailed(f"could not start app {app} on host {host}") from exc
        return [(r, inst) for r, inst, _ in made]

    async def delete_instances(self, records: list[InstanceRecord]) -> None:
        for rec in records:
            vim = self.vims.get(rec.host)
            if vim is not None:
                await vim.delete_instance(rec.id)

    async def delete_quietly(self, records: list[InstanceRecord]) -> list[InstanceRecord]:
        """Rollback: deletes what it can and logs the rest, so the caller
        reports the failure that made it roll back. Returns what it deleted."""
        gone = []
        for rec in records:
            vim = self.vims.get(rec.host)
            if vim is None:
                continue
            try:
                await vim.delete_instance(rec.id)
                gone.append(rec)
            except Exception:
                log.exception("rollback could not delete instance %s on %s", rec.id, rec.host)
        return gone

    async def live(self, rec: InstanceRecord) -> Instance:
        """The running instance behind ``rec``; FailedPrecondition if it is not."""
        inst = await self.vims[rec.host].get_instance(rec.id)
        if inst is None or not inst.running or not inst.pid:
            raise FailedPrecondition(f"instance {rec.id[:12]} on {rec.host} is not running")
        return inst

    async def exists(self, rec: InstanceRecord) -> bool:
        vim = self.vims.get(rec.host)
        if vim is None:
            return False
        inst = await vim.get_instance(rec.id)
        return inst is not None and inst.running

    async def sweep(self, labels: Mapping[str, str] | None = None) -> None:
        """Deletes every instance of this system with ``labels`` on every host
        (all of them without), whether recorded or left by a crash."""
        for vim in self.vims.values():
            for inst in await vim.list_instances(labels):
                await vim.delete_instance(inst.id)

    # --- lifecycle ---------------------------------------------------------

    async def create(self, name: str, spec: AppSpec) -> App:
        async with self.state.app_lock(name):
            if name in self.state.apps:
                raise AlreadyExists(f"app {name} already exists")
            made = await self.create_instances(name, spec, spec.replicas, {}, f"app:{name}")
            app = AppRecord(name, spec, [r for r, _ in made])
            self.state.apps[name] = app
            self.state.save()
            return app.view()

    def get(self, name: str) -> App:
        return self.state.app(name).view()

    def list(self) -> list[App]:
        return [self.state.apps[n].view() for n in sorted(self.state.apps)]

    def _require_own(self, app: AppRecord, doing: str) -> None:
        if app.federation_id:
            raise FailedPrecondition(
                f"app {app.name} belongs to federation {app.federation_id}; {doing}"
            )
        if feds := self.state.federations_using(app.name):
            raise FailedPrecondition(
                f"app {app.name} is attached to federation(s) {', '.join(feds)}; release them first"
            )

    async def scale(self, name: str, replicas: int) -> App:
        spec = replace(self.state.app(name).spec, replicas=replicas)  # the model checks it
        async with self.state.app_lock(name):
            app = self.state.app(name)
            self._require_own(app, "its size is fixed by the federation")
            if replicas > len(app.instances):
                made = await self.create_instances(
                    name, spec, replicas - len(app.instances), {}, f"app:{name}"
                )
                app.instances += [r for r, _ in made]
            elif replicas < len(app.instances):
                await self.delete_instances(app.instances[replicas:])
                app.instances = app.instances[:replicas]
            app.spec = spec
            self.state.save()
            return app.view()

    async def delete(self, name: str) -> None:
        self.state.app(name)
        async with self.state.app_lock(name):
            app = self.state.app(name)
            self._require_own(app, "use ReleaseService")
            await self.delete_instances(app.instances)
            self.state.apps.pop(name, None)
            self.state.save()

    async def restore(self, app: AppRecord) -> None:
        """After a restart: replaces the replicas of a local app that are
        gone, so it runs at its recorded size again."""
        present = [r for r in app.instances if await self.exists(r)]
        missing = len(app.instances) - len(present)
        if missing:
            log.warning("app %s lost %d instance(s); replacing them", app.name, missing)
            made = await self.create_instances(app.name, app.spec, missing, {}, f"app:{app.name}")
            app.instances = present + [r for r, _ in made]


__all__ = ["Apps"]

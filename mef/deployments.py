"""The provider's registry of deployments: every order this MEF accepts goes
through it, whichever way it arrived (InstallApp over Mff gRPC, or on the
chain's slow path from a ConsumerEndpoint event).

A deployment is keyed by (consumer, federation id): federation ids are the
consumer's names and may collide between consumers. Only the caller that
placed an order (its TLS identity) may watch or remove it. The record follows
OPG.04's app instance states, PENDING → READY | FAILED → TERMINATING →
TERMINATED, and wakes watchers on every change; a watch always ends with a
terminal state (READY, FAILED with the reason, or TERMINATED).

Records are durable (:mod:`mef.provider_store`): written before the step
they record is acted on, reloaded at start and settled by
:meth:`Deployments.recover` (called from the provider's reconcile). A
removal may come at any time: one in flight is cancelled and rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mecfed.errors import AlreadyExists, NotFound, ResourceExhausted
from mecfed.model import (
    AppInstanceDetails,
    DeploymentOrder,
    Installation,
    InstanceState,
    OverlayEndpoint,
    Problem,
)
from mecfed.storage import Database
from mef.provider_store import DeploymentRow, Key, ProviderStore
from mef.transport.base import Admission, OrderGate, ProviderHandler

log = logging.getLogger(__name__)

MAX_DEPLOYMENTS = 10_000
# Ended deployments stay readable (GetAppInstanceDetails) until this many
# newer ones ended.
KEEP_ENDED = 1_000


@dataclass
class Deployment:
    """One accepted order and what became of it."""

    app_instance_id: str
    federation_id: str
    consumer_id: str  # system id (direct) or chain address (chain)
    caller: str  # who placed the order: only it may watch or remove
    offer_ref: str
    state: InstanceState = InstanceState.PENDING
    endpoint: OverlayEndpoint | None = None
    error: Problem | None = None
    notice: bytes = b""
    version: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _removal: asyncio.Task[None] | None = field(default=None, repr=False)

    def details(self) -> AppInstanceDetails:
        return AppInstanceDetails(
            app_instance_id=self.app_instance_id,
            federation_id=self.federation_id,
            state=self.state,
            provider_endpoint=self.endpoint,
            error=self.error,
            deployment_notice=self.notice,
        )

    async def _set(self, state: InstanceState) -> None:
        async with self._changed:
            self.state = state
            self.version += 1
            self._changed.notify_all()

    async def changes(self) -> AsyncIterator[AppInstanceDetails]:
        """The current details, then every change, until a terminal state."""
        seen = -1

        def changed() -> bool:
            return self.version != seen

        while True:
            async with self._changed:
                await self._changed.wait_for(changed)
                seen = self.version
                details = self.details()
            yield details
            if details.state.terminal:
                return

    @property
    def key(self) -> Key:
        return (self.consumer_id, self.federation_id)

    @property
    def ended(self) -> bool:
        return self.state in (InstanceState.FAILED, InstanceState.TERMINATED)

    def row(self) -> DeploymentRow:
        return DeploymentRow(
            self.app_instance_id,
            self.federation_id,
            self.consumer_id,
            self.caller,
            self.offer_ref,
            self.state,
            self.endpoint,
            self.error,
            self.notice,
        )

    async def settled(self) -> None:
        """Waits until the deployment in flight (if any) finished or failed."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)


@dataclass(frozen=True)
class Recovered:
    """What :meth:`Deployments.recover` did, by (consumer, federation)."""

    kept: tuple[Key, ...] = ()
    rolled_back: tuple[Key, ...] = ()
    dropped: tuple[Key, ...] = ()
    finished: tuple[Key, ...] = ()  # removals the restart interrupted


RESTARTED = "the provider restarted during the deployment; it was rolled back"
GONE = "the provider's MEO no longer holds this deployment"
REMOVED = "removed during its deployment"
STOPPED = "the provider stopped during the deployment; it was rolled back"


class Deployments:
    """Every deployment of this provider, through one entry point each for
    installing and removing."""

    def __init__(
        self, provider: ProviderHandler, gate: OrderGate, *, db: Database | None = None
    ) -> None:
        self._provider = provider
        self._gate = gate
        self._store = ProviderStore(db)
        self._by_id: dict[str, Deployment] = {}
        self._by_key: dict[Key, str] = {}
        for row in self._store.deployments():
            deployment = Deployment(
                app_instance_id=row.app_instance_id,
                federation_id=row.federation_id,
                consumer_id=row.consumer_id,
                caller=row.caller,
                offer_ref=row.offer_ref,
                state=row.state,
                endpoint=row.endpoint,
                error=row.error,
                notice=row.notice,
            )
            self._by_id[deployment.app_instance_id] = deployment
            if not deployment.ended:
                self._by_key[deployment.key] = deployment.app_instance_id

    def __len__(self) -> int:
        return len(self._by_id)

    async def _update(self, deployment: Deployment, state: InstanceState) -> None:
        """Durable first, then watchers are woken."""
        deployment.state = state
        self._store.save_deployment(deployment.row())
        await deployment._set(state)

    async def install(self, installation: Installation, admission: Admission) -> Deployment:
        """Accepts the admitted order and starts deploying it in the
        background; returns the PENDING record at once. The offer's app is
        what gets deployed: the provider runs what it priced."""
        key = (admission.consumer_id, installation.federation_id)
        if key in self._by_key:
            raise AlreadyExists(f"federation {installation.federation_id} is already installed")
        self._prune()
        if len(self._by_id) >= MAX_DEPLOYMENTS:
            raise ResourceExhausted(f"too many app instances (at most {MAX_DEPLOYMENTS})")
        app = await self._provider.accept(
            admission.offer_ref, admission.consumer_id, installation.federation_id
        )
        deployment = Deployment(
            app_instance_id=f"inst-{secrets.token_hex(8)}",
            federation_id=installation.federation_id,
            consumer_id=admission.consumer_id,
            caller=admission.caller,
            offer_ref=admission.offer_ref,
        )
        try:
            order = DeploymentOrder(
                federation_id=installation.federation_id,
                consumer_id=admission.consumer_id,
                app=app,
                consumer_endpoint=installation.consumer_endpoint,
                candidates=installation.candidates,
            )
            self._store.save_deployment(deployment.row())
        except BaseException:
            # Nothing was started: the capacity just committed goes back.
            await self._provider.release(installation.federation_id, admission.consumer_id)
            raise
        self._by_id[deployment.app_instance_id] = deployment
        self._by_key[key] = deployment.app_instance_id
        deployment._task = asyncio.create_task(
            self._deploy(deployment, order), name=f"deploy {deployment.federation_id}"
        )
        return deployment

    async def _deploy(self, deployment: Deployment, order: DeploymentOrder) -> None:
        try:
            deployment.endpoint = await self._provider.deploy(order)
            deployment.notice = await self._gate.deployed(deployment)
        except asyncio.CancelledError:
            # Stopping: the provider rolled the MEO back; watchers still get
            # a final state.
            if deployment.state == InstanceState.PENDING:
                await self._fail(deployment, Problem("Unavailable", 503, STOPPED))
            raise
        except Exception as exc:
            if deployment.state != InstanceState.PENDING:
                return  # removed meanwhile: the removal ends it
            if deployment.endpoint is not None:  # deployed, but the gate failed it
                try:
                    await self._provider.release(deployment.federation_id, deployment.consumer_id)
                except Exception as release_error:
                    log.error(
                        "%s: could not release after a failed notice: %s",
                        deployment.federation_id,
                        release_error,
                    )
            log.warning("%s: deployment failed: %s", deployment.federation_id, exc)
            await self._fail(deployment, Problem.of(exc))
            try:
                await self._gate.failed(deployment)
            except Exception as gate_error:
                log.warning("%s: %s", deployment.federation_id, gate_error)
            return
        if deployment.state != InstanceState.PENDING:
            return  # removed while the notice was made: the removal ends it
        await self._update(deployment, InstanceState.READY)

    async def _fail(self, deployment: Deployment, problem: Problem) -> None:
        deployment.endpoint = None
        deployment.error = problem
        self._forget(deployment)
        await self._update(deployment, InstanceState.FAILED)

    def _prune(self) -> None:
        ended = [i for i, d in self._by_id.items() if d.ended]
        old = ended[: max(0, len(ended) - KEEP_ENDED)]
        for app_instance_id in old:
            del self._by_id[app_instance_id]  # insertion order: oldest first
        if old:
            self._store.delete_deployments(old)

    def _forget(self, deployment: Deployment) -> None:
        if self._by_key.get(deployment.key) == deployment.app_instance_id:
            del self._by_key[deployment.key]

    def get(self, app_instance_id: str, caller: str) -> Deployment:
        deployment = self._by_id.get(app_instance_id)
        if deployment is None or deployment.caller != caller:
            raise NotFound(f"app instance {app_instance_id!r} not found")
        return deployment

    def find(self, consumer_id: str, federation_id: str) -> Deployment | None:
        app_instance_id = self._by_key.get((consumer_id, federation_id))
        return self._by_id.get(app_instance_id) if app_instance_id else None

    def of_caller(self, federation_id: str, caller: str) -> Deployment:
        """The caller's deployment of ``federation_id``: the live one, else
        the latest that ended. Only the caller's own are found."""
        mine = [
            d
            for d in self._by_id.values()
            if d.federation_id == federation_id and d.caller == caller
        ]
        live = [d for d in mine if not d.ended]
        if not (live or mine):
            raise NotFound(f"no app instance of federation {federation_id!r} here")
        return (live or mine)[-1]

    async def remove(self, app_instance_id: str, caller: str) -> Deployment:
        """Tears a deployment down, in any state (idempotent for its owner).
        One still in flight is cancelled and rolled back."""
        deployment = self.get(app_instance_id, caller)
        return await self._remove(deployment)

    async def remove_by_federation(self, federation_id: str, caller: str) -> Deployment:
        """RemoveApp without the instance id (the consumer lost it)."""
        return await self._remove(self.of_caller(federation_id, caller))

    async def remove_federation(self, consumer_id: str, federation_id: str) -> None:
        """Removes the deployment of (consumer, federation), if any (the chain
        ended the service), and whatever the provider holds for it."""
        deployment = self.find(consumer_id, federation_id)
        if deployment is not None:
            await self._remove(deployment)
        else:
            await self._provider.release(federation_id, consumer_id)

    async def _remove(self, deployment: Deployment) -> Deployment:
        if deployment.ended:
            return deployment
        # Concurrent removals share one: each caller sees its outcome.
        if deployment._removal is None or deployment._removal.done():
            deployment._removal = asyncio.create_task(
                self._tear_down(deployment), name=f"remove {deployment.federation_id}"
            )
            # Its callers may all have gone (cancelled RPCs): the failure is
            # theirs to see, not an unretrieved-exception warning.
            deployment._removal.add_done_callback(_retrieve)
        await asyncio.shield(deployment._removal)
        return deployment

    async def _tear_down(self, deployment: Deployment) -> None:
        in_flight = deployment.state == InstanceState.PENDING
        if deployment.state != InstanceState.TERMINATING:
            await self._update(deployment, InstanceState.TERMINATING)
        # Cancels a deployment in flight and waits for its roll-back; raises
        # (the record stays TERMINATING, so removing again retries) if the
        # MEO could not be told.
        await self._provider.release(deployment.federation_id, deployment.consumer_id)
        await deployment.settled()
        deployment.endpoint = None
        if in_flight and deployment.error is None:
            deployment.error = Problem("Aborted", 409, REMOVED)
        self._forget(deployment)
        await self._update(deployment, InstanceState.TERMINATED)

    async def recover(self, at_meo: set[Key]) -> Recovered:
        """After a restart: settles every record that did not end. PENDING
        (in flight when the process died) is rolled back and FAILED;
        TERMINATING is finished; READY is kept if the MEO still holds
        (consumer, federation) in ``at_meo``, else dropped (TERMINATED, its
        capacity freed)."""
        kept: list[Key] = []
        rolled_back: list[Key] = []
        dropped: list[Key] = []
        finished: list[Key] = []
        for deployment in list(self._by_id.values()):
            busy = deployment._removal is not None and not deployment._removal.done()
            if deployment.ended or deployment._task is not None or busy:
                continue  # ended, or this process is already at it
            if deployment.state == InstanceState.READY and deployment.key in at_meo:
                kept.append(deployment.key)
                continue
            await self._provider.release(deployment.federation_id, deployment.consumer_id)
            if deployment.state == InstanceState.PENDING:
                rolled_back.append(deployment.key)
                await self._fail(deployment, Problem("Unavailable", 503, RESTARTED))
                continue
            if deployment.state == InstanceState.READY:
                dropped.append(deployment.key)
                deployment.error = Problem("Unavailable", 503, GONE)
            else:
                finished.append(deployment.key)
            deployment.endpoint = None
            self._forget(deployment)
            await self._update(deployment, InstanceState.TERMINATED)
        return Recovered(tuple(kept), tuple(rolled_back), tuple(dropped), tuple(finished))

    async def close(self) -> None:
        """Stops deployments in flight (each is rolled back and FAILED)."""
        tasks = [d._task for d in self._by_id.values() if d._task and not d._task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("removal failed: %s", task.exception())


__all__ = ["Deployment", "Deployments", "Recovered"]

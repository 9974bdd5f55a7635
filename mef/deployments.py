"""The provider's registry of deployments: every order this MEF accepts goes
through it, whichever way it arrived (InstallApp over Mff gRPC, or on the
chain's slow path from a ConsumerEndpoint event).

A deployment is keyed by (consumer, federation id): federation ids are the
consumer's names and may collide between consumers. Only the caller that
placed an order (its TLS identity) may watch or remove it. The record follows
OPG.04's app instance states, PENDING → READY | FAILED → TERMINATING →
TERMINATED, and wakes watchers on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mecfed.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted
from mecfed.model import (
    AppInstanceDetails,
    DeploymentOrder,
    Installation,
    InstanceState,
    OverlayEndpoint,
    Problem,
)
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

    async def settled(self) -> None:
        """Waits until the deployment in flight (if any) finished or failed."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)


class Deployments:
    """Every deployment of this provider, through one entry point each for
    installing and removing."""

    def __init__(self, provider: ProviderHandler, gate: OrderGate) -> None:
        self._provider = provider
        self._gate = gate
        self._by_id: dict[str, Deployment] = {}
        self._by_key: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._by_id)

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
        order = DeploymentOrder(
            federation_id=installation.federation_id,
            consumer_id=admission.consumer_id,
            app=app,
            consumer_endpoint=installation.consumer_endpoint,
            candidates=installation.candidates,
        )
        deployment = Deployment(
            app_instance_id=f"inst-{secrets.token_hex(8)}",
            federation_id=installation.federation_id,
            consumer_id=admission.consumer_id,
            caller=admission.caller,
            offer_ref=admission.offer_ref,
        )
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
        except Exception as exc:
            if deployment.endpoint is not None:  # deployed, but the gate failed it
                try:
                    await self._provider.release(deployment.federation_id, deployment.consumer_id)
                except Exception as release_error:
                    log.error(
                        "%s: could not release after a failed notice: %s",
                        deployment.federation_id,
                        release_error,
                    )
                deployment.endpoint = None
            deployment.error = Problem.of(exc)
            log.warning("%s: deployment failed: %s", deployment.federation_id, exc)
            self._forget(deployment)
            await deployment._set(InstanceState.FAILED)
            try:
                await self._gate.failed(deployment)
            except Exception as gate_error:
                log.warning("%s: %s", deployment.federation_id, gate_error)
            return
        await deployment._set(InstanceState.READY)

    def _prune(self) -> None:
        ended = [
            i
            for i, d in self._by_id.items()
            if d.state in (InstanceState.FAILED, InstanceState.TERMINATED)
        ]
        for app_instance_id in ended[: max(0, len(ended) - KEEP_ENDED)]:
            del self._by_id[app_instance_id]  # insertion order: oldest first

    def _forget(self, deployment: Deployment) -> None:
        self._by_key.pop((deployment.consumer_id, deployment.federation_id), None)

    def get(self, app_instance_id: str, caller: str) -> Deployment:
        deployment = self._by_id.get(app_instance_id)
        if deployment is None or deployment.caller != caller:
            raise NotFound(f"app instance {app_instance_id!r} not found")
        return deployment

    def find(self, consumer_id: str, federation_id: str) -> Deployment | None:
        app_instance_id = self._by_key.get((consumer_id, federation_id))
        return self._by_id.get(app_instance_id) if app_instance_id else None

    async def remove(self, app_instance_id: str, caller: str) -> Deployment:
        """Tears a deployment down (idempotent for its owner). A deployment
        still in flight is let finish first, so nothing it is creating is
        left behind."""
        deployment = self.get(app_instance_id, caller)
        return await self._remove(deployment)

    async def remove_federation(self, consumer_id: str, federation_id: str) -> None:
        """Removes the deployment of (consumer, federation), if any (the chain
        ended the service)."""
        deployment = self.find(consumer_id, federation_id)
        if deployment is not None:
            await self._remove(deployment)

    async def _remove(self, deployment: Deployment) -> Deployment:
        await deployment.settled()
        if deployment.state in (InstanceState.TERMINATED, InstanceState.FAILED):
            return deployment
        if deployment.state == InstanceState.TERMINATING:
            raise FailedPrecondition(f"app instance {deployment.app_instance_id} is terminating")
        await deployment._set(InstanceState.TERMINATING)
        try:
            await self._provider.release(deployment.federation_id, deployment.consumer_id)
        except Exception:
            await deployment._set(InstanceState.READY)  # still there: may be removed again
            raise
        self._forget(deployment)
        await deployment._set(InstanceState.TERMINATED)
        return deployment

    async def close(self) -> None:
        """Stops deployments in flight (the MEO rolls each back)."""
        tasks = [d._task for d in self._by_id.values() if d._task and not d._task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


__all__ = ["Deployment", "Deployments"]

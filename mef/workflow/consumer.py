"""The consumer's side of the federation workflow, written once and driven
through whichever Mff transport the MEF was built with.

Request offers → wait for k offers or the deadline → the transport awards
(direct: our ranking, cheapest then earliest; chain: the contract decides) →
ask the winner to deploy (on failure, the next winner: our next offer, or the
market's re-award) → connect our end of the overlay → verify app-to-app
traffic (success only at 0 % loss) → tell the transport (chain: pay) →
ESTABLISHED, then runtime liveness (ESTABLISHED ⇄ DEGRADED). Anything that
fails after the provider deployed is rolled back on both sides.

Every record is durable (:class:`mef.federations.FederationStore`). On start
(:meth:`ConsumerWorkflow.recover`, before health says SERVING) each record
is settled by the state it was left in:

=====================================  ========================================
state at restart                       outcome
=====================================  ========================================
REQUESTED, COLLECTING_OFFERS,          rolled back: local MEO released, the
AWARDED, DEPLOYING, CONNECTING,        provider released (retried in the
VERIFYING                              background until acknowledged); FAILED,
                                       reason "federator restarted during
                                       <STATE>"
TERMINATING                            termination resumes (local release,
                                       provider release retried) → TERMINATED
ESTABLISHED, DEGRADED                  liveness watching resumes
FAILED, TERMINATED                     unchanged
provider releases still owed           retried until acknowledged
MEO consumer-side service without a    released at the MEO (reconcile)
live record (none, FAILED, TERMINATED)
=====================================  ========================================

Termination (:meth:`ConsumerWorkflow.terminate`) is accepted in every state
and is idempotent: TERMINATED is returned as it is; TERMINATING joins the
termination under way; any other state, FAILED included (its leftovers are
released once more, its error is kept), cancels the run, stops liveness,
moves to TERMINATING, releases the local MEO, then the provider (retried with
backoff until acknowledged, across restarts), then TERMINATED. The call
answers TERMINATED if that took at most ``settings.terminate_wait`` seconds,
else TERMINATING (WatchFederation shows the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode, Tracer

from mecfed.errors import Aborted, MecfedError, Unavailable
from mecfed.model import (
    Federation,
    FederationRequest,
    FederationState,
    Problem,
    Role,
)
from mecfed.model.federation import StateChange
from mecfed.tracing import extract_context, inject_traceparent, set_attributes, step_span
from mecfed.tracing import tracer as make_tracer
from mef.federations import FederationStore
from mef.meo_client import NotSupported, Orchestrator
from mef.tasks import TaskSet
from mef.transport.base import MffTransport
from mef.workflow.negotiation import (
    STEP_AWARD,
    STEP_DEPLOY,
    STEP_OFFERS,
    STEP_OVERLAY,
    STEP_TRAFFIC,
    ConsumerSettings,
    Negotiation,
)
from mef.workflow.provider import Clock
from mef.workflow.upkeep import Liveness, ProviderReleases, retry_until_done

log = logging.getLogger(__name__)

IN_FLIGHT = frozenset(
    {
        FederationState.REQUESTED,
        FederationState.COLLECTING_OFFERS,
        FederationState.AWARDED,
        FederationState.DEPLOYING,
        FederationState.CONNECTING,
        FederationState.VERIFYING,
    }
)
ENDED = frozenset({FederationState.FAILED, FederationState.TERMINATED})


class ConsumerWorkflow(Negotiation):
    """Runs federations for the local MEO. One instance per MEF."""

    def __init__(
        self,
        system_id: str,
        transport: MffTransport,
        orchestrator: Orchestrator,
        *,
        store: FederationStore | None = None,
        settings: ConsumerSettings | None = None,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.system_id = system_id
        self.transport = transport
        self.orchestrator = orchestrator
        self.store = store if store is not None else FederationStore()
        self.settings = settings or ConsumerSettings()
        self.tracer = tracer or make_tracer(None)
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._terminations: dict[str, asyncio.Task[None]] = {}
        self._upkeep = TaskSet(f"consumer {system_id}")
        self.releases = ProviderReleases(self.store, transport, self._upkeep, self.settings.retry)
        self.liveness = Liveness(
            self.store,
            orchestrator,
            self.settings.traffic,
            self.settings.liveness_period_ms,
            self.tracer,
            self._upkeep,
        )
        self.recovered = False

    async def request(self, req: FederationRequest) -> Federation:
        """Starts a federation; returns its first record at once. A request
        whose request_id is known returns that request's federation, also
        when both arrive at once."""
        if req.request_id and (existing := self.store.by_request_id(req.request_id)):
            return existing
        if (why := self.transport.health()) is not None:
            # Nothing is started (no escrow, no reservation) on a transport
            # that cannot act: e.g. a reset chain or a wedged client.
            raise Unavailable(f"the {self.transport.name} transport cannot act now: {why}")
        await self.orchestrator.require_app(req.service_name)
        now = self._clock()
        federation = Federation(
            federation_id=f"fed-{uuid.uuid4().hex[:16]}",
            service_name=req.service_name,
            app=req.app,
            requirements=req.requirements,
            consumer_id=self.system_id,
            backend=self.transport.name,
            created_at=now,
            updated_at=now,
            history=(StateChange(FederationState.REQUESTED, now),),
        )
        stored = self.store.add(federation, req.request_id)
        if stored is not federation:
            return stored  # the same request_id won the race meanwhile
        self._start_run(federation)
        return federation

    def _start_run(self, federation: Federation) -> None:
        fid = federation.federation_id
        task = asyncio.create_task(self._run(federation), name=fid)
        self._tasks[fid] = task
        task.add_done_callback(lambda _t: self._tasks.pop(fid, None))

    async def wait(self, federation_id: str) -> Federation:
        """Waits until the federation reaches a terminal state."""
        async for fed in self.store.watch(federation_id):
            if fed.state.terminal:
                return fed
        return self.store.get(federation_id)

    async def terminate(self, federation_id: str) -> Federation:
        """See the module docstring: any state, idempotent; answers
        TERMINATED, or TERMINATING while the provider's release is retried."""
        fed = self.store.get(federation_id)
        if fed.state == FederationState.TERMINATED:
            return fed
        task = self._terminations.get(federation_id)
        if task is None:
            await self._stop_run(federation_id)
            await self.liveness.stop(federation_id)
            fed = self.store.get(federation_id)
            if fed.state == FederationState.TERMINATED:
                return fed
            if federation_id in self._terminations:  # another call got here first
                task = self._terminations[federation_id]
            else:
                if fed.state != FederationState.TERMINATING:
                    self._set(fed, state=FederationState.TERMINATING, reason="terminate requested")
                task = self._start_termination(federation_id)
        await asyncio.wait({task}, timeout=self.settings.terminate_wait)
        return self.store.get(federation_id)

    async def _stop_run(self, federation_id: str) -> None:
        task = self._tasks.get(federation_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.settings.terminate_wait)

    def _start_termination(self, federation_id: str) -> asyncio.Task[None]:
        task = self._upkeep.spawn(self._terminate(federation_id), f"terminate {federation_id}")
        self._terminations[federation_id] = task
        task.add_done_callback(lambda _t: self._terminations.pop(federation_id, None))
        return task

    async def _terminate(self, fid: str) -> None:
        retry = self.settings.retry
        with step_span(self.tracer, "terminate", context=self._trace(fid), federation_id=fid):

            async def local() -> None:
                await self.orchestrator.release(fid)

            async def provider() -> None:
                await self.transport.terminate(self.store.get(fid))

            await retry_until_done(f"{fid}: local release", local, retry)
            await retry_until_done(f"{fid}: provider release", provider, retry)
            # What a cancelled rollback left owed for this provider is settled too.
            self.store.released(fid, self.store.get(fid).provider_id)
            self._set(self.store.get(fid), state=FederationState.TERMINATED, reason="released")

    async def recover(self) -> None:
        """Settles what a previous run left (see the module docstring), then
        reconciles with the MEO. Retries until the MEO answers."""
        self.releases.resume()
        for fed in self.store.list():
            if fed.state in IN_FLIGHT:
                await self._roll_back_after_restart(fed)
            elif fed.state == FederationState.TERMINATING:
                self._start_termination(fed.federation_id)
            elif fed.state.live:
                self.liveness.watch(fed.federation_id)
        await retry_until_done("reconcile with the MEO", self._reconcile, self.settings.retry)
        self.recovered = True

    async def _roll_back_after_restart(self, fed: Federation) -> None:
        fid = fed.federation_id
        error = Aborted(f"federator restarted during {fed.state.name}")
        # Owed before the state changes: a crash in between repeats this.
        await self.releases.release(fed, wait=False)

        async def local() -> None:
            await self.orchestrator.release(fid)

        await retry_until_done(f"{fid}: local release", local, self.settings.retry)
        current = self.store.get(fid)
        if current.state not in IN_FLIGHT:
            return  # terminated meanwhile (calls are served during recovery)
        self._set(
            current,
            state=FederationState.FAILED,
            error=Problem.of(error),
            reason=error.message,
        )
        log.warning("%s: %s; rolled back", fid, error.message)

    async def _reconcile(self) -> None:
        """Releases what the MEO holds on the consumer side for federations
        that have no live record here (unknown, FAILED or TERMINATED)."""
        try:
            services = await self.orchestrator.list_services()
        except NotSupported as exc:
            log.error("not reconciled with the MEO: %s", exc.message)
            return
        for service in services:
            if service.role != Role.CONSUMER:
                continue  # the provider side reconciles its own
            try:
                fed: Federation | None = self.store.get(service.federation_id)
            except MecfedError:
                fed = None
            if fed is None or fed.state in ENDED:
                log.warning("%s: the MEO held it without an owner; released", service.federation_id)
                await self.orchestrator.release(service.federation_id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._upkeep.close()

    # --- the run ---------------------------------------------------------------

    def _trace(self, federation_id: str) -> Context:
        return extract_context(self.store.trace_of(federation_id))

    async def _run(self, fed: Federation) -> None:
        # One span for the whole federation; every step is its child, and the
        # providers' spans join through gRPC metadata or the announcement.
        with step_span(
            self.tracer,
            "federation",
            federation_id=fed.federation_id,
            consumer=self.system_id,
            backend=self.transport.name,
            service=fed.service_name,
            image=fed.app.image,
            replicas=fed.app.replicas,
            max_price=fed.requirements.max_price,
        ) as span:
            if traceparent := inject_traceparent():
                self.store.set_trace(fed.federation_id, traceparent)
            try:
                fed = await self._negotiate_and_deploy(fed)
                fed = await self._connect_and_verify(fed)
                set_attributes(span, provider=fed.provider_id, price=fed.price)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._fail(self.store.get(fed.federation_id), exc)
                return
        self.liveness.watch(fed.federation_id)

    async def _fail(self, fed: Federation, exc: BaseException) -> None:
        if not isinstance(exc, MecfedError):
            log.error("federation %s crashed", fed.federation_id, exc_info=exc)
        await self._rollback(fed)
        problem = Problem.of(exc)
        self._set(
            self.store.get(fed.federation_id),
            state=FederationState.FAILED,
            error=problem,
            reason=problem.detail,
        )

    async def _rollback(self, fed: Federation) -> None:
        """Releases both sides; each half is tried even if the other fails.
        The transport is told even when nothing was deployed, so that it can
        settle what it holds (e.g. the chain escrow of an announcement). A
        provider that cannot be reached is retried in the background."""
        try:
            await self.releases.release(fed)
        except Exception as exc:
            log.warning("%s: provider release failed: %s", fed.federation_id, exc)
        try:
            await self.orchestrator.release(fed.federation_id)
        except Exception as exc:
            log.warning("%s: local release failed: %s", fed.federation_id, exc)


__all__ = [
    "ENDED",
    "IN_FLIGHT",
    "STEP_AWARD",
    "STEP_DEPLOY",
    "STEP_OFFERS",
    "STEP_OVERLAY",
    "STEP_TRAFFIC",
    "ConsumerSettings",
    "ConsumerWorkflow",
]

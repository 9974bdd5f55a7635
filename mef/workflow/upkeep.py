"""What the consumer keeps doing for a federation outside its workflow run:
retrying provider releases until acknowledged, and watching an established
federation's app-to-app traffic (runtime liveness).

Both run as guarded background tasks (:class:`mef.tasks.TaskSet`) and both
work from the durable records alone, so a restarted MEF picks them up again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry.trace import Status, StatusCode, Tracer

from mecfed.errors import MecfedError
from mecfed.model import Federation, FederationState, TrafficCheck, TrafficReport
from mecfed.tracing import extract_context, set_traffic, step_span
from mef.federations import FederationStore, PendingRelease
from mef.meo_client import NotSupported, Orchestrator
from mef.tasks import TaskSet
from mef.transport.base import MffTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``first``, doubling up to ``most`` seconds."""

    first: float = 0.5
    most: float = 30.0

    def delays(self) -> Callable[[], float]:
        delay = self.first

        def next_delay() -> float:
            nonlocal delay
            current, delay = delay, min(delay * 2, self.most)
            return current

        return next_delay


async def retry_until_done(
    what: str,
    call: Callable[[], Awaitable[None]],
    backoff: Backoff,
    on_error: Callable[[Exception, float], None] | None = None,
) -> None:
    """Calls ``call`` until it returns, sleeping with backoff after each
    failure (``on_error(error, delay)`` is told first). Only cancellation
    stops it: what it settles must not be given up."""
    next_delay = backoff.delays()
    while True:
        try:
            await call()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = next_delay()
            log.warning("%s failed (retrying in %.1f s): %s", what, delay, exc)
            if on_error is not None:
                on_error(exc, delay)
            await asyncio.sleep(delay)


class ProviderReleases:
    """Provider sides still to be released. Each is written down before it
    is tried and forgotten once the transport says the provider released it
    (``MffTransport.terminate`` returned); until then it is retried with
    backoff, across restarts."""

    def __init__(
        self, store: FederationStore, transport: MffTransport, tasks: TaskSet, backoff: Backoff
    ) -> None:
        self._store = store
        self._transport = transport
        self._tasks = tasks
        self._backoff = backoff
        self._retrying: dict[tuple[str, str], asyncio.Task[None]] = {}

    def _record(self, fed: Federation, provider_id: str, app_instance_id: str) -> Federation:
        """The federation as the transport must see it to release this
        provider's side (an earlier attempt had another provider)."""
        if (fed.provider_id, fed.app_instance_id) == (provider_id, app_instance_id):
            return fed
        return fed.evolve(provider_id=provider_id, app_instance_id=app_instance_id)

    async def release(
        self,
        fed: Federation,
        provider_id: str | None = None,
        app_instance_id: str | None = None,
        *,
        wait: bool = True,
    ) -> bool:
        """Releases the provider side of ``fed`` (by default its current
        provider). With ``wait`` it is tried once now; True if acknowledged.
        Otherwise (or if that try failed) it is retried in the background."""
        pid = fed.provider_id if provider_id is None else provider_id
        iid = fed.app_instance_id if app_instance_id is None else app_instance_id
        key = (fed.federation_id, pid)
        self._store.owe_release(fed.federation_id, pid, iid)
        if key in self._retrying:
            return False  # already being retried
        if wait:
            try:
                await self._transport.terminate(self._record(fed, pid, iid))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: release at %r failed: %s", fed.federation_id, pid or "-", exc)
                self._store.release_failed(
                    fed.federation_id, pid, str(exc), time.time() + self._backoff.first
                )
            else:
                self._store.released(fed.federation_id, pid)
                return True
        self._spawn(PendingRelease(fed.federation_id, pid, iid))
        return False

    def resume(self) -> None:
        """Retries every release a previous run left owed."""
        for pending in self._store.pending_releases():
            if (pending.federation_id, pending.provider_id) not in self._retrying:
                self._spawn(pending)

    def pending(self, federation_id: str | None = None) -> list[PendingRelease]:
        return self._store.pending_releases(federation_id)

    def _spawn(self, pending: PendingRelease) -> None:
        key = (pending.federation_id, pending.provider_id)
        task = self._tasks.spawn(self._retry(pending), f"release {key[0]} at {key[1] or '-'}")
        self._retrying[key] = task
        task.add_done_callback(lambda _t: self._retrying.pop(key, None))

    async def _retry(self, pending: PendingRelease) -> None:
        fid, pid = pending.federation_id, pending.provider_id

        async def once() -> None:
            fed = self._store.get(fid)
            await self._transport.terminate(self._record(fed, pid, pending.app_instance_id))

        def failed(exc: Exception, delay: float) -> None:
            self._store.release_failed(fid, pid, str(exc), time.time() + delay)

        await retry_until_done(f"{fid}: release at {pid or '-'}", once, self._backoff, failed)
        self._store.released(fid, pid)
        log.info("%s: provider %s released", fid, pid or "-")


class Liveness:
    """Runtime liveness of established federations: consumes the MEO's
    WatchTraffic stream and moves a federation to DEGRADED after a failed
    series (any loss, or the stream failing) and back to ESTABLISHED after a
    passing one. Each transition is in ``Federation.history`` (time and
    reason) and is one "liveness" span in the federation's trace; the latest
    report is ``Federation.liveness``."""

    def __init__(
        self,
        store: FederationStore,
        orchestrator: Orchestrator,
        check: TrafficCheck,
        period_ms: int,
        tracer: Tracer,
        tasks: TaskSet,
    ) -> None:
        self._store = store
        self._orchestrator = orchestrator
        self._check = check
        self.period_ms = period_ms
        self._tracer = tracer
        self._tasks = tasks
        self._watching: dict[str, asyncio.Task[None]] = {}

    def watch(self, federation_id: str) -> None:
        """Starts watching (no-op if liveness is off or already watching)."""
        if self.period_ms <= 0 or federation_id in self._watching:
            return
        task = self._tasks.spawn(self._watch(federation_id), f"liveness {federation_id}")
        self._watching[federation_id] = task
        task.add_done_callback(lambda _t: self._watching.pop(federation_id, None))

    async def stop(self, federation_id: str) -> None:
        task = self._watching.pop(federation_id, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=3)

    def watching(self, federation_id: str) -> bool:
        return federation_id in self._watching

    async def _watch(self, fid: str) -> None:
        fed = self._store.get(fid)
        check = TrafficCheck(
            count=self._check.count,
            interval_ms=self._check.interval_ms,
            timeout_ms=self._check.timeout_ms,
            echo_port=fed.app.echo_port,
        )
        while self._store.get(fid).state.live:
            try:
                async for report in self._orchestrator.watch_traffic(fid, check, self.period_ms):
                    if not self._report(fid, report):
                        return
                reason = "the MEO ended the liveness stream"
            except NotSupported as exc:
                # Nothing can be measured: say so once, claim nothing.
                log.warning("%s: no runtime liveness: %s", fid, exc.message)
                return
            except MecfedError as exc:
                reason = f"liveness stream failed: {exc.message}"
            # No measurement is not a pass: degrade, then reconnect.
            if not self._transition(fid, FederationState.DEGRADED, reason, None):
                return
            await asyncio.sleep(self.period_ms / 1000)

    def _report(self, fid: str, report: TrafficReport) -> bool:
        if report.ok:
            reason = f"traffic passes: {report.received}/{report.sent} echoes answered"
            return self._transition(fid, FederationState.ESTABLISHED, reason, report)
        reason = (
            f"traffic check failed: {report.received}/{report.sent} echoes answered "
            f"({report.loss:.0%} loss)"
        )
        return self._transition(fid, FederationState.DEGRADED, reason, report)

    def _transition(
        self, fid: str, state: FederationState, reason: str, report: TrafficReport | None
    ) -> bool:
        """Records ``report`` and, if the state changes, the transition.
        False once the federation is no longer live (stop watching)."""
        fed = self._store.get(fid)
        if not fed.state.live:
            return False
        changes: dict[str, object] = {}
        if report is not None:
            changes["liveness"] = report
        if fed.state != state:
            changes["state"] = state
            self._span(fed, state, reason, report)
            log.info("%s: %s (%s)", fid, state.name, reason)
        if changes:
            self._store.put(fed.evolve(reason=reason, **changes))
        return True

    def _span(
        self, fed: Federation, state: FederationState, reason: str, report: TrafficReport | None
    ) -> None:
        # One span per transition, not per series: traces stay small however
        # long the federation lives.
        context = extract_context(self._store.trace_of(fed.federation_id))
        with step_span(
            self._tracer,
            "liveness",
            context=context,
            federation_id=fed.federation_id,
            state=state.name,
            previous=fed.state.name,
            reason=reason,
        ) as span:
            if report is not None:
                set_traffic(span, report)
            if state == FederationState.DEGRADED:
                span.set_status(Status(StatusCode.ERROR, reason))


__all__ = ["Backoff", "Liveness", "ProviderReleases", "retry_until_done"]

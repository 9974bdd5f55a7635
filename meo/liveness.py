"""The consumer's app-to-app traffic across an overlay: one check
(:meth:`Liveness.verify`, before the federation is established) and runtime
liveness (:meth:`Liveness.watch`, one series every period until the
federation is released).

Every report carries ``measured_at``, set here when its series ended. A
series that cannot run because the consumer's instance is gone is reported
as total loss rather than ending the watch: for runtime liveness that *is*
the news.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from opentelemetry.trace import Tracer

from mecfed.errors import FailedPrecondition, MecfedError, NotFound
from mecfed.model import TrafficCheck, TrafficReport
from mecfed.tracing import set_traffic, step_span
from meo.apps import Apps
from meo.overlay import Overlays
from meo.probe import probe
from meo.records import FederationRecord
from meo.state import State

log = logging.getLogger(__name__)


class Liveness:
    def __init__(self, state: State, apps: Apps, overlays: Overlays, tracer: Tracer) -> None:
        self.state = state
        self.apps = apps
        self.overlays = overlays
        self.tracer = tracer

    def _connected(self, federation_id: str, missing: type[MecfedError]) -> FederationRecord:
        fed = self.state.federation(("", federation_id))
        if not fed.is_connected_consumer or fed.remote is None:
            raise missing(f"federation {federation_id} has no connected consumer end on this host")
        return fed

    async def _series(self, fed: FederationRecord, check: TrafficCheck) -> TrafficReport:
        app = self.state.app(fed.app_name)
        if not app.instances:
            raise FailedPrecondition(f"app {app.name} has no instances")
        assert fed.remote is not None
        targets = list(fed.remote.app_ips)
        if not targets:
            raise FailedPrecondition("the provider reported no app instance addresses")
        inst = await self.apps.live(app.instances[0])
        with step_span(self.tracer, "probe", targets=",".join(targets), count=check.count) as span:
            try:
                report = await probe(inst.netns_path, targets, check)
            except OSError as exc:
                log.warning("probe from %s failed: %s", inst.id, exc)
                raise FailedPrecondition(
                    f"could not probe from instance {inst.id[:12]}: its network namespace is gone"
                ) from None
            report = replace(report, measured_at=time.time())
            set_traffic(span, report)
        return report

    async def verify(self, federation_id: str, check: TrafficCheck) -> TrafficReport:
        return await self._series(self._connected(federation_id, FailedPrecondition), check)

    async def _watched_series(self, fed: FederationRecord, check: TrafficCheck) -> TrafficReport:
        try:
            return await self._series(fed, check)
        except (FailedPrecondition, NotFound) as exc:
            log.warning("liveness of %s: %s", fed.federation_id, exc.message)
            targets = len(fed.remote.app_ips) if fed.remote else 1
            return TrafficReport(
                sent=check.count * max(targets, 1), received=0, measured_at=time.time()
            )

    async def watch(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        """One series every ``period_ms`` (the gap between two series); ends
        when the federation is released. NotFound if it is not connected."""
        fed = self._connected(federation_id, NotFound)
        key = fed.key
        released = self.overlays.watch_released(key)
        series: asyncio.Future[TrafficReport] | None = None
        try:
            while not released.is_set():
                series = asyncio.ensure_future(self._watched_series(fed, check))
                gone = asyncio.ensure_future(released.wait())
                try:
                    await asyncio.wait({series, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
                if released.is_set():
                    series.cancel()  # its threads end with their series; nothing to keep
                    return
                yield series.result()
                try:
                    await asyncio.wait_for(released.wait(), period_ms / 1000.0)
                except TimeoutError:
                    pass
                fed = self.state.federations.get(key) or fed
        finally:
            if series is not None:
                series.cancel()  # the watcher went away mid-series
            self.overlays.unwatch(key, released)


__all__ = ["Liveness"]

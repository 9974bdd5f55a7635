"""After a restart or a crash: bringing the recorded state in line with what
still runs (:meth:`Recovery.reconcile`), or removing everything this MEO
ever made (:meth:`Recovery.cleanup_all`, ``python -m meo --cleanup``)."""

from __future__ import annotations

import asyncio
import logging

from meo.apps import Apps
from meo.network import NetworkOps
from meo.overlay import Overlays
from meo.state import State

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, state: State, apps: Apps, overlays: Overlays, net: NetworkOps) -> None:
        self.state = state
        self.apps = apps
        self.overlays = overlays
        self.net = net

    async def reconcile(self) -> None:
        """A federation that lost an instance cannot carry traffic any more
        and is released (a reservation without a connected app too); a local
        app gets its missing replicas back."""
        for fed_id, fed in list(self.state.federations.items()):
            app = self.state.apps.get(fed.app_name)
            alive = app is not None and all([await self.apps.exists(r) for r in app.instances])
            if not alive:
                log.warning("federation %s lost its instances; releasing it", fed_id)
                await self.overlays.release(fed_id)
        for app in list(self.state.apps.values()):
            if not app.federation_id:
                await self.apps.restore(app)
        self.state.save()

    async def cleanup_all(self) -> None:
        """Removes what the state file records, plus any link with a
        federation prefix and any instance labelled with this system
        (leftovers of a crash), then forgets it all."""
        self.state.load()
        for fed_id in list(self.state.federations):
            try:
                await asyncio.to_thread(self.net.teardown, fed_id)
            except Exception:
                log.exception("cleanup: could not remove the links of %s", fed_id)
        leftovers = await asyncio.to_thread(self.net.all_owned_links)
        await asyncio.to_thread(self.net.delete_links, leftovers)
        await self.apps.sweep()
        self.state.clear()
        self.state.save()


__all__ = ["Recovery"]

"""After a restart or a crash: bringing the recorded state in line with what
still runs (:meth:`Recovery.reconcile`), or removing everything this MEO
installation ever made (:meth:`Recovery.cleanup_all`, ``python -m meo
--cleanup``).

Reconcile knows more than its records: it removes what every pending intent
names (made, or about to be made, by a call that never finished), then
sweeps every container and link carrying this installation's label or alias
that no record owns (idle warm-pool spares excepted). Nothing of another
installation is touched: the VIMs list only this installation's instances,
and links are matched by the full installation id in their alias.
"""

from __future__ import annotations

import asyncio
import logging

from meo.apps import Apps
from meo.network import NetworkOps
from meo.overlay import Overlays
from meo.records import FedKey, key_text
from meo.state import INSTANCE, OVERLAY, State
from meo.vim.base import LABEL_APP, LABEL_INSTALLATION, Instance
from meo.vim.pool import LABEL_POOL

log = logging.getLogger(__name__)


def _idle_spare(inst: Instance) -> bool:
    """A warm-pool spare nobody claimed (a claim adds the app's label)."""
    return LABEL_POOL in inst.labels and LABEL_APP not in inst.labels


class Recovery:
    def __init__(self, state: State, apps: Apps, overlays: Overlays, net: NetworkOps) -> None:
        self.state = state
        self.apps = apps
        self.overlays = overlays
        self.net = net

    async def settle_intents(self) -> None:
        """Removes what every pending intent names; only at start-up, when
        no call of this process can still be making it."""
        owners: dict[str, FedKey] = {key_text(k): k for k in self.state.federations}
        for intent in self.state.intents():
            try:
                if intent.kind == INSTANCE:
                    vim = self.apps.vims.get(intent.host)
                    if vim is not None:
                        await vim.delete_instance(intent.name)
                elif intent.kind == OVERLAY:
                    key = owners.get(intent.owner, ("", intent.owner))
                    await asyncio.to_thread(
                        self.net.teardown, self.overlays.names(key, intent.name)
                    )
            except Exception:
                log.exception("could not remove what intent %s named; kept for later", intent)
                continue
            log.warning(
                "removed the %s %s of %s, left by a call that did not finish",
                intent.kind,
                intent.name,
                intent.owner,
            )
            self.state.settle([intent])

    async def sweep(self) -> None:
        """Removes every instance and link of this installation that no
        record owns."""
        owned_ids = {i.id for a in self.state.apps.values() for i in a.instances}
        mine = self.state.installation
        for host, vim in self.apps.vims.items():
            for inst in await vim.list_instances():
                if inst.id in owned_ids or _idle_spare(inst):
                    continue
                if inst.labels.get(LABEL_INSTALLATION, mine) != mine:
                    continue  # a driver not scoped to us listed another's: never ours
                log.warning("removing instance %s on %s: no record owns it", inst.name, host)
                await vim.delete_instance(inst.id)
        tags = {f.tag for f in self.state.federations.values() if f.tag}
        links = await asyncio.to_thread(self.net.owned_links, self.state.installation)
        orphans = sorted(n for n, tag in links.items() if tag not in tags)
        if orphans:
            log.warning("removing links no federation owns: %s", ", ".join(orphans))
            # veths first: the bridge then goes away without flapping ports.
            orphans.sort(key=lambda n: not n.startswith(("mfv", "mft")))
            await asyncio.to_thread(self.net.delete_links, orphans)

    async def reconcile(self) -> None:
        """Intents and orphans go first; then a federation that lost an
        instance cannot carry traffic any more and is released (a
        reservation without a connected app too); a local app gets its
        missing replicas back."""
        await self.settle_intents()
        await self.sweep()
        for key, fed in list(self.state.federations.items()):
            app = self.state.apps.get(fed.app_name)
            alive = app is not None and all([await self.apps.exists(r) for r in app.instances])
            if not alive:
                log.warning("federation %s lost its instances; releasing it", key_text(key))
                await self.overlays.release(key[1], key[0])
        for app in list(self.state.apps.values()):
            if not app.federation_id:
                await self.apps.restore(app)
        self.state.save()

    async def cleanup_all(self) -> None:
        """Removes what the state records, what its intents name and every
        instance and link of this installation (leftovers of a crash), then
        forgets it all."""
        self.state.load()
        await self.settle_intents()
        for key, fed in list(self.state.federations.items()):
            try:
                if fed.tag:
                    await asyncio.to_thread(self.net.teardown, self.overlays.names(key, fed.tag))
                elif fed.links:
                    await asyncio.to_thread(self.net.delete_links, list(fed.links))
            except Exception:
                log.exception("cleanup: could not remove the links of %s", key_text(key))
        self.state.clear()
        leftovers = await asyncio.to_thread(self.net.owned_links, self.state.installation)
        await asyncio.to_thread(self.net.delete_links, sorted(leftovers))
        await self.apps.sweep()
        self.state.save()


__all__ = ["Recovery"]

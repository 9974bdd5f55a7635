"""Where a new instance runs: the least-loaded VIM host, ties broken by
name so placement is reproducible."""

from __future__ import annotations

from collections.abc import Mapping

from meo.vim.base import VimDriver


class HostSelector:
    def __init__(self, vims: Mapping[str, VimDriver]) -> None:
        if not vims:
            raise ValueError("at least one VIM host is needed")
        self.vims = dict(vims)

    def pick(self, load: Mapping[str, int]) -> str:
        return min(self.vims, key=lambda h: (load.get(h, 0), h))

    def plan(self, count: int, load: Mapping[str, int]) -> list[str]:
        """Hosts for ``count`` new instances, each counted as it is placed."""
        load = dict(load)
        hosts = []
        for _ in range(count):
            host = self.pick(load)
            load[host] = load.get(host, 0) + 1
            hosts.append(host)
        return hosts


__all__ = ["HostSelector"]

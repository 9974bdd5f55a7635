"""The direct backend's local registry of pre-registered federation partners:
who may call our Mff API and where to reach them. Identity is the system id
in the partner's certificate, issued by the CA this system trusts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mecfed.config import PeerConfig
from mecfed.errors import NotFound


class PeerBook:
    def __init__(self, own_id: str, peers: Iterable[PeerConfig] = ()) -> None:
        self.own_id = own_id
        self._peers: dict[str, PeerConfig] = {}
        for peer in peers:
            self.add(peer)

    def add(self, peer: PeerConfig) -> None:
        if peer.system_id != self.own_id:
            self._peers[peer.system_id] = peer

    def remove(self, system_id: str) -> None:
        self._peers.pop(system_id, None)

    def get(self, system_id: str) -> PeerConfig:
        try:
            return self._peers[system_id]
        except KeyError:
            raise NotFound(f"{system_id!r} is not a registered peer") from None

    def __contains__(self, system_id: object) -> bool:
        return system_id in self._peers

    def __iter__(self) -> Iterator[PeerConfig]:
        return iter(list(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)

"""Allocation of VXLAN network identifiers, VXLAN UDP ports and overlay
subnets on this host.

Rules:

* A VNI and a UDP port are *free* when no VXLAN link on the host uses it
  (whoever made it) and no live reservation of this MEO holds it. Both are
  kept unique per host, which is stricter than the kernel needs (it only
  refuses the same VNI on the same port) but makes every tunnel
  unambiguous in captures and keeps the rule simple.
* The consumer reserves N candidates: random VNIs from ``vni_range`` paired
  with distinct free ports from ``vxlan_port_range``, plus one /24 from
  ``overlay_pool``. Once connected it keeps only the chosen candidate.
* The provider takes the first candidate whose VNI and port are both free on
  its side.
* Addressing inside a federation's /24 (see :func:`consumer_ip`,
  :func:`provider_ip`): consumer instances get .1 .. .N (N = their
  count, ≤ 126), provider instances get .129 onwards. Both ends can thus
  choose addresses without talking to each other.

All decisions happen under one asyncio lock, so concurrent federations of
the same consumer never receive the same VNI, port or subnet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mecfed.errors import AlreadyExists, ResourceExhausted
from mecfed.model import TunnelCandidate
from mecfed.model.checks import (
    MAX_APP_IPS,
    MAX_CANDIDATES,
    MAX_TUNNEL_PORT,
    MAX_VNI,
    MIN_TUNNEL_PORT,
    MIN_VNI,
    require_range,
)
from meo.network import VxlanInfo

CONSUMER_FIRST, PROVIDER_FIRST, HALF = 1, 129, MAX_APP_IPS


@dataclass
class Reservation:
    """What one federation holds on this host: the consumer's candidates and
    subnet until connected (then the chosen candidate), or the provider's
    chosen candidate."""

    federation_id: str
    candidates: list[TunnelCandidate]
    subnet: str | None = None  # consumer side only

    def to_dict(self) -> dict[str, Any]:
        return {
            "federation_id": self.federation_id,
            "candidates": [[c.vni, c.udp_port] for c in self.candidates],
            "subnet": self.subnet,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Reservation:
        return cls(
            federation_id=raw["federation_id"],
            candidates=[TunnelCandidate(int(v), int(p)) for v, p in raw["candidates"]],
            subnet=raw.get("subnet"),
        )


def consumer_ip(subnet: str, index: int) -> ipaddress.IPv4Interface:
    """Address of the consumer's ``index``-th instance (0-based): .1, .2, ..."""
    if not 0 <= index < HALF:
        raise ResourceExhausted(f"at most {HALF} consumer instances per federation")
    net = ipaddress.IPv4Network(subnet)
    return ipaddress.IPv4Interface(f"{net.network_address + CONSUMER_FIRST + index}/24")


def provider_ip(subnet: str, index: int) -> ipaddress.IPv4Interface:
    """Address of the provider's ``index``-th instance (0-based): .129, .130, ..."""
    if not 0 <= index < HALF:
        raise ResourceExhausted(f"at most {HALF} provider instances per federation")
    net = ipaddress.IPv4Network(subnet)
    return ipaddress.IPv4Interface(f"{net.network_address + PROVIDER_FIRST + index}/24")


@dataclass
class OverlayAllocator:
    vni_range: tuple[int, int]
    port_range: tuple[int, int]
    overlay_pool: str
    # Returns the VXLAN links on the host right now (blocking; run in a thread).
    host_vxlans: Callable[[], list[VxlanInfo]]
    rng: random.Random = field(default_factory=random.SystemRandom)
    reservations: dict[str, Reservation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        lo, hi = self.vni_range
        if not MIN_VNI <= lo <= hi <= MAX_VNI:
            raise ValueError(f"vni_range {self.vni_range} outside {MIN_VNI}..{MAX_VNI}")
        plo, phi = self.port_range
        if not MIN_TUNNEL_PORT <= plo <= phi <= MAX_TUNNEL_PORT:
            raise ValueError(
                f"vxlan_port_range {self.port_range} outside {MIN_TUNNEL_PORT}..{MAX_TUNNEL_PORT}"
            )
        pool = ipaddress.IPv4Network(self.overlay_pool)
        if pool.prefixlen > 24:
            raise ValueError(f"overlay_pool {self.overlay_pool} is smaller than a /24")

    async def _used(self) -> tuple[set[int], set[int]]:
        links = await asyncio.to_thread(self.host_vxlans)
        vnis = {x.vni for x in links}
        ports = {x.port for x in links}
        for r in self.reservations.values():
            vnis.update(c.vni for c in r.candidates)
            ports.update(c.udp_port for c in r.candidates)
        return vnis, ports

    async def reserve(self, federation_id: str, count: int) -> Reservation:
        """Consumer: reserve ``count`` candidates and a /24 subnet."""
        require_range(count, "candidates", 1, MAX_CANDIDATES)
        async with self._lock:
            if federation_id in self.reservations:
                return self.reservations[federation_id]  # retried call: same answer
            used_vnis, used_ports = await self._used()
            free_ports = [
                p for p in range(self.port_range[0], self.port_range[1] + 1) if p not in used_ports
            ]
            if len(free_ports) < count:
                raise ResourceExhausted(
                    f"only {len(free_ports)} VXLAN ports of {self.port_range} are free; "
                    f"{count} requested"
                )
            self.rng.shuffle(free_ports)
            vnis: list[int] = []
            lo, hi = self.vni_range
            span = hi - lo + 1
            for _ in range(count * 64 + 64):  # random probing; the range is huge
                if len(vnis) == count:
                    break
                v = lo + self.rng.randrange(span)
                if v not in used_vnis and v not in vnis:
                    vnis.append(v)
            if len(vnis) < count:  # tiny range: fall back to a scan
                vnis += [v for v in range(lo, hi + 1) if v not in used_vnis and v not in vnis]
                vnis = vnis[:count]
            if len(vnis) < count:
                raise ResourceExhausted(f"no {count} free VNIs left in {self.vni_range}")
            subnet = self._free_subnet()
            res = Reservation(
                federation_id,
                [TunnelCandidate(v, p) for v, p in zip(vnis, free_ports, strict=False)],
                subnet,
            )
            self.reservations[federation_id] = res
            return res

    def _free_subnet(self) -> str:
        taken = {r.subnet for r in self.reservations.values() if r.subnet}
        for net in ipaddress.IPv4Network(self.overlay_pool).subnets(new_prefix=24):
            if str(net) not in taken:
                return str(net)
        raise ResourceExhausted(f"overlay pool {self.overlay_pool} has no free /24 left")

    async def claim_first_free(
        self, federation_id: str, candidates: Iterable[TunnelCandidate]
    ) -> TunnelCandidate:
        """Provider: take the first candidate free on this host."""
        async with self._lock:
            if federation_id in self.reservations:
                raise AlreadyExists(f"federation {federation_id} already holds a tunnel here")
            used_vnis, used_ports = await self._used()
            for c in candidates:
                if c.vni not in used_vnis and c.udp_port not in used_ports:
                    self.reservations[federation_id] = Reservation(federation_id, [c])
                    return c
            raise ResourceExhausted(
                "none of the offered tunnel candidates is free on this host "
                "(VNI or UDP port already in use)"
            )

    async def narrow(self, federation_id: str, chosen: TunnelCandidate) -> None:
        """Consumer: keep only the candidate the provider chose."""
        async with self._lock:
            res = self.reservations.get(federation_id)
            if res is not None:
                res.candidates = [c for c in res.candidates if c == chosen]

    async def release(self, federation_id: str) -> None:
        async with self._lock:
            self.reservations.pop(federation_id, None)

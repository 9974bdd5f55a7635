"""The replicas a provider has committed to federations."""

from __future__ import annotations

from mecfed.errors import InvalidArgument, ResourceExhausted
from mecfed.model.checks import require_range
from mecfed.model.pricing import MAX_CAPACITY


class CapacityLedger:
    """Replicas this provider has committed to federations.

    Methods contain no ``await`` between check and update, so each is atomic
    on the event loop; they are ``async`` to match the rest of the federator.
    Reserving again for the same federation replaces its earlier reservation,
    so a retried award is harmless; releasing is idempotent for the same reason.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = 0
        self.set_capacity(capacity)
        self._by_federation: dict[str, int] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def set_capacity(self, capacity: int) -> None:
        """Changes capacity (e.g. a new offer policy); existing reservations stay."""
        require_range(capacity, "capacity_replicas", 0, MAX_CAPACITY)
        self._capacity = capacity

    @property
    def used(self) -> int:
        return sum(self._by_federation.values())

    @property
    def free(self) -> int:
        return max(self._capacity - self.used, 0)

    @property
    def load(self) -> float:
        """Used fraction of capacity in [0, 1]; 1 when there is no capacity."""
        if self._capacity == 0:
            return 1.0
        return min(self.used / self._capacity, 1.0)

    def reserved(self, federation_id: str) -> int:
        return self._by_federation.get(federation_id, 0)

    async def reserve(self, federation_id: str, replicas: int) -> None:
        if not federation_id:
            raise InvalidArgument.field("federation_id", "is required")
        if replicas < 1:
            raise InvalidArgument.field("replicas", f"is {replicas}; it must be at least 1")
        others = self.used - self.reserved(federation_id)
        if others + replicas > self._capacity:
            raise ResourceExhausted(
                f"capacity exhausted: {others} of {self._capacity} replicas committed, "
                f"{replicas} requested"
            )
        self._by_federation[federation_id] = replicas

    async def release(self, federation_id: str) -> int:
        """Frees a federation's replicas; returns how many (0 if none)."""
        return self.release_now(federation_id)

    def release_now(self, federation_id: str) -> int:
        return self._by_federation.pop(federation_id, 0)

    def restore(self, federation_id: str, replicas: int) -> None:
        """Puts back a reservation recorded before a restart, unchecked: it
        was committed then, even if the capacity was lowered since (new
        reservations are refused until it is freed)."""
        self._by_federation[federation_id] = replicas


__all__ = ["CapacityLedger"]

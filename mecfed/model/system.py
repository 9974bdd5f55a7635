"""MEC systems as a federator knows them (ETSI GS MEC 040 SystemInfo)."""

from __future__ import annotations

from dataclasses import dataclass

from mecfed.errors import InvalidArgument
from mecfed.model.checks import MAX_ID, MAX_TEXT, require_range, require_text

MAX_ENDPOINT_ENTRIES = 16
MAX_ENDPOINT_TEXT = 256


def _require_entry(value: str, field: str) -> str:
    return require_text(value, field, max_len=MAX_ENDPOINT_TEXT)


def _require_entries(values: tuple[object, ...], field: str) -> None:
    if not values:
        raise InvalidArgument.field(field, "must not be empty")
    if len(values) > MAX_ENDPOINT_ENTRIES:
        raise InvalidArgument.field(
            field, f"has {len(values)} entries; at most {MAX_ENDPOINT_ENTRIES}"
        )


@dataclass(frozen=True, slots=True)
class EndPoint:
    """Where a system's federator listens (MEC 040 EndPointInfo).

    Exactly one of the four alternatives is set; the others stay ``None``.
    """

    uris: tuple[str, ...] | None = None
    fqdn: tuple[str, ...] | None = None
    addresses: tuple[tuple[str, int], ...] | None = None
    alternative: str | None = None

    def __post_init__(self) -> None:
        # Normalise lists to tuples so records stay hashable and immutable.
        for name in ("uris", "fqdn", "addresses"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.addresses is not None:
            object.__setattr__(
                self, "addresses", tuple((host, port) for host, port in self.addresses)
            )
        self._validate()

    def _validate(self) -> None:
        chosen = [
            n for n in ("uris", "fqdn", "addresses", "alternative") if getattr(self, n) is not None
        ]
        if len(chosen) != 1:
            raise InvalidArgument.field(
                "",
                "must set exactly one of uris, fqdn, addresses, alternative"
                + (f" (got {', '.join(chosen)})" if chosen else ""),
            )
        if self.uris is not None:
            _require_entries(self.uris, "uris")
            for i, uri in enumerate(self.uris):
                _require_entry(uri, f"uris[{i}]")
        elif self.fqdn is not None:
            _require_entries(self.fqdn, "fqdn")
            for i, name in enumerate(self.fqdn):
                _require_entry(name, f"fqdn[{i}]")
        elif self.addresses is not None:
            _require_entries(self.addresses, "addresses")
            for i, (host, port) in enumerate(self.addresses):
                _require_entry(host, f"addresses[{i}].host")
                require_range(port, f"addresses[{i}].port", 1, 65535)
        else:
            assert self.alternative is not None
            _require_entry(self.alternative, "alternative")


@dataclass(frozen=True, slots=True)
class SystemRecord:
    """A MEC system known to this federator (MEC 040 SystemInfo).

    ``system_id`` is empty until the registry assigns one. ``endpoint`` may be
    ``None`` for systems that are only listed, never dialled.
    """

    system_id: str
    system_name: str
    system_provider: str
    endpoint: EndPoint | None = None

    def __post_init__(self) -> None:
        require_text(self.system_name, "system_name", max_len=MAX_TEXT)
        require_text(self.system_provider, "system_provider", max_len=MAX_TEXT)
        if len(self.system_id) > MAX_ID:
            raise InvalidArgument.field(
                "system_id", f"is {len(self.system_id)} characters long; at most {MAX_ID}"
            )


__all__ = ["EndPoint", "SystemRecord"]

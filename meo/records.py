"""What this MEO keeps about the apps and federations it made: mutable
bookkeeping records holding model values (:mod:`mecfed.model`), their JSON
form for the state file, and the model views they answer with.

The JSON form extends the one earlier versions wrote, so a MEO restarted
after an upgrade still finds what it made.

A federation's key is (consumer_id, federation_id): "" for this system's own
(consumer-side) federations, the consumer's system id for provider-side ones.
:func:`key_text` is its one-string form (reservations, labels, overlay IPs):
the bare federation id on the consumer side, ``consumer/federation`` on the
provider side ('/' is not allowed in ids, so the forms never collide).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeAlias

from mecfed.model import (
    App,
    AppInstance,
    AppSpec,
    InstanceState,
    OverlayEndpoint,
    Resources,
    Role,
    ServiceStatus,
)

FedKey: TypeAlias = tuple[str, str]  # (consumer_id, federation_id)


def key_text(key: FedKey) -> str:
    consumer, fid = key
    return f"{consumer}/{fid}" if consumer else fid


@dataclass
class InstanceRecord:
    """One replica: where it runs and its address in each federation it joined."""

    id: str
    host: str
    overlay_ips: dict[str, str] = field(default_factory=dict)  # key_text -> IP
    state: InstanceState = InstanceState.READY
    name: str = ""  # what its intent named (empty in records of earlier versions)

    def view(self) -> AppInstance:
        return AppInstance(self.id, self.host, self.state, tuple(sorted(self.overlay_ips.values())))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "host": self.host,
            "overlay_ips": dict(self.overlay_ips),
            "state": int(self.state),
        }
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InstanceRecord:
        return cls(
            id=raw["id"],
            host=raw["host"],
            overlay_ips=dict(raw.get("overlay_ips", {})),
            state=InstanceState(int(raw.get("state", InstanceState.READY))),
            name=str(raw.get("name", "")),
        )


@dataclass
class AppRecord:
    """An app of this MEC system, or one deployed here for a foreign consumer
    (``federation_id`` set). ``spec.replicas`` is the size it is kept at."""

    name: str
    spec: AppSpec
    instances: list[InstanceRecord] = field(default_factory=list)
    federation_id: str = ""

    def view(self) -> App:
        spec = self.spec
        if self.instances and len(self.instances) != spec.replicas:
            spec = replace(spec, replicas=len(self.instances))  # what actually runs
        return App(self.name, spec, tuple(i.view() for i in self.instances), self.federation_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": asdict(self.spec),
            "instances": [i.to_dict() for i in self.instances],
            "federation_id": self.federation_id,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AppRecord:
        spec = dict(raw["spec"])
        spec["resources"] = Resources(**spec.get("resources", {}))
        return cls(
            name=raw["name"],
            spec=AppSpec(**spec),
            instances=[InstanceRecord.from_dict(i) for i in raw["instances"]],
            federation_id=raw.get("federation_id", ""),
        )


def _endpoint_to_dict(ep: OverlayEndpoint | None) -> dict[str, Any] | None:
    if ep is None:
        return None
    return {
        "underlay_ip": ep.underlay_ip,
        "vni": ep.vni,
        "udp_port": ep.udp_port,
        "subnet": ep.subnet,
        "app_ips": list(ep.app_ips),
    }


def _endpoint_from_dict(raw: dict[str, Any] | None) -> OverlayEndpoint | None:
    if not raw:
        return None
    return OverlayEndpoint(
        underlay_ip=raw["underlay_ip"],
        subnet=raw["subnet"],
        app_ips=tuple(raw.get("app_ips", ())),
        vni=int(raw.get("vni", 0)),
        udp_port=int(raw.get("udp_port", 0)),
    )


@dataclass
class FederationRecord:
    """One end of a federation's overlay on this host."""

    federation_id: str
    role: Role
    app_name: str = ""  # provider: the deployed app; consumer: the attached app
    local: OverlayEndpoint | None = None
    remote: OverlayEndpoint | None = None
    links: list[str] = field(default_factory=list)
    peer_id: str = ""  # provider: consumer system id
    connected: bool = False
    tag: str = ""  # names its links (meo.network.LinkNames); "" in earlier versions

    @property
    def key(self) -> FedKey:
        return (self.peer_id if self.role == Role.PROVIDER else "", self.federation_id)

    @property
    def is_connected_consumer(self) -> bool:
        return self.role == Role.CONSUMER and self.connected

    def status(self, instances: list[InstanceRecord], links: list[str]) -> ServiceStatus:
        return ServiceStatus(
            federation_id=self.federation_id,
            role=self.role,
            instances=tuple(i.view() for i in instances),
            local_endpoint=self.local,
            remote_endpoint=self.remote,
            links=tuple(links),
            consumer_id=self.peer_id if self.role == Role.PROVIDER else "",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "federation_id": self.federation_id,
            "role": str(self.role),
            "app_name": self.app_name,
            "local": _endpoint_to_dict(self.local),
            "remote": _endpoint_to_dict(self.remote),
            "links": list(self.links),
            "peer_id": self.peer_id,
            "connected": self.connected,
            **({"tag": self.tag} if self.tag else {}),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FederationRecord:
        return cls(
            federation_id=raw["federation_id"],
            role=Role(raw["role"]),
            app_name=raw.get("app_name", ""),
            local=_endpoint_from_dict(raw.get("local")),
            remote=_endpoint_from_dict(raw.get("remote")),
            links=list(raw.get("links", [])),
            peer_id=raw.get("peer_id", ""),
            connected=bool(raw.get("connected", False)),
            tag=str(raw.get("tag", "")),
        )


__all__ = ["AppRecord", "FedKey", "FederationRecord", "InstanceRecord", "key_text"]

"""Domain types of the MEO and their mapping to/from the protobuf messages
(the only place that knows both)."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mecfed.errors import InvalidArgument
from mecfed.v1 import common_pb2, orchestrator_pb2
from mecfed.validation import (
    MAX_REPLICAS,
    require_id,
    require_image,
    require_ip,
    require_range,
    require_subnet,
)
from meo.alloc import Candidate
from meo.vim.base import Resources

DEFAULT_ECHO_PORT = 7
MAX_MEMORY_MIB = 1 << 20  # 1 TiB per replica: beyond that it is a typo
MAX_CPU_MILLICORES = 1024 * 1000


@dataclass(frozen=True)
class AppSpec:
    image: str
    replicas: int
    resources: Resources = field(default_factory=Resources)
    echo_port: int = DEFAULT_ECHO_PORT

    @classmethod
    def from_proto(cls, msg: common_pb2.AppSpec, field_name: str = "spec") -> AppSpec:
        require_image(msg.image, f"{field_name}.image")
        require_range(msg.replicas, f"{field_name}.replicas", 1, MAX_REPLICAS)
        res = msg.resources
        require_range(
            res.cpu_millicores, f"{field_name}.resources.cpu_millicores", 0, MAX_CPU_MILLICORES
        )
        require_range(res.memory_mib, f"{field_name}.resources.memory_mib", 0, MAX_MEMORY_MIB)
        if 0 < res.memory_mib < 6:
            raise InvalidArgument(f"{field_name}.resources.memory_mib must be 0 or at least 6")
        port = msg.echo_port or DEFAULT_ECHO_PORT
        require_range(port, f"{field_name}.echo_port", 1, 65535)
        return cls(
            image=msg.image,
            replicas=msg.replicas,
            resources=Resources(res.cpu_millicores, res.memory_mib),
            echo_port=port,
        )

    def to_proto(self) -> common_pb2.AppSpec:
        return common_pb2.AppSpec(
            image=self.image,
            replicas=self.replicas,
            resources=common_pb2.Resources(
                cpu_millicores=self.resources.cpu_millicores,
                memory_mib=self.resources.memory_mib,
            ),
            echo_port=self.echo_port,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AppSpec:
        return cls(**{**raw, "resources": Resources(**raw["resources"])})


@dataclass(frozen=True)
class Endpoint:
    """One end of a federation's overlay (OverlayEndpoint)."""

    underlay_ip: str
    vni: int = 0
    udp_port: int = 0
    subnet: str = ""
    app_ips: tuple[str, ...] = ()

    @classmethod
    def from_proto(
        cls, msg: common_pb2.OverlayEndpoint, field_name: str, *, need_tunnel: bool
    ) -> Endpoint:
        require_ip(msg.underlay_ip, f"{field_name}.underlay_ip")
        net = require_subnet(msg.subnet, f"{field_name}.subnet")
        if net.prefixlen != 24:
            raise InvalidArgument(f"{field_name}.subnet {msg.subnet} must be a /24")
        if need_tunnel:
            require_range(msg.vni, f"{field_name}.vni", 1, 16_777_215)
            require_range(msg.udp_port, f"{field_name}.udp_port", 1024, 65535)
        if len(msg.app_ips) > 126:
            raise InvalidArgument(
                f"{field_name}.app_ips has {len(msg.app_ips)} entries; at most 126"
            )
        for i, ip in enumerate(msg.app_ips):
            require_ip(ip, f"{field_name}.app_ips[{i}]")
            if ipaddress.ip_address(ip) not in net:
                raise InvalidArgument(f"{field_name}.app_ips[{i}] {ip} is outside {msg.subnet}")
        return cls(msg.underlay_ip, msg.vni, msg.udp_port, msg.subnet, tuple(msg.app_ips))

    def to_proto(self) -> common_pb2.OverlayEndpoint:
        return common_pb2.OverlayEndpoint(
            underlay_ip=self.underlay_ip,
            vni=self.vni,
            udp_port=self.udp_port,
            subnet=self.subnet,
            app_ips=list(self.app_ips),
        )

    def with_(self, **changes: Any) -> Endpoint:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "app_ips": list(self.app_ips)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Endpoint:
        return cls(**{**raw, "app_ips": tuple(raw.get("app_ips", ()))})


def candidates_from_proto(msgs: list[common_pb2.TunnelCandidate]) -> list[Candidate]:
    if not 1 <= len(msgs) <= 16:
        raise InvalidArgument(f"candidates has {len(msgs)} entries; it must have 1..16")
    out = []
    for i, c in enumerate(msgs):
        require_range(c.vni, f"candidates[{i}].vni", 1, 16_777_215)
        require_range(c.udp_port, f"candidates[{i}].udp_port", 1024, 65535)
        out.append(Candidate(c.vni, c.udp_port))
    return out


@dataclass
class InstanceRecord:
    id: str
    host: str
    overlay_ips: dict[str, str] = field(default_factory=dict)  # federation id -> IP
    state: int = common_pb2.INSTANCE_STATE_READY

    def to_proto(self) -> orchestrator_pb2.AppInstance:
        return orchestrator_pb2.AppInstance(
            instance_id=self.id,
            host=self.host,
            state=self.state,  # type: ignore[arg-type]
            overlay_ips=sorted(self.overlay_ips.values()),
        )


@dataclass
class AppRecord:
    name: str
    spec: AppSpec
    instances: list[InstanceRecord] = field(default_factory=list)
    federation_id: str = ""  # set for apps deployed for a foreign consumer

    def to_proto(self) -> orchestrator_pb2.App:
        return orchestrator_pb2.App(
            name=self.name,
            spec=replace(self.spec, replicas=len(self.instances)).to_proto(),
            instances=[i.to_proto() for i in self.instances],
            federation_id=self.federation_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.to_dict(),
            "instances": [asdict(i) for i in self.instances],
            "federation_id": self.federation_id,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AppRecord:
        return cls(
            name=raw["name"],
            spec=AppSpec.from_dict(raw["spec"]),
            instances=[InstanceRecord(**i) for i in raw["instances"]],
            federation_id=raw.get("federation_id", ""),
        )


@dataclass
class FederationRecord:
    federation_id: str
    role: str  # "provider" or "consumer"
    app_name: str = ""  # provider: the deployed app; consumer: the attached app
    local: Endpoint | None = None
    remote: Endpoint | None = None
    links: list[str] = field(default_factory=list)
    peer_id: str = ""  # provider: consumer system id
    connected: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["local"] = self.local.to_dict() if self.local else None
        d["remote"] = self.remote.to_dict() if self.remote else None
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FederationRecord:
        raw = dict(raw)
        raw["local"] = Endpoint.from_dict(raw["local"]) if raw.get("local") else None
        raw["remote"] = Endpoint.from_dict(raw["remote"]) if raw.get("remote") else None
        return cls(**raw)


def require_federation_id(value: str) -> str:
    return require_id(value, "federation_id")

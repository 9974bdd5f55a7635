"""Valid proto messages and model records for the wire tests."""

from __future__ import annotations

from mecfed.model import AppSpec, OverlayEndpoint, Requirements, Resources, TunnelCandidate
from mecfed.v1 import common_pb2

APP = AppSpec("registry.example.com:5000/team/echo:1.2", 3, Resources(250, 64), 7007)
REQUIREMENTS = Requirements(max_price=50_000, offers_to_wait_for=2, offer_timeout_ms=1500)
CONSUMER = OverlayEndpoint("192.168.1.10", "10.9.0.0/24", ("10.9.0.2", "10.9.0.3"))
PROVIDER = OverlayEndpoint("192.168.2.20", "10.9.0.0/24", ("10.9.0.130",), vni=4242, udp_port=4789)
CANDIDATES = (TunnelCandidate(4242, 4789), TunnelCandidate(4243, 4790), TunnelCandidate(9, 60000))


def app_proto(**kw: object) -> common_pb2.AppSpec:
    msg = common_pb2.AppSpec(image="nginx", replicas=1)
    for name, value in kw.items():
        if name in ("cpu_millicores", "memory_mib"):
            setattr(msg.resources, name, value)
        else:
            setattr(msg, name, value)
    return msg


def endpoint_proto(**kw: object) -> common_pb2.OverlayEndpoint:
    fields: dict[str, object] = {"underlay_ip": "192.168.1.10", "subnet": "10.9.0.0/24"}
    fields.update(kw)
    return common_pb2.OverlayEndpoint(**fields)  # type: ignore[arg-type]


def candidates_proto(*pairs: tuple[int, int]) -> list[common_pb2.TunnelCandidate]:
    return [common_pb2.TunnelCandidate(vni=v, udp_port=p) for v, p in pairs]

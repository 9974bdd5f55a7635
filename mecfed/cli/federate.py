"""Requesting federations as a consumer's MEO would, over Mfm: the consumer's
own service first, then ``RequestFederation`` and ``WatchFederation`` until a
terminal state. Shared by ``mecfed demo`` and ``mecfed bench``; no terminal
UI here (the caller passes a callback)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from mecfed.config import SystemConfig
from mecfed.rpc.security import secure_channel
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as meo_pb
from mecfed.v1 import orchestrator_pb2_grpc as meo_grpc

#: The workflow's steps in order (span and step names).
STEP_ORDER = ("offer_collection", "award", "deployment", "overlay", "traffic_check")
STATE_NAMES = {
    v.number: v.name.removeprefix("FEDERATION_STATE_").lower()
    for v in common_pb2.FederationState.DESCRIPTOR.values
}


def offers_for(systems: int) -> int:
    """The paper waits for k = 1 offer below 10 systems, 2 from there on."""
    return 1 if systems < 10 else 2


@dataclass(frozen=True)
class RequestOptions:
    """What every consumer asks for."""

    image: str = "mecfed/echo:1"
    max_price: int = 10**9
    offers_to_wait_for: int = 1
    offer_timeout_ms: int = 3000


@dataclass
class Outcome:
    consumer: str
    federation: federator_pb2.Federation | None = None
    error: str = ""
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.federation is not None
            and self.federation.state == common_pb2.FEDERATION_STATE_ESTABLISHED
        )

    def summary(self) -> dict[str, Any]:
        fed = self.federation
        if fed is None:
            return {
                "id": "",
                "consumer": self.consumer,
                "provider": "",
                "seconds": 0.0,
                "steps": {},
                "traffic": {"sent": 0, "received": 0, "loss": 1.0, "rtt_ms": 0.0},
                "error": self.error,
            }
        steps = {
            s.name: round((s.finished_at.ToNanoseconds() - s.started_at.ToNanoseconds()) / 1e9, 4)
            for s in fed.steps
        }
        seconds = (fed.updated_at.ToNanoseconds() - fed.created_at.ToNanoseconds()) / 1e9
        out: dict[str, Any] = {
            "id": fed.federation_id,
            "consumer": fed.consumer_id,
            "provider": fed.provider_id,
            "seconds": round(seconds, 4),
            "steps": steps,
            "traffic": {
                "sent": fed.traffic.sent,
                "received": fed.traffic.received,
                "loss": fed.traffic.loss if fed.traffic.sent else 1.0,
                "rtt_ms": round(fed.traffic.rtt_ms, 3),
            },
        }
        if fed.state == common_pb2.FEDERATION_STATE_FAILED:
            out["error"] = fed.error.detail
        return out


async def ensure_local_app(config: SystemConfig, service: str, image: str) -> None:
    """The consumer's own service runs before it asks to extend it."""
    async with secure_channel(config.meo_listen, config.tls, config.system_id) as ch:
        stub = meo_grpc.MecOrchestratorStub(ch)
        try:
            await stub.GetApp(meo_pb.GetAppRequest(name=service), timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            await stub.CreateApp(
                meo_pb.CreateAppRequest(
                    name=service, spec=common_pb2.AppSpec(image=image, replicas=1)
                ),
                timeout=60,
            )


async def federate(
    config: SystemConfig,
    service: str,
    request: RequestOptions,
    start: asyncio.Event,
    outcome: Outcome,
    on_change: Callable[[], None],
) -> None:
    """Requests one federation from the consumer's MEF (as its MEO would)
    once ``start`` is set, and follows it to a terminal state."""
    async with secure_channel(config.mef_listen, config.tls, config.system_id) as ch:
        stub = federator_pb2_grpc.MecFederatorStub(ch)
        await ch.channel_ready()
        await start.wait()
        try:
            first = await stub.RequestFederation(
                federator_pb2.RequestFederationRequest(
                    service_name=service,
                    app=common_pb2.AppSpec(image=request.image, replicas=1),
                    requirements=common_pb2.Requirements(
                        max_price=request.max_price,
                        offers_to_wait_for=request.offers_to_wait_for,
                        offer_timeout_ms=request.offer_timeout_ms,
                    ),
                ),
                timeout=30,
            )
            async for fed in stub.WatchFederation(
                federator_pb2.WatchFederationRequest(federation_id=first.federation_id),
                timeout=300,
            ):
                outcome.federation = fed
                outcome.history.append((time.time(), STATE_NAMES.get(fed.state, "?")))
                on_change()
        except grpc.aio.AioRpcError as exc:
            outcome.error = f"{exc.code().name}: {exc.details()}"
            on_change()


__all__ = [
    "STATE_NAMES",
    "STEP_ORDER",
    "Outcome",
    "RequestOptions",
    "ensure_local_app",
    "federate",
    "offers_for",
]

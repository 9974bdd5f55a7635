"""The provider's Mff gRPC face (FederationPeer), shared by both transports.

Thin: each method converts the message (mecfed.wire), asks the transport's
order gate who the order is for, and calls the provider workflow or the
deployments registry. Errors become status codes at the edge
(mecfed.rpc.service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mecfed.errors import FailedPrecondition, Unauthenticated
from mecfed.model import ServiceNeed
from mecfed.model.federation import Requirements
from mecfed.rpc.security import peer_identity
from mecfed.v1 import common_pb2, peer_pb2
from mecfed.wire import peer as wire
from mecfed.wire.common import ts
from mef.deployments import Deployments
from mef.transport.base import OrderGate, ProviderHandler

SERVICE = peer_pb2.DESCRIPTOR.services_by_name["FederationPeer"]


def caller_of(context: grpc.aio.ServicerContext) -> str:
    peer = peer_identity(context)
    if not peer:  # the authoriser normally stops these first
        raise Unauthenticated("client certificate required")
    return peer


class PeerServicer:
    """FederationPeer, served with :func:`mecfed.rpc.start_server`."""

    def __init__(
        self,
        provider: ProviderHandler,
        deployments: Deployments,
        gate: OrderGate,
        system_info: common_pb2.SystemInfo,
        underlay_ip: str,
    ) -> None:
        self._underlay_ip = underlay_ip
        self._provider = provider
        self._deployments = deployments
        self._gate = gate
        self.system_info = system_info

    async def GetFederationDetails(self, request, context):
        return self.system_info

    async def RequestOffer(self, request, context):
        if not self._gate.serves_offers:
            raise FailedPrecondition("this federator takes offers on the chain, not over Mff")
        caller = caller_of(context)
        req = wire.offer_request_from_proto(request)
        need = ServiceNeed(req.federation_id, caller, req.app, Requirements(req.max_price))
        offer = await self._provider.quote(need)
        return peer_pb2.OfferResponse(
            offer_id=str(offer.ref),
            provider_id=offer.provider_id,
            price=offer.price,
            valid_until=ts(offer.valid_until),
        )

    async def InstallApp(self, request, context):
        caller = caller_of(context)
        installation = wire.installation_from_proto(request)
        installation.consumer_endpoint.require_remote_of(self._underlay_ip, "consumer_endpoint")
        admission = await self._gate.admit(installation, caller)
        deployment = await self._deployments.install(installation, admission)
        return wire.details_to_proto(deployment.details())

    async def GetAppInstanceDetails(self, request, context):
        app_instance_id = wire.app_instance_id_from(request.app_instance_id)
        deployment = self._deployments.get(app_instance_id, caller_of(context))
        return wire.details_to_proto(deployment.details())

    async def WatchAppInstance(
        self, request, context
    ) -> AsyncIterator[peer_pb2.AppInstanceDetails]:
        app_instance_id = wire.app_instance_id_from(request.app_instance_id)
        deployment = self._deployments.get(app_instance_id, caller_of(context))
        async for details in deployment.changes():
            yield wire.details_to_proto(details)

    async def RemoveApp(self, request, context):
        caller = caller_of(context)
        app_instance_id, federation_id = wire.remove_target_from(request)
        if app_instance_id:
            deployment = await self._deployments.remove(app_instance_id, caller)
        else:
            deployment = await self._deployments.remove_by_federation(federation_id, caller)
        return wire.details_to_proto(deployment.details())


__all__ = ["SERVICE", "PeerServicer", "caller_of"]

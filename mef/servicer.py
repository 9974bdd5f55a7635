"""Mfm, federator side: the thin gRPC face of the registry, the consumer
workflow and the offer policy. Conversions only; decisions live elsewhere
and domain errors become status codes in mecfed.grpcutil.map_errors."""

from __future__ import annotations

from mecfed import validation as v
from mecfed.errors import InvalidArgument
from mecfed.grpcutil import map_errors
from mecfed.v1 import federator_pb2 as pb
from mecfed.v1 import federator_pb2_grpc as pb_grpc
from mef.domain import AppSpec, FederationState, Requirements
from mef.pricing import OfferPolicy
from mef.registry import EndPoint, SystemRecord, SystemRegistry
from mef.workflow import ConsumerWorkflow, ProviderWorkflow

_CHANGE = {
    "existing": pb.SystemUpdateNotification.CHANGE_EXISTING,
    "registered": pb.SystemUpdateNotification.CHANGE_REGISTERED,
    "updated": pb.SystemUpdateNotification.CHANGE_UPDATED,
    "deregistered": pb.SystemUpdateNotification.CHANGE_DEREGISTERED,
}


class FederatorServicer(pb_grpc.MecFederatorServicer):
    def __init__(
        self,
        registry: SystemRegistry,
        consumer: ConsumerWorkflow,
        provider: ProviderWorkflow,
    ) -> None:
        self._registry = registry
        self._consumer = consumer
        self._provider = provider

    # --- MEC 040 registration and discovery ----------------------------------

    @map_errors
    async def RegisterSystem(self, request, context):
        if not request.HasField("system_info"):
            raise InvalidArgument("system_info is required")
        record = await self._registry.register(SystemRecord.from_proto(request.system_info))
        return record.to_proto()

    @map_errors
    async def GetSystem(self, request, context):
        return (await self._registry.get(_system_id(request.system_id))).to_proto()

    @map_errors
    async def ListSystems(self, request, context):
        records = await self._registry.list(
            system_ids=tuple(request.system_id),
            names=tuple(request.system_name),
            providers=tuple(request.system_provider),
        )
        return pb.ListSystemsResponse(system_info=[r.to_proto() for r in records])

    @map_errors
    async def UpdateSystem(self, request, context):
        record = await self._registry.update(
            _system_id(request.system_id),
            name=request.system_name or None,
            endpoint=EndPoint.from_proto(request.endpoint)
            if request.HasField("endpoint")
            else None,
        )
        return record.to_proto()

    @map_errors
    async def DeregisterSystem(self, request, context):
        await self._registry.deregister(_system_id(request.system_id))
        return pb.DeregisterSystemResponse()

    @map_errors
    async def WatchSystems(self, request, context):
        async for change, records in self._registry.watch():
            yield pb.SystemUpdateNotification(
                change=_CHANGE[change], updated_system_info=[r.to_proto() for r in records]
            )

    # --- federation requests -------------------------------------------------

    @map_errors
    async def RequestFederation(self, request, context):
        v.require_name(request.service_name, "service_name")
        if not request.HasField("app"):
            raise InvalidArgument("app is required")
        if not request.HasField("requirements"):
            raise InvalidArgument("requirements is required (at least max_price)")
        if len(request.request_id) > 64:
            raise InvalidArgument("request_id is longer than 64 characters")
        fed = await self._consumer.request(
            request.service_name,
            AppSpec.from_proto(request.app),
            Requirements.from_proto(request.requirements),
            request_id=request.request_id,
        )
        return fed.to_proto()

    @map_errors
    async def GetFederation(self, request, context):
        return self._consumer.store.get(_federation_id(request.federation_id)).to_proto()

    @map_errors
    async def ListFederations(self, request, context):
        try:
            states = [FederationState(s) for s in request.states]
        except ValueError as exc:
            raise InvalidArgument(f"states: {exc}") from None
        return pb.ListFederationsResponse(
            federations=[f.to_proto() for f in self._consumer.store.list(states)]
        )

    @map_errors
    async def WatchFederation(self, request, context):
        stream = self._consumer.store.watch(
            _federation_id(request.federation_id), request.follow_after_terminal
        )
        async for fed in stream:
            yield fed.to_proto()

    @map_errors
    async def TerminateFederation(self, request, context):
        fed = await self._consumer.terminate(_federation_id(request.federation_id))
        return fed.to_proto()

    # --- offer policy ------------------------------------------------------------

    @map_errors
    async def GetOfferPolicy(self, request, context):
        return self._provider.policy.to_proto()

    @map_errors
    async def SetOfferPolicy(self, request, context):
        if not request.HasField("policy"):
            raise InvalidArgument("policy is required")
        policy = OfferPolicy.from_proto(request.policy)
        self._provider.set_policy(policy)
        return policy.to_proto()


def _system_id(value: str) -> str:
    if not value:
        raise InvalidArgument("system_id is required")
    if len(value) > 64:
        raise InvalidArgument("system_id is longer than 64 characters")
    return value


def _federation_id(value: str) -> str:
    return v.require_id(value, "federation_id")

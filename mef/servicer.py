"""Mfm, federator side: the thin gRPC face of the registry, the consumer
workflow and the offer policy. Each method converts the request
(mecfed.wire, which validates it), makes one domain call and converts the
answer; errors become status codes at the edge (mecfed.rpc.service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mecfed.v1 import federator_pb2 as pb
from mecfed.wire import common as wire_common
from mecfed.wire import federator as wire
from mef.registry import SystemRegistry
from mef.workflow import ConsumerWorkflow, ProviderWorkflow

SERVICE = pb.DESCRIPTOR.services_by_name["MecFederator"]


class FederatorServicer:
    """MecFederator, served with :func:`mecfed.rpc.start_server`."""

    def __init__(
        self, registry: SystemRegistry, consumer: ConsumerWorkflow, provider: ProviderWorkflow
    ) -> None:
        self._registry = registry
        self._consumer = consumer
        self._provider = provider

    # --- MEC 040 registration and discovery ----------------------------------

    async def RegisterSystem(self, request, context):
        info = wire_common.required(request, "system_info", "system_info")
        record = await self._registry.register(wire_common.system_from_proto(info))
        return wire_common.system_to_proto(record)

    async def GetSystem(self, request, context):
        record = await self._registry.get(wire.system_id_from(request.system_id))
        return wire_common.system_to_proto(record)

    async def ListSystems(self, request, context):
        records = await self._registry.list(
            system_ids=tuple(request.system_id),
            names=tuple(request.system_name),
            providers=tuple(request.system_provider),
        )
        return pb.ListSystemsResponse(system_info=[wire_common.system_to_proto(r) for r in records])

    async def UpdateSystem(self, request, context):
        system_id, name, endpoint = wire.system_update_from_proto(request)
        record = await self._registry.update(system_id, name=name, endpoint=endpoint)
        return wire_common.system_to_proto(record)

    async def DeregisterSystem(self, request, context):
        await self._registry.deregister(wire.system_id_from(request.system_id))
        return pb.DeregisterSystemResponse()

    async def WatchSystems(self, request, context) -> AsyncIterator[pb.SystemUpdateNotification]:
        async with self._registry.watch() as watch:
            async for change, records in watch:
                yield wire.notification_to_proto(change, records)

    # --- federation requests -------------------------------------------------

    async def RequestFederation(self, request, context):
        fed = await self._consumer.request(wire.federation_request_from_proto(request))
        return wire.federation_to_proto(fed)

    async def GetFederation(self, request, context):
        fed = self._consumer.store.get(wire.federation_id_from(request.federation_id))
        return wire.federation_to_proto(fed)

    async def ListFederations(self, request, context):
        feds = self._consumer.store.list(wire.states_from_proto(request.states))
        return pb.ListFederationsResponse(federations=[wire.federation_to_proto(f) for f in feds])

    async def WatchFederation(self, request, context) -> AsyncIterator[pb.Federation]:
        stream = self._consumer.store.watch(
            wire.federation_id_from(request.federation_id), request.follow_after_terminal
        )
        async for fed in stream:
            yield wire.federation_to_proto(fed)

    async def TerminateFederation(self, request, context):
        fed = await self._consumer.terminate(wire.federation_id_from(request.federation_id))
        return wire.federation_to_proto(fed)

    # --- offer policy ------------------------------------------------------------

    async def GetOfferPolicy(self, request, context):
        return wire.policy_to_proto(self._provider.policy)

    async def SetOfferPolicy(self, request, context):
        policy = wire.policy_from_proto(wire_common.required(request, "policy", "policy"))
        self._provider.set_policy(policy)
        return wire.policy_to_proto(policy)


__all__ = ["SERVICE", "FederatorServicer"]

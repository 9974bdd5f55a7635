import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mecfed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterSystemRequest(_message.Message):
    __slots__ = ("system_info",)
    SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    system_info: _common_pb2.SystemInfo
    def __init__(self, system_info: _Optional[_Union[_common_pb2.SystemInfo, _Mapping]] = ...) -> None: ...

class GetSystemRequest(_message.Message):
    __slots__ = ("system_id",)
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    def __init__(self, system_id: _Optional[str] = ...) -> None: ...

class ListSystemsRequest(_message.Message):
    __slots__ = ("system_id", "system_name", "system_provider")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    system_id: _containers.RepeatedScalarFieldContainer[str]
    system_name: _containers.RepeatedScalarFieldContainer[str]
    system_provider: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, system_id: _Optional[_Iterable[str]] = ..., system_name: _Optional[_Iterable[str]] = ..., system_provider: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSystemsResponse(_message.Message):
    __slots__ = ("system_info",)
    SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    system_info: _containers.RepeatedCompositeFieldContainer[_common_pb2.SystemInfo]
    def __init__(self, system_info: _Optional[_Iterable[_Union[_common_pb2.SystemInfo, _Mapping]]] = ...) -> None: ...

class UpdateSystemRequest(_message.Message):
    __slots__ = ("system_id", "system_name", "endpoint")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    system_name: str
    endpoint: _common_pb2.EndPointInfo
    def __init__(self, system_id: _Optional[str] = ..., system_name: _Optional[str] = ..., endpoint: _Optional[_Union[_common_pb2.EndPointInfo, _Mapping]] = ...) -> None: ...

class DeregisterSystemRequest(_message.Message):
    __slots__ = ("system_id",)
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    def __init__(self, system_id: _Optional[str] = ...) -> None: ...

class DeregisterSystemResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchSystemsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SystemUpdateNotification(_message.Message):
    __slots__ = ("change", "updated_system_info")
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[SystemUpdateNotification.Change]
        CHANGE_EXISTING: _ClassVar[SystemUpdateNotification.Change]
        CHANGE_REGISTERED: _ClassVar[SystemUpdateNotification.Change]
        CHANGE_UPDATED: _ClassVar[SystemUpdateNotification.Change]
        CHANGE_DEREGISTERED: _ClassVar[SystemUpdateNotification.Change]
    CHANGE_UNSPECIFIED: SystemUpdateNotification.Change
    CHANGE_EXISTING: SystemUpdateNotification.Change
    CHANGE_REGISTERED: SystemUpdateNotification.Change
    CHANGE_UPDATED: SystemUpdateNotification.Change
    CHANGE_DEREGISTERED: SystemUpdateNotification.Change
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    change: SystemUpdateNotification.Change
    updated_system_info: _containers.RepeatedCompositeFieldContainer[_common_pb2.SystemInfo]
    def __init__(self, change: _Optional[_Union[SystemUpdateNotification.Change, str]] = ..., updated_system_info: _Optional[_Iterable[_Union[_common_pb2.SystemInfo, _Mapping]]] = ...) -> None: ...

class RequestFederationRequest(_message.Message):
    __slots__ = ("service_name", "app", "requirements", "request_id")
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    service_name: str
    app: _common_pb2.AppSpec
    requirements: _common_pb2.Requirements
    request_id: str
    def __init__(self, service_name: _Optional[str] = ..., app: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ..., requirements: _Optional[_Union[_common_pb2.Requirements, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class Federation(_message.Message):
    __slots__ = ("federation_id", "service_name", "app", "requirements", "state", "consumer_id", "provider_id", "offers", "price", "app_instance_id", "consumer_endpoint", "provider_endpoint", "traffic", "steps", "created_at", "updated_at", "error", "backend", "history", "liveness")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    APP_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    service_name: str
    app: _common_pb2.AppSpec
    requirements: _common_pb2.Requirements
    state: _common_pb2.FederationState
    consumer_id: str
    provider_id: str
    offers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    price: int
    app_instance_id: str
    consumer_endpoint: _common_pb2.OverlayEndpoint
    provider_endpoint: _common_pb2.OverlayEndpoint
    traffic: _common_pb2.TrafficReport
    steps: _containers.RepeatedCompositeFieldContainer[_common_pb2.StepTiming]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    error: _common_pb2.ProblemDetails
    backend: str
    history: _containers.RepeatedCompositeFieldContainer[_common_pb2.StateChange]
    liveness: _common_pb2.TrafficReport
    def __init__(self, federation_id: _Optional[str] = ..., service_name: _Optional[str] = ..., app: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ..., requirements: _Optional[_Union[_common_pb2.Requirements, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.FederationState, str]] = ..., consumer_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., offers: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., price: _Optional[int] = ..., app_instance_id: _Optional[str] = ..., consumer_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., provider_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., traffic: _Optional[_Union[_common_pb2.TrafficReport, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[_common_pb2.StepTiming, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ProblemDetails, _Mapping]] = ..., backend: _Optional[str] = ..., history: _Optional[_Iterable[_Union[_common_pb2.StateChange, _Mapping]]] = ..., liveness: _Optional[_Union[_common_pb2.TrafficReport, _Mapping]] = ...) -> None: ...

class GetFederationRequest(_message.Message):
    __slots__ = ("federation_id",)
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    def __init__(self, federation_id: _Optional[str] = ...) -> None: ...

class ListFederationsRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.FederationState]
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.FederationState, str]]] = ...) -> None: ...

class ListFederationsResponse(_message.Message):
    __slots__ = ("federations",)
    FEDERATIONS_FIELD_NUMBER: _ClassVar[int]
    federations: _containers.RepeatedCompositeFieldContainer[Federation]
    def __init__(self, federations: _Optional[_Iterable[_Union[Federation, _Mapping]]] = ...) -> None: ...

class WatchFederationRequest(_message.Message):
    __slots__ = ("federation_id", "follow_after_terminal")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_AFTER_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    follow_after_terminal: bool
    def __init__(self, federation_id: _Optional[str] = ..., follow_after_terminal: _Optional[bool] = ...) -> None: ...

class TerminateFederationRequest(_message.Message):
    __slots__ = ("federation_id",)
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    def __init__(self, federation_id: _Optional[str] = ...) -> None: ...

class OfferPolicy(_message.Message):
    __slots__ = ("fixed", "tariff", "capacity_replicas", "offer_validity_ms")
    class Fixed(_message.Message):
        __slots__ = ("price",)
        PRICE_FIELD_NUMBER: _ClassVar[int]
        price: int
        def __init__(self, price: _Optional[int] = ...) -> None: ...
    class Tariff(_message.Message):
        __slots__ = ("region", "watt_hours_per_replica", "utc_offset_minutes", "load_sensitivity")
        REGION_FIELD_NUMBER: _ClassVar[int]
        WATT_HOURS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
        UTC_OFFSET_MINUTES_FIELD_NUMBER: _ClassVar[int]
        LOAD_SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
        region: str
        watt_hours_per_replica: int
        utc_offset_minutes: int
        load_sensitivity: float
        def __init__(self, region: _Optional[str] = ..., watt_hours_per_replica: _Optional[int] = ..., utc_offset_minutes: _Optional[int] = ..., load_sensitivity: _Optional[float] = ...) -> None: ...
    FIXED_FIELD_NUMBER: _ClassVar[int]
    TARIFF_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    OFFER_VALIDITY_MS_FIELD_NUMBER: _ClassVar[int]
    fixed: OfferPolicy.Fixed
    tariff: OfferPolicy.Tariff
    capacity_replicas: int
    offer_validity_ms: int
    def __init__(self, fixed: _Optional[_Union[OfferPolicy.Fixed, _Mapping]] = ..., tariff: _Optional[_Union[OfferPolicy.Tariff, _Mapping]] = ..., capacity_replicas: _Optional[int] = ..., offer_validity_ms: _Optional[int] = ...) -> None: ...

class GetOfferPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetOfferPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: OfferPolicy
    def __init__(self, policy: _Optional[_Union[OfferPolicy, _Mapping]] = ...) -> None: ...

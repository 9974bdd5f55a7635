import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FederationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEDERATION_STATE_UNSPECIFIED: _ClassVar[FederationState]
    FEDERATION_STATE_REQUESTED: _ClassVar[FederationState]
    FEDERATION_STATE_COLLECTING_OFFERS: _ClassVar[FederationState]
    FEDERATION_STATE_AWARDED: _ClassVar[FederationState]
    FEDERATION_STATE_DEPLOYING: _ClassVar[FederationState]
    FEDERATION_STATE_CONNECTING: _ClassVar[FederationState]
    FEDERATION_STATE_VERIFYING: _ClassVar[FederationState]
    FEDERATION_STATE_ESTABLISHED: _ClassVar[FederationState]
    FEDERATION_STATE_FAILED: _ClassVar[FederationState]
    FEDERATION_STATE_TERMINATED: _ClassVar[FederationState]
    FEDERATION_STATE_DEGRADED: _ClassVar[FederationState]
    FEDERATION_STATE_TERMINATING: _ClassVar[FederationState]

class InstanceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_STATE_UNSPECIFIED: _ClassVar[InstanceState]
    INSTANCE_STATE_PENDING: _ClassVar[InstanceState]
    INSTANCE_STATE_READY: _ClassVar[InstanceState]
    INSTANCE_STATE_FAILED: _ClassVar[InstanceState]
    INSTANCE_STATE_TERMINATING: _ClassVar[InstanceState]
    INSTANCE_STATE_TERMINATED: _ClassVar[InstanceState]
FEDERATION_STATE_UNSPECIFIED: FederationState
FEDERATION_STATE_REQUESTED: FederationState
FEDERATION_STATE_COLLECTING_OFFERS: FederationState
FEDERATION_STATE_AWARDED: FederationState
FEDERATION_STATE_DEPLOYING: FederationState
FEDERATION_STATE_CONNECTING: FederationState
FEDERATION_STATE_VERIFYING: FederationState
FEDERATION_STATE_ESTABLISHED: FederationState
FEDERATION_STATE_FAILED: FederationState
FEDERATION_STATE_TERMINATED: FederationState
FEDERATION_STATE_DEGRADED: FederationState
FEDERATION_STATE_TERMINATING: FederationState
INSTANCE_STATE_UNSPECIFIED: InstanceState
INSTANCE_STATE_PENDING: InstanceState
INSTANCE_STATE_READY: InstanceState
INSTANCE_STATE_FAILED: InstanceState
INSTANCE_STATE_TERMINATING: InstanceState
INSTANCE_STATE_TERMINATED: InstanceState

class Address(_message.Message):
    __slots__ = ("host", "port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class EndPointInfo(_message.Message):
    __slots__ = ("uris", "fqdn", "addresses", "alternative")
    class Uris(_message.Message):
        __slots__ = ("uris",)
        URIS_FIELD_NUMBER: _ClassVar[int]
        uris: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, uris: _Optional[_Iterable[str]] = ...) -> None: ...
    class Fqdns(_message.Message):
        __slots__ = ("fqdn",)
        FQDN_FIELD_NUMBER: _ClassVar[int]
        fqdn: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, fqdn: _Optional[_Iterable[str]] = ...) -> None: ...
    class Addresses(_message.Message):
        __slots__ = ("addresses",)
        ADDRESSES_FIELD_NUMBER: _ClassVar[int]
        addresses: _containers.RepeatedCompositeFieldContainer[Address]
        def __init__(self, addresses: _Optional[_Iterable[_Union[Address, _Mapping]]] = ...) -> None: ...
    URIS_FIELD_NUMBER: _ClassVar[int]
    FQDN_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVE_FIELD_NUMBER: _ClassVar[int]
    uris: EndPointInfo.Uris
    fqdn: EndPointInfo.Fqdns
    addresses: EndPointInfo.Addresses
    alternative: str
    def __init__(self, uris: _Optional[_Union[EndPointInfo.Uris, _Mapping]] = ..., fqdn: _Optional[_Union[EndPointInfo.Fqdns, _Mapping]] = ..., addresses: _Optional[_Union[EndPointInfo.Addresses, _Mapping]] = ..., alternative: _Optional[str] = ...) -> None: ...

class SystemInfo(_message.Message):
    __slots__ = ("system_id", "system_name", "system_provider", "endpoint")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    system_name: str
    system_provider: str
    endpoint: EndPointInfo
    def __init__(self, system_id: _Optional[str] = ..., system_name: _Optional[str] = ..., system_provider: _Optional[str] = ..., endpoint: _Optional[_Union[EndPointInfo, _Mapping]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpu_millicores", "memory_mib")
    CPU_MILLICORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    cpu_millicores: int
    memory_mib: int
    def __init__(self, cpu_millicores: _Optional[int] = ..., memory_mib: _Optional[int] = ...) -> None: ...

class AppSpec(_message.Message):
    __slots__ = ("image", "replicas", "resources", "echo_port")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ECHO_PORT_FIELD_NUMBER: _ClassVar[int]
    image: str
    replicas: int
    resources: Resources
    echo_port: int
    def __init__(self, image: _Optional[str] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., echo_port: _Optional[int] = ...) -> None: ...

class Requirements(_message.Message):
    __slots__ = ("max_price", "offers_to_wait_for", "offer_timeout_ms")
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    OFFERS_TO_WAIT_FOR_FIELD_NUMBER: _ClassVar[int]
    OFFER_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    max_price: int
    offers_to_wait_for: int
    offer_timeout_ms: int
    def __init__(self, max_price: _Optional[int] = ..., offers_to_wait_for: _Optional[int] = ..., offer_timeout_ms: _Optional[int] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("state", "at", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: FederationState
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, state: _Optional[_Union[FederationState, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class OverlayEndpoint(_message.Message):
    __slots__ = ("underlay_ip", "vni", "udp_port", "subnet", "app_ips")
    UNDERLAY_IP_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    UDP_PORT_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    APP_IPS_FIELD_NUMBER: _ClassVar[int]
    underlay_ip: str
    vni: int
    udp_port: int
    subnet: str
    app_ips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, underlay_ip: _Optional[str] = ..., vni: _Optional[int] = ..., udp_port: _Optional[int] = ..., subnet: _Optional[str] = ..., app_ips: _Optional[_Iterable[str]] = ...) -> None: ...

class TunnelCandidate(_message.Message):
    __slots__ = ("vni", "udp_port")
    VNI_FIELD_NUMBER: _ClassVar[int]
    UDP_PORT_FIELD_NUMBER: _ClassVar[int]
    vni: int
    udp_port: int
    def __init__(self, vni: _Optional[int] = ..., udp_port: _Optional[int] = ...) -> None: ...

class TrafficReport(_message.Message):
    __slots__ = ("sent", "received", "loss", "rtt_ms", "rtt_max_ms", "measured_at")
    SENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    RTT_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    sent: int
    received: int
    loss: float
    rtt_ms: float
    rtt_max_ms: float
    measured_at: _timestamp_pb2.Timestamp
    def __init__(self, sent: _Optional[int] = ..., received: _Optional[int] = ..., loss: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., rtt_max_ms: _Optional[float] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StepTiming(_message.Message):
    __slots__ = ("name", "started_at", "finished_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("provider_id", "price", "valid_until", "received_at")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    price: int
    valid_until: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, provider_id: _Optional[str] = ..., price: _Optional[int] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProblemDetails(_message.Message):
    __slots__ = ("type", "title", "status", "detail", "instance")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    title: str
    status: int
    detail: str
    instance: str
    def __init__(self, type: _Optional[str] = ..., title: _Optional[str] = ..., status: _Optional[int] = ..., detail: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

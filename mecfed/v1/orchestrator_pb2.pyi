from mecfed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class App(_message.Message):
    __slots__ = ("name", "spec", "instances", "federation_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _common_pb2.AppSpec
    instances: _containers.RepeatedCompositeFieldContainer[AppInstance]
    federation_id: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[AppInstance, _Mapping]]] = ..., federation_id: _Optional[str] = ...) -> None: ...

class AppInstance(_message.Message):
    __slots__ = ("instance_id", "host", "state", "overlay_ips")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_IPS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    host: str
    state: _common_pb2.InstanceState
    overlay_ips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instance_id: _Optional[str] = ..., host: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.InstanceState, str]] = ..., overlay_ips: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateAppRequest(_message.Message):
    __slots__ = ("name", "spec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _common_pb2.AppSpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ...) -> None: ...

class GetAppRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListAppsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAppsResponse(_message.Message):
    __slots__ = ("apps",)
    APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[App]
    def __init__(self, apps: _Optional[_Iterable[_Union[App, _Mapping]]] = ...) -> None: ...

class ScaleAppRequest(_message.Message):
    __slots__ = ("name", "replicas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    replicas: int
    def __init__(self, name: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class DeleteAppRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteAppResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeployFederatedServiceRequest(_message.Message):
    __slots__ = ("federation_id", "consumer_id", "app", "consumer_endpoint", "candidates")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    consumer_id: str
    app: _common_pb2.AppSpec
    consumer_endpoint: _common_pb2.OverlayEndpoint
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.TunnelCandidate]
    def __init__(self, federation_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., app: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ..., consumer_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[_common_pb2.TunnelCandidate, _Mapping]]] = ...) -> None: ...

class DeployFederatedServiceResponse(_message.Message):
    __slots__ = ("provider_endpoint", "instances")
    PROVIDER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    provider_endpoint: _common_pb2.OverlayEndpoint
    instances: _containers.RepeatedCompositeFieldContainer[AppInstance]
    def __init__(self, provider_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[AppInstance, _Mapping]]] = ...) -> None: ...

class ReserveOverlayRequest(_message.Message):
    __slots__ = ("federation_id", "candidates")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    candidates: int
    def __init__(self, federation_id: _Optional[str] = ..., candidates: _Optional[int] = ...) -> None: ...

class ReserveOverlayResponse(_message.Message):
    __slots__ = ("consumer_endpoint", "candidates")
    CONSUMER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    consumer_endpoint: _common_pb2.OverlayEndpoint
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.TunnelCandidate]
    def __init__(self, consumer_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[_common_pb2.TunnelCandidate, _Mapping]]] = ...) -> None: ...

class ConnectOverlayRequest(_message.Message):
    __slots__ = ("federation_id", "service_name", "provider_endpoint")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    service_name: str
    provider_endpoint: _common_pb2.OverlayEndpoint
    def __init__(self, federation_id: _Optional[str] = ..., service_name: _Optional[str] = ..., provider_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ...) -> None: ...

class ConnectOverlayResponse(_message.Message):
    __slots__ = ("consumer_endpoint",)
    CONSUMER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    consumer_endpoint: _common_pb2.OverlayEndpoint
    def __init__(self, consumer_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ...) -> None: ...

class VerifyTrafficRequest(_message.Message):
    __slots__ = ("federation_id", "count", "interval_ms", "timeout_ms", "echo_port")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ECHO_PORT_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    count: int
    interval_ms: int
    timeout_ms: int
    echo_port: int
    def __init__(self, federation_id: _Optional[str] = ..., count: _Optional[int] = ..., interval_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., echo_port: _Optional[int] = ...) -> None: ...

class WatchTrafficRequest(_message.Message):
    __slots__ = ("federation_id", "period_ms", "count", "interval_ms", "timeout_ms", "echo_port")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ECHO_PORT_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    period_ms: int
    count: int
    interval_ms: int
    timeout_ms: int
    echo_port: int
    def __init__(self, federation_id: _Optional[str] = ..., period_ms: _Optional[int] = ..., count: _Optional[int] = ..., interval_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., echo_port: _Optional[int] = ...) -> None: ...

class ReleaseServiceRequest(_message.Message):
    __slots__ = ("federation_id", "consumer_id")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    consumer_id: str
    def __init__(self, federation_id: _Optional[str] = ..., consumer_id: _Optional[str] = ...) -> None: ...

class ReleaseServiceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServiceStatusRequest(_message.Message):
    __slots__ = ("federation_id", "consumer_id")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    consumer_id: str
    def __init__(self, federation_id: _Optional[str] = ..., consumer_id: _Optional[str] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceStatus]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceStatus, _Mapping]]] = ...) -> None: ...

class ServiceStatus(_message.Message):
    __slots__ = ("federation_id", "role", "instances", "local_endpoint", "remote_endpoint", "links", "consumer_id")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    role: str
    instances: _containers.RepeatedCompositeFieldContainer[AppInstance]
    local_endpoint: _common_pb2.OverlayEndpoint
    remote_endpoint: _common_pb2.OverlayEndpoint
    links: _containers.RepeatedScalarFieldContainer[str]
    consumer_id: str
    def __init__(self, federation_id: _Optional[str] = ..., role: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[AppInstance, _Mapping]]] = ..., local_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., remote_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., links: _Optional[_Iterable[str]] = ..., consumer_id: _Optional[str] = ...) -> None: ...

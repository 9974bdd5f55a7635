import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mecfed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetFederationDetailsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RequestOfferRequest(_message.Message):
    __slots__ = ("federation_id", "app", "max_price")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    app: _common_pb2.AppSpec
    max_price: int
    def __init__(self, federation_id: _Optional[str] = ..., app: _Optional[_Union[_common_pb2.AppSpec, _Mapping]] = ..., max_price: _Optional[int] = ...) -> None: ...

class OfferResponse(_message.Message):
    __slots__ = ("offer_id", "provider_id", "price", "valid_until")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    provider_id: str
    price: int
    valid_until: _timestamp_pb2.Timestamp
    def __init__(self, offer_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., price: _Optional[int] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InstallAppRequest(_message.Message):
    __slots__ = ("offer_id", "federation_id", "consumer_endpoint", "candidates", "consumer_signature")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    federation_id: str
    consumer_endpoint: _common_pb2.OverlayEndpoint
    candidates: _containers.RepeatedCompositeFieldContainer[_common_pb2.TunnelCandidate]
    consumer_signature: bytes
    def __init__(self, offer_id: _Optional[str] = ..., federation_id: _Optional[str] = ..., consumer_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[_common_pb2.TunnelCandidate, _Mapping]]] = ..., consumer_signature: _Optional[bytes] = ...) -> None: ...

class AppInstanceRequest(_message.Message):
    __slots__ = ("app_instance_id", "federation_id")
    APP_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    app_instance_id: str
    federation_id: str
    def __init__(self, app_instance_id: _Optional[str] = ..., federation_id: _Optional[str] = ...) -> None: ...

class AppInstanceDetails(_message.Message):
    __slots__ = ("app_instance_id", "federation_id", "state", "provider_endpoint", "error", "deployment_notice")
    APP_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_NOTICE_FIELD_NUMBER: _ClassVar[int]
    app_instance_id: str
    federation_id: str
    state: _common_pb2.InstanceState
    provider_endpoint: _common_pb2.OverlayEndpoint
    error: _common_pb2.ProblemDetails
    deployment_notice: bytes
    def __init__(self, app_instance_id: _Optional[str] = ..., federation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.InstanceState, str]] = ..., provider_endpoint: _Optional[_Union[_common_pb2.OverlayEndpoint, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ProblemDetails, _Mapping]] = ..., deployment_notice: _Optional[bytes] = ...) -> None: ...

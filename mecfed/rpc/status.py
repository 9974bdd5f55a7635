"""The one mapping between domain errors and gRPC status codes.

Servicers never pick status codes: the service adapter (:mod:`mecfed.rpc.service`)
aborts every failed call with :func:`status_of`. An :class:`InvalidArgument`
also carries its field violations as ``google.rpc.BadRequest`` details, so a
client can tell which field was wrong without parsing prose. Clients turn a
failed call to another mecfed server back into a domain error with
:func:`error_from_rpc`, details included.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mecfed.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    MecfedError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

# Most specific class first: lookups walk the exception's MRO.
CODE_OF: dict[type[MecfedError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Cancelled: grpc.StatusCode.CANCELLED,
    Internal: grpc.StatusCode.INTERNAL,
    MecfedError: grpc.StatusCode.INTERNAL,
}
ERROR_OF: dict[grpc.StatusCode, type[MecfedError]] = {
    code: cls for cls, code in CODE_OF.items() if cls is not MecfedError
}


@dataclass(frozen=True)
class Status:
    """What a servicer answers for an exception."""

    code: grpc.StatusCode
    message: str
    violations: tuple[FieldViolation, ...] = ()

    def to_rich(self) -> grpc.Status:
        """The status with ``google.rpc.BadRequest`` details (grpc-status-details-bin)."""
        details = []
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        return rpc_status.to_status(
            status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
        )


def code_of(exc: MecfedError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in CODE_OF:
            return CODE_OF[cls]
    return grpc.StatusCode.INTERNAL


def status_of(exc: BaseException, method: str = "") -> Status:
    """The status a servicer answers for ``exc``. Unexpected exceptions are
    logged with their traceback under an incident id and answered INTERNAL
    with that id only: no Python class names or internals reach the caller."""
    if isinstance(exc, InvalidArgument):
        return Status(grpc.StatusCode.INVALID_ARGUMENT, exc.message, exc.violations)
    if isinstance(exc, MecfedError):
        code = code_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("%s failed: %s", method or "call", exc.message, exc_info=exc)
        return Status(code, exc.message)
    incident = secrets.token_hex(4)
    log.error("%s failed unexpectedly (incident %s)", method or "call", incident, exc_info=exc)
    return Status(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}, see the server log)"
    )


def violations_of(exc: grpc.RpcError) -> tuple[FieldViolation, ...]:
    """Field violations sent as ``google.rpc.BadRequest`` details, if any."""
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError, TypeError):
        return ()
    if status is None:
        return ()
    out: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return tuple(out)


def error_from_rpc(exc: grpc.RpcError, what: str) -> MecfedError:
    """A failed call to another server as a domain error: ``"<what>: <details>"``."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    message = f"{what}: {details}"
    cls = ERROR_OF.get(code)
    if cls is InvalidArgument:
        return InvalidArgument(message, violations_of(exc))
    if cls is None:  # UNKNOWN, DATA_LOSS, UNIMPLEMENTED, OUT_OF_RANGE: not ours to explain
        return Internal(f"{message} ({code.name if code else 'UNKNOWN'})")
    return cls(message)


__all__ = [
    "CODE_OF",
    "Status",
    "code_of",
    "error_from_rpc",
    "status_of",
    "violations_of",
]

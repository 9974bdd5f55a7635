"""Domain exceptions and their one mapping to gRPC status codes.

Library code raises these; servicers never pick status codes themselves but
let :func:`grpc_status_of` (used by :func:`mecfed.grpcutil.map_errors`) decide.
"""

from __future__ import annotations

import grpc


class MecfedError(Exception):
    """Base class; ``code`` is the gRPC status the error maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MecfedError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(MecfedError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(MecfedError):
    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class FailedPrecondition(MecfedError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412


class PermissionDenied(MecfedError):
    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Unauthenticated(MecfedError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class ResourceExhausted(MecfedError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(MecfedError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(MecfedError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class DeploymentFailed(MecfedError):
    """Containers or links could not be set up (already rolled back)."""

    code = grpc.StatusCode.INTERNAL
    http_status = 500


_BY_CODE: dict[grpc.StatusCode, type[MecfedError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
    )
}


def grpc_status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a servicer answers for ``exc``."""
    if isinstance(exc, MecfedError):
        return exc.code, exc.message
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def from_rpc_error(exc: grpc.RpcError, what: str) -> MecfedError:
    """Turns a failed call to another mecfed server back into a domain error."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _BY_CODE.get(code, MecfedError)
    err = cls(f"{what}: {details}")
    if cls is MecfedError:
        err.code = code if code is not None else grpc.StatusCode.UNKNOWN
    return err

"""mecfed: federation of ETSI MEC systems over Mfm/Mff gRPC APIs.

The shared library: the domain model (:mod:`mecfed.model`), its protobuf
conversion (:mod:`mecfed.wire`), the gRPC edge (:mod:`mecfed.rpc`), the
Ethereum client (:mod:`mecfed.chain`), configuration and tracing. The domain
errors are re-exported here."""

from mecfed.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    DeploymentFailed,
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

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "DeploymentFailed",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "MecfedError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "__version__",
]

"""Domain exceptions, shared by every part of mecfed.

They know nothing of gRPC: library code raises them, and the one mapping to
status codes lives at the servicer edge (:mod:`mecfed.rpc.status`). The
HTTP-style ``http_status`` belongs to the domain: it is the ``status`` of a
MEC 040 ProblemDetails, which the consumer's federation record carries.

An :class:`InvalidArgument` names the offending fields: ``violations`` holds
one :class:`FieldViolation` per field (path relative to the message that was
checked; :meth:`InvalidArgument.under` prefixes it when a checked part is
nested in a larger message). The edge sends them as ``google.rpc.BadRequest``
details as well as in the message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field: ``field`` is a dotted path (``app.resources.memory_mib``,
    ``candidates[2].vni``), ``description`` says what is wrong with it."""

    field: str
    description: str

    def under(self, prefix: str) -> FieldViolation:
        if not prefix:
            return self
        joined = f"{prefix}{self.field}" if self.field.startswith("[") else f"{prefix}.{self.field}"
        return FieldViolation(joined if self.field else prefix, self.description)

    def __str__(self) -> str:
        return f"{self.field} {self.description}" if self.field else self.description


class MecfedError(Exception):
    """Base class of every domain error."""

    #: ProblemDetails status (MEC 040) of this kind of error.
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def title(self) -> str:
        """ProblemDetails title: the kind of error, e.g. ``InvalidArgument``."""
        return type(self).__name__


class InvalidArgument(MecfedError):
    """The request is malformed or out of bounds; nothing was done."""

    http_status = 400

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """One wrong field; the message is ``"<field> <description>"``."""
        violation = FieldViolation(field, description)
        return cls(str(violation), (violation,))

    def under(self, prefix: str) -> InvalidArgument:
        """The same error for a message nested at ``prefix`` of a larger one."""
        if not prefix:
            return self
        violations = tuple(v.under(prefix) for v in self.violations)
        if len(violations) == 1:
            return InvalidArgument(str(violations[0]), violations)
        return InvalidArgument(f"{prefix}: {self.message}", violations)


class NotFound(MecfedError):
    http_status = 404


class AlreadyExists(MecfedError):
    http_status = 409


class FailedPrecondition(MecfedError):
    """The request is well formed but the system is not in a state to do it
    (e.g. an offer expired, a provider refuses an order)."""

    http_status = 412


class Aborted(MecfedError):
    """The operation was started and given up, and everything it made was
    rolled back; trying again (elsewhere) may succeed."""

    http_status = 409


class PermissionDenied(MecfedError):
    http_status = 403


class Unauthenticated(MecfedError):
    http_status = 401


class ResourceExhausted(MecfedError):
    http_status = 429


class Unavailable(MecfedError):
    """A peer, the MEO or the chain node cannot be reached right now."""

    http_status = 503


class DeadlineExceeded(MecfedError):
    http_status = 504


class Cancelled(MecfedError):
    http_status = 499


class Internal(MecfedError):
    """A bug or an unexpected failure of ours."""

    http_status = 500


class DeploymentFailed(Aborted):
    """A provider could not deploy (containers or links could not be set up);
    what it made was rolled back. Also the consumer's verdict when the
    app-to-app traffic check fails."""


__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
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
]

"""Mff transports: thin adapters that move the workflow's messages between
federators, each with explicit capabilities (:mod:`mef.transport.base`):
:mod:`mef.transport.direct` and :mod:`mef.transport.chain`."""

from mef.transport.base import (
    Admission,
    CallerPolicy,
    Capabilities,
    Fallback,
    MffTransport,
    OrderGate,
    ProviderHandler,
)

__all__ = [
    "Admission",
    "CallerPolicy",
    "Capabilities",
    "Fallback",
    "MffTransport",
    "OrderGate",
    "ProviderHandler",
]

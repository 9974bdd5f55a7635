"""mecfed MEC Federator (MEF): Mfm for its MEO, Mff between federators.

Entry points: :func:`mef.start` (in-process server), ``python -m mef``.
The names below are imported on first use, so importing one submodule does
not load the whole federator."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConsumerSettings": "mef.workflow",
    "ConsumerWorkflow": "mef.workflow",
    "ProviderWorkflow": "mef.workflow",
    "Deployment": "mef.deployments",
    "Deployments": "mef.deployments",
    "MefServer": "mef.server",
    "start": "mef.server",
}

if TYPE_CHECKING:
    from mef.deployments import Deployment, Deployments
    from mef.server import MefServer, start
    from mef.workflow import ConsumerSettings, ConsumerWorkflow, ProviderWorkflow


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mef' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ConsumerSettings",
    "ConsumerWorkflow",
    "Deployment",
    "Deployments",
    "MefServer",
    "ProviderWorkflow",
    "start",
]

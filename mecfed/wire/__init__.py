"""The one conversion layer between protobuf messages (mecfed.v1) and the
domain model (mecfed.model).

``*_from_proto`` functions are the validation edge: they build model records
(which check their own bounds) and report a wrong field under its full path
in the message, e.g. ``app.resources.memory_mib``. Servicers call them first
and hand only model records to the domain.
"""

from mecfed.wire import common, federator, orchestrator, peer

__all__ = ["common", "federator", "orchestrator", "peer"]

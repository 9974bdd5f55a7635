"""mecfed MEC Orchestrator (MEO): runs apps and builds VXLAN overlays.

Entry points: :func:`meo.server.serve` (gRPC server), ``python -m meo``,
:func:`meo.image.build_image` (the echo app image).
"""

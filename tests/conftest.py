"""Test-wide settings."""

import os

# Tests start testbed processes from a process that runs gRPC; see the note
# at the top of mecfed/cli.py. Must be set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

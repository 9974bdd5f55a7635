#!/usr/bin/env bash
# Regenerates the committed gRPC/protobuf code in mecfed/v1 from proto/.
# grpcio-tools is pinned in pyproject.toml ([project.optional-dependencies].dev)
# so the output is byte-for-byte reproducible; CI runs this and fails on a diff.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
rm -f mecfed/v1/*_pb2*.py mecfed/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -Iproto \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  proto/mecfed/v1/*.proto

#!/usr/bin/env bash
# Fails when the committed generated protobuf code differs from what the
# pinned grpcio-tools produces from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" \
  --grpc_python_out="$tmp" proto/mecfed/v1/*.proto
if ! diff -ru --exclude=__init__.py --exclude=__pycache__ "$tmp/mecfed/v1" mecfed/v1; then
  echo "generated code in mecfed/v1 is stale: run scripts/gen_proto.sh and commit" >&2
  exit 1
fi
echo "generated protobuf code is up to date"

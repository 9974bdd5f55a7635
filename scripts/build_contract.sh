#!/usr/bin/env bash
# Reproducible build of the Federation contract (pinned solc-js 0.8.30 from package.json).
#   scripts/build_contract.sh          rebuild contracts/build-input.json + mecfed/chain/data/Federation.json
#   scripts/build_contract.sh --check  fail (exit 1) if the committed artifacts differ from a fresh build
#   scripts/build_contract.sh --test D compile contracts/test/*.sol (not *.t.sol) too, into D/test-artifacts.json
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/solc ]; then
  echo "build_contract: node_modules/solc missing; run 'npm ci' first" >&2
  exit 1
fi
exec node contracts/build.js "$@"

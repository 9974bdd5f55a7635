#!/usr/bin/env bash
# forge (node_modules, pinned in package.json) for the contract's fuzz and invariant tests,
# offline: runs in contracts/ (contracts/foundry.toml: offline = true, solc = scripts/solc-js).
#   scripts/forge.sh test          all tests in contracts/test/*.t.sol
#   scripts/forge.sh test -vvv     with traces of failures
set -euo pipefail
cd "$(dirname "$0")/.."
forge="$PWD/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
if [ ! -x "$forge" ]; then
  echo "forge.sh: $forge missing; run 'npm ci' first" >&2
  exit 1
fi
cd contracts
export FOUNDRY_OFFLINE=true
exec "$forge" "$@"

#!/usr/bin/env bash
# Static analysis of contracts/Federation.sol with slither (pinned in scripts/install.sh, in its
# own virtual environment .venv-slither, because it pins web3 below the version mecfed runs on),
# offline: crytic-compile builds through forge (node_modules, contracts/foundry.toml: offline,
# solc = scripts/solc-js) under the `slither` profile, so it does not clean the test build.
#   scripts/slither.sh              print findings; exit non-zero if there is any
#   scripts/slither.sh --json FILE  also write slither's JSON report
# Findings are fixed or suppressed in the source with a reason (`// Reason: ...` followed by
# `// slither-disable-next-line <detector>`). The only exclusions are below, with their reasons.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
forge_bin="$root/node_modules/@foundry-rs/forge-linux-amd64/bin"
slither="${SLITHER:-$root/.venv-slither/bin/slither}"
if [ ! -x "$forge_bin/forge" ]; then
  echo "slither.sh: forge missing ($forge_bin/forge); run 'npm ci' first" >&2
  exit 1
fi
if [ ! -x "$slither" ]; then
  echo "slither.sh: $slither missing; run scripts/install.sh" >&2
  exit 1
fi
export PATH="$forge_bin:$PATH" FOUNDRY_PROFILE=slither
cd contracts
# --exclude timestamp: the auction is deadline-driven by design (every bidding and confirm
# window compares block.timestamp); QBFT validators are the federation's own operators, and
# seconds of timestamp drift cannot move a window of seconds to days meaningfully.
# --exclude solc-version: the compiler is pinned to exactly 0.8.30 (transient storage needs
# >= 0.8.28; the build is reproducible, contracts/build.js); slither's list of trusted
# versions may lag behind it, and the finding names no source line that could carry a suppression.
exec "$slither" . \
  --compile-force-framework foundry \
  --filter-paths 'test/' \
  --exclude timestamp,solc-version \
  --fail-pedantic \
  "$@"

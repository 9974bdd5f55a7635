#!/usr/bin/env bash
# The fault-injection suite, over and over (default 5 rounds): races that a
# single `make test` run may miss show up here. Bounded by the round count.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds="${SOAK_ROUNDS:-5}"
failed=0
for i in $(seq 1 "$rounds"); do
  echo "soak: round $i of $rounds" >&2
  if ! MECFED_SOAK=1 .venv/bin/pytest -p no:cacheprovider -q tests/faults "$@"; then
    failed=$((failed + 1))
  fi
done
echo "soak: $failed of $rounds rounds failed" >&2
[ "$failed" -eq 0 ]

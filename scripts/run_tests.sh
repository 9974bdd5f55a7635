#!/usr/bin/env bash
# The test suite as CI runs it: generated-code and lint checks, then pytest.
# pytest's "no tests collected" (exit 5) is turned into a failure: a suite
# that ran nothing must never look green.
set -uo pipefail
cd "$(dirname "$0")/.."
set -e
scripts/check_generated.sh
scripts/build_contract.sh --check
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/pytest -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"

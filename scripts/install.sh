#!/usr/bin/env bash
# Installs everything mecfed needs on a fresh Debian machine (root) and
# starts the Docker engine. Idempotent: re-running only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q "statically linked" \
  || dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/aarch64-linux-gnu/libc.a ] \
  || need_apt+=(libc6-dev)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.mecfed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "install: python dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,ui,bench]'
  touch "$stamp"
fi

# slither (contract static analysis, tests/contracts/test_slither.py) pins web3
# below the version mecfed runs on, so it lives in a virtual environment of its own.
SLITHER_VERSION=0.11.6
if ! .venv-slither/bin/slither --version 2>/dev/null | grep -qx "$SLITHER_VERSION"; then
  echo "install: slither-analyzer $SLITHER_VERSION into .venv-slither"
  python3 -m venv .venv-slither
  .venv-slither/bin/pip install -q --disable-pip-version-check "slither-analyzer==$SLITHER_VERSION"
fi

if [ -f package.json ] && { [ ! -d node_modules ] || [ package.json -nt node_modules ]; }; then
  echo "install: npm packages"
  npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent
  touch node_modules
fi

scripts/start-dockerd.sh

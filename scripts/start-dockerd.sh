#!/usr/bin/env bash
# Starts the Docker engine when it is not running (no systemd here) and waits
# until it answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
echo "install: starting dockerd"
mkdir -p /var/log
nohup dockerd >/var/log/mecfed-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dockerd did not come up; see /var/log/mecfed-dockerd.log" >&2
tail -20 /var/log/mecfed-dockerd.log >&2 || true
exit 1

#!/usr/bin/env bash
# Destroys the demo app and stops the demo server.
set -uo pipefail
skiff=$1 data=${2:-}
if [ -z "$data" ]; then
  if [ "$(id -u)" = 0 ]; then data=/var/lib/skiff; else data=${XDG_DATA_HOME:-$HOME/.local/share}/skiff; fi
fi
export SKIFF_DATA_DIR=$data
if "$skiff" destroy hello >/dev/null 2>&1; then
  for _ in $(seq 100); do
    "$skiff" status hello >/dev/null 2>&1 || break
    sleep 0.1
  done
fi
if [ -f "$data/server.pid" ]; then
  kill "$(cat "$data/server.pid")" 2>/dev/null || true
  rm -f "$data/server.pid"
fi
echo "demo stopped"

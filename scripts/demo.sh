#!/usr/bin/env bash
# Starts skiff in the background with the demo app deployed.
set -euo pipefail
skiff=$1 data=${2:-} http=$3 apiaddr=$4
if [ -z "$data" ]; then
  if [ "$(id -u)" = 0 ]; then data=/var/lib/skiff; else data=${XDG_DATA_HOME:-$HOME/.local/share}/skiff; fi
fi
mkdir -p "$data"
export SKIFF_DATA_DIR=$data
if ! "$skiff" apps >/dev/null 2>&1; then
  nohup "$skiff" server --data-dir "$data" --http-addr "$http" --api-addr "$apiaddr" \
    >"$data/server.log" 2>&1 &
  echo $! >"$data/server.pid"
  for _ in $(seq 100); do
    "$skiff" apps >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$skiff" apps >/dev/null || { echo "skiff server did not start; see $data/server.log" >&2; exit 1; }
fi
"$skiff" deploy -f examples/hello/skiff.yaml --wait
port=${http##*:}
cat <<MSG

skiff is running (log: $data/server.log) with the demo app deployed. Try:

  curl http://hello.localhost:$port/
  curl -H 'Host: hello.localhost' http://127.0.0.1:$port/

  export PATH=\$PWD/bin:\$PATH
  skiff status hello
  skiff logs hello
  make demo-stop      # destroy the app and stop the server
MSG

#!/usr/bin/env bash
# Installs and starts what skiff's tests need. Idempotent. The core tests
# need only Go; components for later runtimes (Docker Engine, an ACME CA,
# DNS servers, a browser, Kubernetes) are added here as their tests arrive.
set -euo pipefail
command -v go >/dev/null || { echo "test setup: Go is required (https://go.dev/dl)" >&2; exit 1; }
# Process apps run as an unprivileged user when skiff runs as root.
if [ "$(id -u)" = 0 ] && ! id nobody >/dev/null 2>&1; then
  echo "test setup: the user 'nobody' is missing; apps run as it when skiff runs as root" >&2
  exit 1
fi
go mod download

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

# Docker Engine: the docker runtime's tests run containers on it. Debian's
# docker.io is installed when no dockerd is found, and dockerd is started
# in the background when no engine answers (its log in
# /tmp/skiff-dockerd.log). A DOCKER_HOST the user set is left alone.
docker_answers() {
  if command -v docker >/dev/null; then docker version >/dev/null 2>&1; return; fi
  curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
}
if [ -z "${DOCKER_HOST:-}" ] && ! docker_answers; then
  if ! command -v dockerd >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "test setup: Docker Engine is missing; run this script as root to install docker.io, or set DOCKER_HOST" >&2
      exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io
  fi
  if ! docker_answers; then
    if [ "$(id -u)" != 0 ]; then
      echo "test setup: dockerd does not answer; start it (systemctl start docker) or run this script as root" >&2
      exit 1
    fi
    echo "test setup: starting dockerd (log: /tmp/skiff-dockerd.log)"
    nohup dockerd >/tmp/skiff-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
      docker_answers && break
      sleep 0.5
    done
    if ! docker_answers; then
      echo "test setup: dockerd did not answer within 30s; see /tmp/skiff-dockerd.log" >&2
      tail -20 /tmp/skiff-dockerd.log >&2 || true
      exit 1
    fi
  fi
fi

# docker-registry (the CNCF distribution registry): the Kubernetes
# runtime's tests pin image tags to digests against it. Tests start it
# themselves on loopback; the service Debian's package would start is
# stopped and disabled.
if ! command -v docker-registry >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "test setup: docker-registry is missing; run this script as root to install it" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry
  if command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry || true
  fi
fi

# h2spec checks the edge's HTTP/2 conformance. Go tools live in a cache
# outside the repo and are installed once.
tools=$HOME/.cache/skiff-tools/bin
mkdir -p "$tools"
if [ ! -x "$tools/h2spec" ]; then
  echo "test setup: installing h2spec"
  GOBIN=$tools go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
fi

# A real Kubernetes control plane (built once, cached), etcd and kwok for
# the Kubernetes runtime's tests.
bash "$(dirname "$0")/kube-tools.sh"

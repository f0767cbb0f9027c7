#!/usr/bin/env bash
# Installs what the Kubernetes runtime's tests run a real cluster with, all
# cached outside the repo so skiff's go.mod never requires
# k8s.io/kubernetes, and each part installed only when missing:
#   - kube-apiserver, kube-controller-manager and kube-scheduler, built
#     from the Go module proxy in a tools module of their own (the first
#     build takes about 13 minutes on 2 cores);
#   - etcd, Debian's etcd-server;
#   - kwok, which simulates nodes and running pods, with the stage files
#     that tell it how (copied from its module into $cache/kwok-stages).
# internal/kubetest finds them there.
set -euo pipefail
version=1.36.3
staging=0.36.3
kwok_version=v0.8.0
cache=${SKIFF_TOOLS:-$HOME/.cache/skiff-tools}
src=$cache/kube-src
bin=$cache/bin
stages=$cache/kwok-stages
mkdir -p "$bin"

if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "kube-tools: etcd is missing; run this script as root to install etcd-server, or put etcd on PATH" >&2
    exit 1
  fi
  echo "kube-tools: installing etcd-server"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server
fi

if [ ! -x "$bin/kwok" ]; then
  echo "kube-tools: installing kwok $kwok_version"
  GOBIN=$bin go install "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
fi
if [ ! -f "$stages/pod-ready.yaml" ]; then
  # The stages ship inside kwok's module, not its binary.
  mod=$(cd / && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$mod" ] || [ ! -d "$mod/kustomize/stage" ]; then
    echo "kube-tools: kwok's module (sigs.k8s.io/kwok@$kwok_version) was not found in the module cache" >&2
    exit 1
  fi
  mkdir -p "$stages.tmp"
  cp "$mod"/kustomize/stage/node/fast/node-initialize.yaml \
    "$mod"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$mod"/kustomize/stage/pod/fast/pod-ready.yaml \
    "$mod"/kustomize/stage/pod/fast/pod-complete.yaml \
    "$mod"/kustomize/stage/pod/fast/pod-delete.yaml "$stages.tmp/"
  chmod 644 "$stages.tmp"/*.yaml
  rm -rf "$stages"
  mv "$stages.tmp" "$stages"
fi

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kube-scheduler" ]; then
  exit 0
fi
mkdir -p "$src"
cd "$src"
{
  echo "module skiff-kube-tools"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes v$version"
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
    kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming; do
    echo "replace k8s.io/$m => k8s.io/$m v$staging"
  done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
export GONOSUMDB=k8s.io GOFLAGS=-mod=mod
echo "kube-tools: resolving k8s.io/kubernetes v$version"
go mod tidy
echo "kube-tools: building the control plane into $bin (minutes)"
go build -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler

#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver,
# kube-controller-manager, kube-scheduler) from the Go module proxy, in a
# tools module of its own outside the repo, so skiff's go.mod never
# requires k8s.io/kubernetes. The binaries are cached and rebuilt only
# when missing. The first build takes about 13 minutes on 2 cores.
set -euo pipefail
version=1.36.3
staging=0.36.3
cache=${SKIFF_TOOLS:-$HOME/.cache/skiff-tools}
src=$cache/kube-src
bin=$cache/bin
if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kube-scheduler" ]; then
  exit 0
fi
mkdir -p "$src" "$bin"
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

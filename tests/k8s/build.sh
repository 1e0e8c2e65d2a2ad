#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager of the pinned release (go.mod)
# into a cache outside the repository and prints the bin directory. Idempotent: when the
# binaries of this exact go.mod/go.sum are already there it returns at once.
#
#   tests/k8s/build.sh            # build if needed, print the bin directory
#   tests/k8s/build.sh --print    # only print where the binaries go
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")"
cache="${MULTITALK_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multitalk-operator/k8s-$version}"
bin="$cache/bin"
if [[ "${1:-}" == "--print" ]]; then echo "$bin"; exit 0; fi

stamp="$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)"
tools=(etcd kube-apiserver kube-controller-manager)
ready=1
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || ready=0; done
if [[ $ready == 1 && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go $(sed -n 's/^go //p' "$here/go.mod") or newer is needed to build the control plane" >&2; exit 1; }
mkdir -p "$cache"
# One build at a time per cache (pytest-xdist workers, make and a fixture may race).
exec 9>"$cache/.lock"
flock 9
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || ready=0; done
if [[ $ready == 1 && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; then echo "$bin"; exit 0; fi

minor="${version#v1.}"; minor="${minor%%.*}"
# Version stamps that the Kubernetes release build sets (kubectl and /version read them).
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

tmp="$cache/bin.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "build.sh: building ${tools[*]} $version into $bin (cold: about 15-25 minutes on 2 cores)" >&2
cd "$here"
# -trimpath and -s -w: smaller binaries, no paths of this machine in them; CGO off:
# static binaries, no C toolchain needed.
CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath" nice go build -ldflags "$ldflags" -o "$tmp/" \
  go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
# `go build` names a /vN main package after the element before the suffix.
mv "$tmp/server" "$tmp/etcd"
echo "$stamp" >"$tmp/.stamp"
rm -rf "$bin"; mv "$tmp" "$bin"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"

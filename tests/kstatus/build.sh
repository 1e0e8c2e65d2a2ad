#!/usr/bin/env bash
# Builds kstatus-read (main.go: kstatus, Flux's kstatus and Flux's CEL health checks, at the
# versions pinned in go.mod) into a cache outside the repository and prints its path.
# Idempotent: when the binary of this exact main.go/go.mod/go.sum is there it returns at once.
#
#   tests/kstatus/build.sh            # build if needed, print the binary's path
#   tests/kstatus/build.sh --print    # only print where the binary goes
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
stamp="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)"
cache="${MULTITALK_KSTATUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multitalk-operator/kstatus-$stamp}"
bin="$cache/kstatus-read"
if [[ "${1:-}" == "--print" ]]; then echo "$bin"; exit 0; fi
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go $(sed -n 's/^go //p' "$here/go.mod") or newer is needed to build kstatus-read" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
start=$(date +%s)
echo "build.sh: building kstatus-read into $cache (cold: about 5-10 minutes on 2 cores)" >&2
cd "$here"
CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath" nice go build -ldflags "-s -w" -o "$bin.tmp.$$" .
mv "$bin.tmp.$$" "$bin"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"

#!/bin/sh
# Installing inside an image build (Dockerfile.operator, Dockerfile.runner). The host's index
# settings arrive as build secrets under /run/secrets, so they never land in a layer
# (`make images` passes them when set; README "Container images"):
#   pip_index_url, pip_extra_index_url   from PIP_INDEX_URL, PIP_EXTRA_INDEX_URL (may hold credentials)
#   ca                                   from PIP_CERT or SSL_CERT_FILE (a TLS-intercepting proxy's CA)
#
#   image-install.sh python LOCK              stop unless python3 is the Python LOCK was made with
#   image-install.sh lock LOCK [--only REGEX] [PIP-ARGS...]
#                                             install LOCK's pins (only those whose names
#                                             match REGEX, without their dependencies)
#   image-install.sh pip PIP-ARGS...          pip PIP-ARGS
#   image-install.sh apt PACKAGE...           apt-get install, then drop the package lists
# pip is the build stage's /opt/pip; once /opt/venv exists (the image's environment, made
# without pip), it installs there, so the image itself carries no installer.
# A failure stops the build with what is missing and how to provide it.
set -eu
secrets=/run/secrets
command=${1:?usage: image-install.sh python LOCK | lock LOCK [ARGS...] | pip ARGS... | apt PACKAGE...}
shift

network_help() {  # what to provide when a download failed
    cat >&2 <<'HELP'
  - No network, or the index is unreachable: build where it can be reached, or name one that
    can: PIP_INDEX_URL=https://<index>/simple make images
    (docker build: --secret id=pip_index_url,env=PIP_INDEX_URL).
  - A TLS-intercepting proxy (CERTIFICATE_VERIFY_FAILED): give its CA bundle:
    PIP_CERT=/path/to/ca.pem make images (docker build: --secret id=ca,src=/path/to/ca.pem).
HELP
}

run_pip() {  # pip with the build secrets; on failure, what to provide
    if [ -s "$secrets/pip_index_url" ]; then
        PIP_INDEX_URL=$(cat "$secrets/pip_index_url")
        export PIP_INDEX_URL
    fi
    if [ -s "$secrets/pip_extra_index_url" ]; then
        PIP_EXTRA_INDEX_URL=$(cat "$secrets/pip_extra_index_url")
        export PIP_EXTRA_INDEX_URL
    fi
    if [ -s "$secrets/ca" ]; then
        export PIP_CERT="$secrets/ca"
    fi
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
    target=""
    if [ -x /opt/venv/bin/python ]; then
        target="--python /opt/venv/bin/python"
    fi
    # shellcheck disable=SC2086 # $target is empty or two words
    if ! /opt/pip/bin/pip $target "$@"; then
        # Name the index, never its credentials.
        index=$(echo "${PIP_INDEX_URL:-https://pypi.org/simple (the default)}" | sed 's#//[^/@]*@#//***@#')
        echo "error: pip $1 failed in this image build (pip's message is above); index: $index" >&2
        network_help
        echo "  - A version the index lacks: requirements/*.txt pin PyPI's versions; mirror them or re-pin (make lock)." >&2
        exit 1
    fi
}

case $command in
python)
    want=$(sed -n 's/^# Python \([0-9][0-9.]*\).*/\1/p' "$1")
    have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
    if [ "$want" != "$have" ]; then
        echo "error: the base image's python3 is $have but $(basename "$1") is a Python $want lock." >&2
        echo "  Build on a Python $want base: BASE_IMAGE=python:$want-slim-bookworm (the Dockerfiles' default)," >&2
        echo "  or the local stand-in (make base-image), or re-lock for $have (PYTHON=python$have make lock)." >&2
        exit 1
    fi
    ;;
lock)
    lock=$1
    shift
    if [ "${1:-}" = --only ]; then
        part=$(mktemp)
        grep -E "^($2)==" "$lock" >"$part" || { echo "error: no pin in $lock matches $2" >&2; exit 1; }
        shift 2
        run_pip install --no-deps -r "$part" "$@"
        rm -f "$part"
    else
        run_pip install -r "$lock" "$@"
    fi
    ;;
pip)
    run_pip "$@"
    ;;
apt)
    ca=""
    if [ -s "$secrets/ca" ]; then
        ca="-o Acquire::https::CAInfo=$secrets/ca"
    fi
    # shellcheck disable=SC2086 # $ca is empty or two words
    if ! { apt-get $ca update --error-on=any \
        && DEBIAN_FRONTEND=noninteractive apt-get $ca install -y --no-install-recommends "$@"; }; then
        echo "error: apt-get could not install $* in this image build (its message is above)." >&2
        echo "  The base image's Debian mirror (its /etc/apt/sources.list*) must be reachable." >&2
        network_help
        exit 1
    fi
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
*)
    echo "image-install.sh: unknown command $command" >&2
    exit 2
    ;;
esac

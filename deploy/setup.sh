#!/usr/bin/env bash
# Prepare this machine for building and testing warmwhisk (run as root; `make setup`).
# Idempotent and silent when there is nothing to do:
#   1. apt packages: docker.io, debootstrap, redis-server, nodejs and npm (and python3-venv if
#      needed);
#   2. the dev virtualenv .venv/ with requirements.txt and the components installed editable
#      (skipped while unchanged);
#   3. a running Docker engine (deploy/start-dockerd.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${VENV:-.venv}
# --no-docker: only what the unit tests need (`make test-fast`): redis-server and the virtualenv.
with_docker=1
[ "${1:-}" != "--no-docker" ] || with_docker=0

say() { echo "setup: $*" >&2; }

# --- 1. system packages -----------------------------------------------------
missing=()
if [ "$with_docker" = 1 ]; then
    { command -v dockerd && command -v docker; } >/dev/null 2>&1 || missing+=(docker.io)
    # (debootstrap checks the Debian archive signatures: it needs the keyring.)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap debian-archive-keyring ca-certificates)
    # The openwhisk npm client's tests (tests/test_devstack_npm_client.py): `node --test`, `npm ci`.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Debian splits venv/ensurepip out of python3 into python3-venv.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { say "need root to install: ${missing[*]}"; exit 1; }
    command -v apt-get >/dev/null 2>&1 || { say "no apt-get; install by hand: ${missing[*]}"; exit 1; }
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No recommends: they would add apparmor, needrestart and the like.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. dev virtualenv ------------------------------------------------------
if [ -e "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    say "$venv is broken; recreating it"
    rm -rf "$venv"
fi
if [ ! -e "$venv/bin/python" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
fi

# The components, editable: `.venv/bin/python -m warmwhisk_runtime`, `.venv/bin/warmwhisk-scaler`
# and the tests run the code in this checkout. Their dependencies are the pinned ones above.
components=(host-protocol action-runtime scaler-service simulator invoker-patch deploy/devstack)

# The stamp covers the requirements (and the files they pull in with -r) and the components'
# pyproject.toml files.
req_hash=$(cat requirements*.txt action-runtime/requirements*.txt scaler-service/requirements.txt \
    "${components[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)
stamp="$venv/.requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$req_hash" ]; then
    say "installing requirements.txt and the components into $venv"
    "$venv/bin/python" -m pip install -q -r requirements.txt
    "$venv/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
    editable=()
    for c in "${components[@]}"; do editable+=(-e "./$c"); done
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation "${editable[@]}"
    echo "$req_hash" >"$stamp"
fi

# --- 3. Docker engine -------------------------------------------------------
[ "$with_docker" = 0 ] || docker info >/dev/null 2>&1 || bash "$repo/deploy/start-dockerd.sh"

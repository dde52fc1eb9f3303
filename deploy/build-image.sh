#!/usr/bin/env bash
# Build a warmwhisk image without any registry: the action runtime (`make image`) or, with
# COMPONENT=scaler, the scaler service (`make scaler-image`).
#
#   1. base image: $BASE_IMAGE if given, else a local Debian bookworm image
#      (warmwhisk/base:bookworm) made with debootstrap + `docker import`, built once;
#   2. wheelhouse: build/wheelhouse/ (runtime) or build/wheelhouse-scaler/, the image's Python
#      packages downloaded on the host (containers cannot reach an index), redone only when the
#      requirements change;
#   3. build/wheels/<component>/: wheels of host-protocol and the component (the runtime image
#      never holds the scaler);
#   4. `docker build --network host` of the component's Dockerfile from the repo root.
#
# Environment:
#   COMPONENT       runtime (default) or scaler
#   IMAGE           tag of the runtime image (default warmwhisk/runtime:dev)
#   SCALER_IMAGE    tag of the scaler image  (default warmwhisk/scaler:dev)
#   BASE_IMAGE      base image to build on  (default: local warmwhisk/base:bookworm)
#   LOCAL_BASE      tag of the local base   (default warmwhisk/base:bookworm)
#   DEBIAN_SUITE    suite for the local base (default bookworm)
#   DEBIAN_MIRROR   debootstrap mirror      (default: debootstrap's own)
#   PYTHON_VERSION  Python of the base image, for the wheelhouse (default 3.11)
#   VERBOSE=1       show the docker build output instead of logging it
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

component=${COMPONENT:-runtime}
case $component in
    runtime)
        image=${IMAGE:-warmwhisk/runtime:dev}
        dockerfile=action-runtime/Dockerfile
        reqs=(action-runtime/requirements.txt)
        [ ! -f action-runtime/requirements-ml.txt ] || reqs+=(action-runtime/requirements-ml.txt)
        wheelhouse_name=wheelhouse
        ;;
    scaler)
        image=${SCALER_IMAGE:-warmwhisk/scaler:dev}
        dockerfile=scaler-service/Dockerfile
        reqs=(scaler-service/requirements.txt)
        wheelhouse_name=wheelhouse-scaler
        ;;
    *) echo "build-image: COMPONENT must be runtime or scaler, got '$component'" >&2; exit 1 ;;
esac
component_dir=$(dirname "$dockerfile")
local_base=${LOCAL_BASE:-warmwhisk/base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
py_version=${PYTHON_VERSION:-3.11}
venv=${VENV:-.venv}
build_dir=build
wheelhouse=$build_dir/$wheelhouse_name

say() { echo "build-image: $*" >&2; }
die() { say "$*"; exit 1; }
# Run "$@" with its output in LOG, saying every 15 s that WHAT still runs (a fresh machine spends
# minutes in debootstrap and docker build with nothing else on the screen); its exit status.
run_logged() {
    local log=$1 what=$2 pid t0=$SECONDS
    shift 2
    "$@" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if kill -0 "$pid" 2>/dev/null && [ $(((SECONDS - t0) % 15)) -eq 0 ]; then
            say "$what... $((SECONDS - t0)) s"
        fi
    done
    wait "$pid"
}

docker info >/dev/null 2>&1 || die "no Docker engine answers (run deploy/start-dockerd.sh or make setup)"
mkdir -p "$build_dir"

# --- 1. base image ----------------------------------------------------------
rootfs=
cleanup_rootfs() {
    [ -n "$rootfs" ] && [ -d "$rootfs" ] || return 0
    # debootstrap mounts proc/sys inside the target; never rm through a mount.
    local m
    awk -v r="$rootfs" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup_rootfs EXIT
trap 'exit 130' INT TERM

if [ -n "${BASE_IMAGE:-}" ]; then
    base=$BASE_IMAGE
elif docker image inspect "$local_base" >/dev/null 2>&1; then
    base=$local_base
else
    base=$local_base
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (make setup, or apt-get install -y debootstrap)"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    rootfs=$(cd "$build_dir" && pwd)/base-rootfs
    cleanup_rootfs
    say "building $local_base: debootstrap $suite (log $build_dir/debootstrap.log)"
    t0=$SECONDS
    # shellcheck disable=SC2086  # DEBIAN_MIRROR is empty or one word
    if ! run_logged "$build_dir/debootstrap.log" debootstrap debootstrap --variant=minbase \
            --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" ${DEBIAN_MIRROR:-}; then
        tail -n 20 "$build_dir/debootstrap.log" >&2
        die "debootstrap failed (full log: $build_dir/debootstrap.log)"
    fi
    # Slim it down: package caches, apt lists, docs and translations.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    # An imported image has no config: give it the usual PATH and a shell.
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        -m "debootstrap --variant=minbase $suite (warmwhisk)" - "$local_base" >/dev/null
    cleanup_rootfs
    rootfs=
    say "built $local_base in $((SECONDS - t0))s"
fi

# --- 2. wheelhouse ----------------------------------------------------------
# Debian bookworm's Python is 3.11.2, but pip evaluates environment markers
# against the host's Python, so packages needed only below 3.11.3 (redis ->
# async-timeout) would be left out: add them by hand.
extra=(async-timeout)

arch=$(uname -m)
platforms=()
# The base is bookworm (glibc 2.36): any manylinux wheel up to 2.36 runs.
# pip does not expand manylinux_2_X tags by itself, so list them all.
for minor in $(seq 36 -1 17); do platforms+=("manylinux_2_${minor}_${arch}"); done
platforms+=("manylinux2014_${arch}")  # pip adds manylinux2010/manylinux1 itself

pip_py=python3
[ ! -x "$venv/bin/python" ] || pip_py=$venv/bin/python

wh_hash=$({
    cat "${reqs[@]}"
    echo "${extra[*]} ${platforms[*]} $py_version"
} | sha256sum | cut -d' ' -f1)
wh_stamp=$build_dir/$wheelhouse_name.sha256
if [ -d "$wheelhouse" ] && [ "$(cat "$wh_stamp" 2>/dev/null || true)" = "$wh_hash" ]; then
    :
else
    say "downloading the wheelhouse into $wheelhouse"
    t0=$SECONDS
    rm -rf "$wheelhouse" "$wheelhouse.tmp" "$wh_stamp"
    req_args=()
    for r in "${reqs[@]}"; do req_args+=(-r "$r"); done
    plat_args=()
    for p in "${platforms[@]}"; do plat_args+=(--platform "$p"); done
    "$pip_py" -m pip download -q --only-binary=:all: \
        --python-version "$py_version" --implementation cp "${plat_args[@]}" \
        -d "$wheelhouse.tmp" "${req_args[@]}" "${extra[@]}"
    mv "$wheelhouse.tmp" "$wheelhouse"
    echo "$wh_hash" >"$wh_stamp"
    say "wheelhouse ready in $((SECONDS - t0))s ($(du -sh "$wheelhouse" | cut -f1))"
fi

# --- 3. the components' wheels ---------------------------------------------
# The host contract and the component (the runtime image holds no scaler code).
wheels=$build_dir/wheels/$component
rm -rf "$wheels"
"$pip_py" -m pip wheel -q --no-deps --no-build-isolation -w "$wheels" ./host-protocol "./$component_dir" \
    >"$build_dir/wheels.log" 2>&1 || { cat "$build_dir/wheels.log" >&2; die "building the wheels failed"; }

# --- 4. the image -----------------------------------------------------------
t0=$SECONDS
build_args=(build --network host --build-arg "BASE_IMAGE=$base"
    -f "$dockerfile" -t "$image" .)
if [ "${VERBOSE:-0}" = 1 ]; then
    docker "${build_args[@]}"
else
    log=$build_dir/docker-build-$component.log
    if ! run_logged "$log" "docker build of $image" docker "${build_args[@]}"; then
        tail -n 30 "$log" >&2
        die "docker build failed (full log: $log)"
    fi
fi
say "$image ready on $base ($((SECONDS - t0))s)"

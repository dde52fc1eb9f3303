#!/usr/bin/env bash
# Make sure a Docker engine answers; start a local dockerd if none does.
#
# The engine is started with flags that work on machines (CI runners, nested
# containers) where Docker's usual bridge/iptables setup is not possible:
#   --iptables=false --ip6tables=false --bridge=none
# Every warmwhisk container runs with `--network host`, so no bridge is needed.
# Storage is overlay2 on the default data root (/var/lib/docker), so image
# layers are reused between runs; if overlay2 cannot come up (e.g. overlay on
# overlay), it falls back to the slower vfs driver.
#
# Environment:
#   DOCKER_HOST            engine address (default unix:///var/run/docker.sock)
#   DOCKERD_LOG            dockerd log file (default /var/log/warmwhisk-dockerd.log)
#   DOCKERD_WAIT_S         seconds to wait for the engine (default 60)
#   DOCKERD_STORAGE_DRIVER force one storage driver (no fallback)
#   DOCKERD_PIDFILE        dockerd pid file (default /var/run/docker.pid)
#   DOCKERD_ARGS           extra dockerd flags (e.g. --data-root DIR --exec-root DIR
#                          for a second engine next to the system one)
set -euo pipefail

log_file=${DOCKERD_LOG:-/var/log/warmwhisk-dockerd.log}
pidfile=${DOCKERD_PIDFILE:-/var/run/docker.pid}
# shellcheck disable=SC2206  # extra dockerd flags, split on blanks
extra_args=(${DOCKERD_ARGS:-})
wait_s=${DOCKERD_WAIT_S:-60}

engine_up() { docker info >/dev/null 2>&1; }

engine_up && exit 0

die() { echo "start-dockerd: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "the docker CLI is missing (apt-get install -y docker.io)"
command -v dockerd >/dev/null 2>&1 || die "dockerd is missing (apt-get install -y docker.io)"
[ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting one needs root"

host_args=()
if [ -n "${DOCKER_HOST:-}" ]; then
    case "$DOCKER_HOST" in
        unix://*) host_args=(-H "$DOCKER_HOST") ;;
        *) die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST (only a local unix socket can be started here)" ;;
    esac
fi

# A live dockerd behind the pid file is still starting: wait for it. A pid file
# left by a killed dockerd would make a new one refuse to start: remove it.
# (Reads /proc: procps is not on every fresh machine. A zombie counts as gone.)
pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}
pid_is_dockerd() {
    [ -n "$1" ] && pid_alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ]
}
old_pid=$(cat "$pidfile" 2>/dev/null || true)
if ! pid_is_dockerd "$old_pid"; then
    old_pid=
    rm -f "$pidfile"
fi

start() {
    local driver=$1
    mkdir -p "$(dirname "$log_file")"
    echo "start-dockerd: starting dockerd (storage driver $driver, log $log_file)" >&2
    echo "=== $(date -u +%FT%TZ) warmwhisk start-dockerd: storage-driver=$driver" >>"$log_file"
    log_mark=$(wc -l <"$log_file")
    # setsid + nohup: the engine outlives the make/CI process that started it. Descriptors the
    # caller holds beyond stdio are closed first: a long-lived dockerd would otherwise keep them
    # (a `flock` lock taken around `make image` would stay taken for as long as the engine runs).
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid nohup dockerd \
            --iptables=false --ip6tables=false --bridge=none \
            --storage-driver="$driver" --pidfile "$pidfile" "${host_args[@]}" "${extra_args[@]}" \
            </dev/null >>"$log_file" 2>&1
    ) &
    dockerd_pid=$!
}

drivers=(overlay2 vfs)
if [ -n "${DOCKERD_STORAGE_DRIVER:-}" ]; then
    drivers=("$DOCKERD_STORAGE_DRIVER")
fi
tries_left=2   # a dockerd started right after a killed one can miss its old containerd

dockerd_pid=
log_mark=0
if [ -n "$old_pid" ]; then
    echo "start-dockerd: dockerd (pid $old_pid) is running but not answering yet; waiting" >&2
    dockerd_pid=$old_pid
    log_mark=$(wc -l <"$log_file" 2>/dev/null || echo 0)
else
    start "${drivers[0]}"
fi

fail() {
    echo "start-dockerd: $*; last lines of $log_file:" >&2
    tail -n 20 "$log_file" >&2 || true
    exit 1
}

deadline=$((SECONDS + wait_s))
while ! engine_up; do
    if ! pid_alive "$dockerd_pid"; then
        # Why did it exit? A storage driver the kernel or the file system cannot
        # do (overlay on overlay, ...) moves on to the next driver (vfs).
        if tail -n +"$((log_mark + 1))" "$log_file" | grep 'error initializing graphdriver' >/dev/null; then
            drivers=("${drivers[@]:1}")
            [ ${#drivers[@]} -gt 0 ] || fail "dockerd cannot use its storage driver"
            echo "start-dockerd: storage driver not usable here; trying ${drivers[0]}" >&2
        else
            tries_left=$((tries_left - 1))
            [ "$tries_left" -gt 0 ] || fail "dockerd exited"
            echo "start-dockerd: dockerd (pid $dockerd_pid) exited; starting it again" >&2
            sleep 1
        fi
        start "${drivers[0]}"
        deadline=$((SECONDS + wait_s))
        continue
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "no answer from dockerd (pid $dockerd_pid) after ${wait_s}s"
    sleep 0.5
done
echo "start-dockerd: Docker engine is up ($(docker info --format '{{.Driver}}' 2>/dev/null) storage)" >&2

#!/usr/bin/env bash
# Installs (if needed) and starts pcscd with a private vpcd reader config, for the card_reader
# PC/SC tests (pyscard -> pcscd -> vpcd -> card_reader.vpcd bridge -> VirtualCard).
#
# Usage:
#   bash .ci/pcscd.sh          # ensure pcscd with "Virtual PCD" readers is up (idempotent)
#   bash .ci/pcscd.sh stop     # SIGTERM the pcscd this script started (no-op if it reused one)
#   source .ci/pcscd.sh        # same as the first form, from a CI script; returns instead of exiting
#
# Environment:
#   PCSCD_DIR      private work dir (config, log, pid file); default /tmp/citizen-card-pcscd
#   VPCD_PORT      first vpcd port; default 29563 (readers "Virtual PCD 00 00" and "... 00 01")
#   PYTHON         interpreter with pyscard; default <repo>/.venv/bin/python
#   PCSCD_TIMEOUT  seconds to wait for the readers to appear; default 10

pcscd_ci_main() {
    local repo_root
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local dir="${PCSCD_DIR:-/tmp/citizen-card-pcscd}"
    local port="${VPCD_PORT:-29563}"
    local python="${PYTHON:-$repo_root/.venv/bin/python}"
    local timeout="${PCSCD_TIMEOUT:-10}"
    local driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
    local pidfile="$dir/pcscd.pid"

    if [[ "${1:-start}" == "stop" ]]; then
        if [[ -f "$pidfile" ]]; then
            local pid
            pid="$(cat "$pidfile")"
            # Only signal the process if it is still the pcscd we started (pids get reused).
            if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "pcscd" ]]; then
                kill -TERM "$pid"
                local i
                for i in $(seq 1 100); do
                    [[ -e "/proc/$pid" ]] || break
                    sleep 0.05
                done
                echo "pcscd.sh: stopped pcscd (pid $pid)"
            fi
            rm -f "$pidfile"
        else
            echo "pcscd.sh: no pcscd started by this script; nothing to stop"
        fi
        return 0
    fi

    if ! command -v pcscd >/dev/null 2>&1 || [[ ! -e "$driver" ]]; then
        local apt_line="apt-get update && apt-get install -y --no-install-recommends pcscd vsmartcard-vpcd"
        if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
            echo "pcscd.sh: installing pcscd and vsmartcard-vpcd"
            DEBIAN_FRONTEND=noninteractive apt-get update -q \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                    pcscd vsmartcard-vpcd \
                || return 1
        else
            echo "pcscd.sh: pcscd or the vpcd driver is missing; as root run:" >&2
            echo "    $apt_line" >&2
            return 1
        fi
    fi

    if [[ ! -x "$python" ]]; then
        echo "pcscd.sh: no Python at $python (create the venv first, or set PYTHON)" >&2
        return 1
    fi

    # Prints "vpcd" when pcscd answers and lists a Virtual PCD reader, "up" when it answers
    # without one, "down" when there is no PC/SC service.
    local probe='
import sys
from smartcard import scard
rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
if rv != scard.SCARD_S_SUCCESS:
    print("down"); sys.exit(0)
rv, names = scard.SCardListReaders(ctx, [])
scard.SCardReleaseContext(ctx)
if rv == scard.SCARD_S_SUCCESS and any(n.startswith("Virtual PCD") for n in names):
    print("vpcd")
elif rv in (scard.SCARD_S_SUCCESS, scard.SCARD_E_NO_READERS_AVAILABLE):
    print("up")
else:
    print("down")
'
    local state
    state="$("$python" -c "$probe")" || return 1
    if [[ "$state" == "vpcd" ]]; then
        echo "pcscd.sh: reusing the running pcscd (Virtual PCD readers present)"
        return 0
    fi
    if [[ "$state" == "up" ]]; then
        echo "pcscd.sh: a pcscd without Virtual PCD readers is already running;" \
            "only one pcscd can run per host, stop it first" >&2
        return 1
    fi

    mkdir -p "$dir/reader.conf.d"
    cat >"$dir/reader.conf.d/vpcd" <<CONF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$port
LIBPATH      $driver
CHANNELID    $port
CONF

    local args=(--foreground --config "$dir/reader.conf.d")
    # pcsc-lite 2.x asks polkit for every client; 1.9 (bookworm) has no such option.
    if pcscd --help 2>&1 | grep -q -- '--disable-polkit'; then
        args+=(--disable-polkit)
    fi
    pcscd "${args[@]}" >"$dir/pcscd.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pidfile"
    disown "$pid" 2>/dev/null || true

    # Poll instead of sleeping a fixed time: readers usually appear within ~0.1 s.
    local deadline=$((SECONDS + timeout))
    while ((SECONDS <= deadline)); do
        if [[ ! -e "/proc/$pid" ]]; then
            echo "pcscd.sh: pcscd exited at start; log follows" >&2
            cat "$dir/pcscd.log" >&2
            rm -f "$pidfile"
            return 1
        fi
        state="$("$python" -c "$probe")" || return 1
        if [[ "$state" == "vpcd" ]]; then
            echo "pcscd.sh: pcscd running (pid $pid), vpcd on port $port, log $dir/pcscd.log"
            return 0
        fi
        sleep 0.05
    done
    echo "pcscd.sh: pcscd (pid $pid) showed no Virtual PCD reader within ${timeout}s; log:" >&2
    cat "$dir/pcscd.log" >&2
    kill -TERM "$pid" 2>/dev/null
    rm -f "$pidfile"
    return 1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    pcscd_ci_main "$@"
    exit $?
else
    pcscd_ci_main "$@"
fi

#!/usr/bin/env bash
# Make a working .venv on a fresh Debian/Ubuntu machine: system build packages (for pyscard),
# Python 3.11, and the pinned requirements. Idempotent: a second run only checks.
#   scripts/bootstrap.sh [requirements-file]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=${1:-requirements-dev.txt}
VENV=.venv

# System packages pyscard needs to build (it ships only an sdist on Linux).
NEED_DEB=(gcc libc6-dev pkg-config libpcsclite-dev)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${NEED_DEB[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages. Run this, then try again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "bootstrap: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $PY"
  "$PY" -m venv "$VENV" || {
    echo "bootstrap: venv failed; on Debian: apt-get install -y python3.11-venv" >&2; exit 1; }
fi
# Reinstall only when the requirement files change.
stamp="$VENV/.installed-$(cat requirements.txt "$REQ" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing $REQ (a minute on a fresh machine)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

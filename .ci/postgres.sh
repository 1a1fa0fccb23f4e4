#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite.
# Reuses a running one; else starts an installed cluster; else (as root) installs Debian's.
# Prints nothing but progress; the URL to use is postgresql://postgres:postgres@127.0.0.1:5432/
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${PG_ADMIN_URL:-postgresql://postgres:postgres@127.0.0.1:5432/postgres}

answers() {
  .venv/bin/python - "$URL" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

wait_ready() {
  for _ in $(seq 1 60); do answers && return 0; sleep 0.5; done
  return 1
}

if answers; then
  echo "postgres: answering on 127.0.0.1:5432"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "postgres: no server answers and I am not root. Install and start one:" >&2
    echo "  sudo apt-get install -y postgresql && sudo pg_ctlcluster \$(ls /etc/postgresql) main start" >&2
    exit 1
  fi
  echo "postgres: installing Debian's postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -1)
echo "postgres: starting cluster $version/main"
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
  || pg_ctlcluster "$version" main start
# A fresh Debian cluster wants a password over TCP: give postgres the one the tests use.
if ! wait_ready; then
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  wait_ready || { echo "postgres: server did not come up" >&2; exit 1; }
fi
echo "postgres: answering on 127.0.0.1:5432"

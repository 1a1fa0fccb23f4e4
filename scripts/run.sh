#!/usr/bin/env bash
# Migrate, load demo data, keep the audit trail sealed, and serve with gunicorn.
# PORT (default 8000) and HOST (default 127.0.0.1) choose the address.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASK_APP=citizen_card
export PORT=${PORT:-8000} HOST=${HOST:-127.0.0.1}
# Tokens name the address they were issued at; follow PORT unless told otherwise.
export CITIZEN_CARD_OAUTH2_ISSUER=${CITIZEN_CARD_OAUTH2_ISSUER:-http://$HOST:$PORT}
FLASK=.venv/bin/flask

$FLASK db upgrade heads 2>&1 | grep -v '"logger": "alembic' || true
$FLASK demo load
# Sealing runs beside the web workers, never inside them.
$FLASK audit seal --every "${AUDIT_SEAL_EVERY:-60}" >/dev/null &
sealer=$!
trap 'kill $sealer 2>/dev/null || true' EXIT INT TERM

url="http://$HOST:$PORT"
echo
echo "  Citizen Card API   $url"
echo "  API docs           $url/api/docs"
echo "  OpenAPI document   $url/api/openapi.json"
echo "  Readiness          $url/readyz"
echo
.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app

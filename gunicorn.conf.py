"""gunicorn settings for the citizen card API. Override any of them with GUNICORN_CMD_ARGS."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Sync workers: the app is CPU-light and database-bound; 2 per core plus one, as gunicorn advises.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
# An offline gate's 1,000-tap upload takes about a second; one whose taps all need the careful
# path (first taps of new cards, pairings) ~20 s at worst (docs/transit-taps.md).
timeout = 30
# On SIGTERM workers finish in-flight requests (a tap in progress) before exiting.
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak never takes a gate down.
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
logger_class = "citizen_card.gunicorn_logger.JsonAccessLogger"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

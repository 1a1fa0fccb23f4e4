"""gunicorn logger whose access log is one JSON object per request (see gunicorn.conf.py)."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from typing import Any

from gunicorn.glogging import Logger

from citizen_card.logs import JsonFormatter


class JsonAccessLogger(Logger):
    """gunicorn's own lines and access lines as JSON (gunicorn's format atoms are not escaped)."""

    def setup(self, cfg: Any) -> None:
        """Give gunicorn's error log (start-up, worker events) the app's JSON format."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Log one request: method, path, status, size, duration and request id."""
        if not self.cfg.accesslog:
            return
        headers = {name.lower(): value for name, value in (resp.headers or [])}
        entry = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "status": int(str(resp.status).split(None, 1)[0]),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "request_id": headers.get("x-request-id"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=False))
        except Exception:  # noqa: BLE001  (a log line must never fail a request)
            self.error("could not write access log line")

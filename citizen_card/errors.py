"""One error shape for the whole API: RFC 9457 problem documents.

Every error leaves as ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` (when there is one), ``instance``, a stable machine ``code`` and the request id.
Titles follow ``Accept-Language`` (Chinese by default, English on request).
"""

from __future__ import annotations

import logging
from typing import Any
from typing import ClassVar

import marshmallow as ma
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import json
from flask import request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"

# code -> (status, Chinese title, English title). Codes are the stable contract; titles are
# for people and may be reworded.
CATALOG: dict[str, tuple[int, str, str]] = {
    "BAD_REQUEST": (400, "请求无效", "Bad request"),
    "MALFORMED_JSON": (400, "JSON 格式错误", "Malformed JSON body"),
    "UNAUTHORIZED": (401, "需要身份认证", "Authentication required"),
    "FORBIDDEN": (403, "权限不足", "Forbidden"),
    "NOT_FOUND": (404, "资源不存在", "Not found"),
    "METHOD_NOT_ALLOWED": (405, "不支持该请求方法", "Method not allowed"),
    "NOT_ACCEPTABLE": (406, "无法提供所请求的格式", "Not acceptable"),
    "CONFLICT": (409, "请求与当前状态冲突", "Conflict"),
    "PRECONDITION_FAILED": (412, "前置条件不满足", "Precondition failed"),
    "PAYLOAD_TOO_LARGE": (413, "请求体过大", "Payload too large"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "不支持的内容类型", "Unsupported media type"),
    "VALIDATION_FAILED": (422, "请求参数校验失败", "Validation failed"),
    "PRECONDITION_REQUIRED": (428, "缺少前置条件", "Precondition required"),
    "TOO_MANY_REQUESTS": (429, "请求过于频繁", "Too many requests"),
    "INTERNAL_ERROR": (500, "服务器内部错误", "Internal server error"),
    "SERVICE_UNAVAILABLE": (503, "服务暂不可用", "Service unavailable"),
}
_CODE_BY_STATUS = {status: code for code, (status, _zh, _en) in CATALOG.items()}
_CODE_BY_STATUS[400] = "BAD_REQUEST"


def prefers_english() -> bool:
    """True when the client's Accept-Language ranks English above Chinese."""
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    if best is None:
        return not str(current_app.config.get("DEFAULT_LANGUAGE", "zh-CN")).startswith("zh")
    return best == "en"


def problem_response(
    status: int,
    code: str,
    *,
    title: tuple[str, str] | None = None,
    detail: str | None = None,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """Build one problem document; the only place problem bodies are assembled."""
    if title is None:
        _status, zh, en = CATALOG.get(code, (status, "错误", "Error"))
        title = (zh, en)
    english = prefers_english()
    body: dict[str, Any] = {
        "type": type_ or f"/problems/{code.lower().replace('_', '-')}",
        "title": title[1] if english else title[0],
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_MIMETYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers["Content-Language"] = "en" if english else "zh-CN"
    response.vary.add("Accept-Language")
    return response


class DomainError(Exception):
    """A rule of the domain refused the request.

    Subclasses set ``status``, ``code``, ``title`` (English) and ``title_zh``. The message is
    the per-occurrence detail; keyword arguments become extension members of the problem.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"
    title: ClassVar[str] = "Bad request"
    title_zh: ClassVar[str] = "请求无效"
    service: ClassVar[str] = "core"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    @classmethod
    def type_uri(cls) -> str:
        """The problem type URI, stable per error class."""
        return f"/problems/{cls.service}/{cls.code.lower().replace('_', '-')}"


class NotFound(DomainError):
    """The addressed resource does not exist (or the caller may not know it exists)."""

    status = 404
    code = "NOT_FOUND"
    title = "Not found"
    title_zh = "资源不存在"


class Conflict(DomainError):
    """The request conflicts with the resource's current state."""

    status = 409
    code = "CONFLICT"
    title = "Conflict"
    title_zh = "请求与当前状态冲突"


class ProblemSchema(ma.Schema):
    """RFC 9457 problem document, as every error of this API is shaped (for OpenAPI)."""

    type = ma.fields.String(metadata={"description": "Problem type URI"})
    title = ma.fields.String(metadata={"description": "Short summary, zh-CN or en"})
    status = ma.fields.Integer()
    code = ma.fields.String(metadata={"description": "Stable machine-readable code"})
    detail = ma.fields.String()
    instance = ma.fields.String()
    request_id = ma.fields.String()
    errors = ma.fields.Dict(
        metadata={"description": "Validation errors: {location: {field: [messages]}}"}
    )


class ProblemApi(Api):
    """flask-smorest Api whose every HTTP error is a problem document."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Turn any HTTPException (and unhandled errors, as 500) into a problem document."""
        status = error.code or 500
        code = _CODE_BY_STATUS.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        headers: dict[str, str] = {}
        extensions: dict[str, Any] = {}
        detail: str | None = None
        data = getattr(error, "data", None) or {}
        if status >= 500:
            original = getattr(error, "original_exception", None)
            if original is not None or status == 500:
                log.error(
                    "unhandled error",
                    exc_info=original if original is not None else error,
                    extra={"request_id": getattr(g, "request_id", None)},
                )
            # 500s carry no detail: it could leak internals.
        else:
            detail = data.get("message") or _werkzeug_detail(error)
            errors = data.get("errors") or data.get("messages")
            if errors:
                extensions["errors"] = errors
        headers.update(data.get("headers") or {})
        # Keep WWW-Authenticate (RFC 6750) and Allow (405) from the original response.
        original_response = error.get_response()
        for name in ("WWW-Authenticate", "Allow", "Retry-After"):
            if name in original_response.headers:
                headers[name] = original_response.headers[name]
        return problem_response(status, code, detail=detail, headers=headers, **extensions)


def _werkzeug_detail(error: HTTPException) -> str | None:
    # werkzeug's default descriptions are generic English prose; keep the ones we set.
    description = error.description
    if description and description != type(error).description:
        return str(description)
    return None


def handle_domain_error(error: DomainError) -> Response:
    """Render a DomainError subclass as its problem document."""
    return problem_response(
        error.status,
        error.code,
        title=(error.title_zh, error.title),
        detail=error.detail,
        type_=error.type_uri(),
        **error.extensions,
    )


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_json_body() -> Response | None:
    """Refuse a wrong content type (415), a malformed body (400) or a huge one (413) early.

    Runs before every /api request so no view ever sees a body it cannot parse, whatever
    parser it uses.
    """
    if request.method not in _BODY_METHODS or not request.path.startswith("/api/"):
        return None
    # Reading the body enforces MAX_CONTENT_LENGTH (413) even without a Content-Length.
    body = request.get_data(cache=True)
    if not body:
        return None
    if not request.is_json:
        return problem_response(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            detail=f"send application/json, not {request.mimetype or 'no content type'}",
        )
    try:
        json.loads(body)
    except ValueError as exc:
        return problem_response(400, "MALFORMED_JSON", detail=f"invalid JSON: {exc}")
    return None


def init_app(app: Flask) -> None:
    """Register the handlers that are not part of the Api."""
    app.register_error_handler(DomainError, handle_domain_error)
    app.before_request(check_json_body)

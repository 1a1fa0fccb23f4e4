"""Protecting routes: one decorator, ``@require_scopes(...)``, for every API route.

No token → 401, a bad one → 401, too few scopes → 403; all problem documents with the
RFC 6750 ``WWW-Authenticate`` header. The verified principal is in ``current_principal()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from flask import Response
from flask import g
from flask import request

from citizen_card.errors import problem_response
from citizen_card.oauth.tokens import Principal
from citizen_card.oauth.tokens import TokenInvalid
from citizen_card.oauth.tokens import verify_access_token

F = TypeVar("F", bound=Callable[..., Any])
REALM = "citizen-card"


class Unauthenticated(Exception):
    """Raised by current_principal() outside a protected route (a programming error)."""


def _unauthorized(error: str | None, description: str) -> Response:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    return problem_response(
        401, "UNAUTHORIZED", detail=description, headers={"WWW-Authenticate": challenge}
    )


def _forbidden(scopes: tuple[str, ...], missing: set[str]) -> Response:
    wanted = " ".join(scopes)
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{wanted}"'
    return problem_response(
        403,
        "FORBIDDEN",
        detail=f"this needs scope {' '.join(sorted(missing))}",
        headers={"WWW-Authenticate": challenge},
        required_scopes=list(scopes),
    )


def authenticate() -> Principal | Response:
    """Verify the request's bearer token; a principal, or the 401 response to send."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return _unauthorized(None, "send an access token: Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("invalid_request", "use the Bearer scheme")
    try:
        return verify_access_token(token.strip())
    except TokenInvalid as exc:
        return _unauthorized("invalid_token", exc.reason)


def require_scopes(*scopes: str, kinds: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Allow the route only to tokens holding every scope (and, if given, of these kinds)."""

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if isinstance(principal, Response):
                return principal
            missing = set(scopes) - principal.scopes
            if missing:
                return _forbidden(scopes, missing)
            if kinds is not None and principal.kind not in kinds:
                return problem_response(
                    403,
                    "FORBIDDEN",
                    detail=f"only {', '.join(kinds)} may call this",
                    allowed_kinds=list(kinds),
                )
            g.principal = principal
            return func(*args, **kwargs)

        wrapper._required_scopes = scopes  # type: ignore[attr-defined]
        wrapper._protected = True  # type: ignore[attr-defined]
        # OpenAPI: flask-smorest reads _apidoc["manual_doc"] (what @blp.doc writes).
        apidoc = dict(getattr(func, "_apidoc", {}))
        manual = dict(apidoc.get("manual_doc", {}))
        manual["security"] = [{"oauth2": list(scopes)}]
        responses = dict(manual.get("responses", {}))
        responses.setdefault("401", {"description": "No or invalid access token"})
        responses.setdefault("403", {"description": f"Needs scope {' '.join(scopes)}"})
        manual["responses"] = responses
        apidoc["manual_doc"] = manual
        wrapper._apidoc = apidoc  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def current_principal() -> Principal:
    """The caller of the current protected request."""
    principal: Principal | None = getattr(g, "principal", None)
    if principal is None:
        raise Unauthenticated("current_principal() used outside a @require_scopes route")
    return principal

"""Residents and staff signing in: authorization code + PKCE (S256) + OpenID Connect.

Browser routes (on the ``oauth`` blueprint, so their endpoints read ``oauth.authorize`` …):

- ``/oauth/authorize`` checks the request through Authlib (client, exact redirect URI, PKCE
  S256 required, scopes), sends an anonymous user to ``/oauth/login``, then shows the consent
  page ``/oauth/consent`` unless the resident already consented to these scopes for this app,
  and redirects back with a single-use, 60-second code.
- ``/oauth/login`` takes a national ID number (residents) or a username (staff) and a password;
  ``/oauth/logout`` ends the sign-in session; ``/oauth/userinfo`` is OIDC's UserInfo endpoint.

The grants (registered in server.init_app) run behind the existing ``/oauth/token``:
:class:`CodeGrant` with :class:`S256CodeChallenge` and :class:`IdToken` (OIDC), and
:class:`RefreshGrant` (rotation, reuse detection: refresh.py). A token for a person is limited
to what the client is registered for, what was asked and consented, and what the person may
delegate: a resident's delegable scopes, or a staff member's role's (scopes.person_scopes).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import AccessDeniedError
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.errors import LoginRequiredError
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select
from sqlalchemy import update
from werkzeug.wrappers import Response

from citizen_card.audit.actions import Actor
from citizen_card.audit.actions import record as audit
from citizen_card.citizens.models import Citizen
from citizen_card.errors import prefers_english
from citizen_card.errors import problem_response
from citizen_card.extensions import db
from citizen_card.oauth import accounts
from citizen_card.oauth import consents
from citizen_card.oauth import jose
from citizen_card.oauth import refresh
from citizen_card.oauth import tokens
from citizen_card.oauth.clients import ClientView
from citizen_card.oauth.clients import get_client
from citizen_card.oauth.models import Account
from citizen_card.oauth.models import AuthorizationCode
from citizen_card.oauth.protect import current_principal
from citizen_card.oauth.protect import require_scopes
from citizen_card.oauth.scopes import describe_scope
from citizen_card.oauth.scopes import person_scopes
from citizen_card.oauth.server import CONFIDENTIAL_METHODS
from citizen_card.oauth.server import server
from citizen_card.pii import mask_name
from citizen_card.pii import mask_national_id

# Confidential clients authenticate as everywhere else; public apps ("none") rely on PKCE.
CODE_FLOW_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]
MAX_NONCE_LENGTH = 255  # oauth_authorization_code.nonce

# -- texts (zh-CN first, English when Accept-Language prefers it) ---------------------------
TEXTS: dict[str, tuple[str, str]] = {
    "site": ("市民卡", "Citizen Card"),
    "login_title": ("登录市民卡账户", "Sign in to your Citizen Card account"),
    "login_name": ("身份证号码（工作人员填用户名）", "ID number (staff: username)"),
    "password": ("密码", "Password"),
    "sign_in": ("登录", "Sign in"),
    "login_help": (
        "首次使用或忘记密码，请携带身份证到社区服务站设置密码。",
        "First time, or forgot your password? Bring your ID card to a service station.",
    ),
    "login_failed": (
        "证件号码、用户名或密码错误。",
        "Wrong ID number, username or password.",
    ),
    "login_empty": ("请输入证件号码和密码。", "Please enter your ID number and password."),
    "login_locked": (
        "登录失败次数过多，请 {minutes} 分钟后再试。",
        "Too many failed sign-ins. Try again in {minutes} minute(s).",
    ),
    "login_unusable": (
        "该账户无法登录，请到社区服务站办理。",
        "This account cannot sign in; please visit a service station.",
    ),
    "consent_title": ("授权确认", "Allow access?"),
    "consent_asks": ("请求以下权限：", "asks to:"),
    "consent_remember": (
        "同意后，下次登录该应用时不再询问；可随时在“我的授权”中撤回。",
        "We will remember your answer for this app; you can withdraw it at any time.",
    ),
    "signed_in_as": ("当前登录：", "Signed in as"),
    "not_you": ("不是您？退出登录", "Not you? Sign out"),
    "allow": ("同意", "Allow"),
    "deny": ("拒绝", "Deny"),
    "logout_title": ("退出登录", "Sign out"),
    "sign_out": ("退出", "Sign out"),
    "signed_out": ("您已退出登录。", "You are signed out."),
    "error_title": ("无法完成请求", "The request cannot be completed"),
    "bad_request": (
        "请求无效或已过期，请返回应用重新开始。",
        "The request is invalid or has expired; go back to the app and start again.",
    ),
    "csrf": (
        "页面已过期，请返回重试。",
        "This page has expired; go back and try again.",
    ),
}


def _texts() -> tuple[str, dict[str, str]]:
    english = prefers_english()
    return ("en" if english else "zh-CN"), {k: v[1 if english else 0] for k, v in TEXTS.items()}


def _page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a sign-in page with the headers every such page needs."""
    lang, texts = _texts()
    body = render_template(f"oauth/{template}", lang=lang, t=texts, **context)
    response = current_app.response_class(body, status=status, mimetype="text/html")
    return _protect(response, lang)


def _protect(response: Response, lang: str | None = None) -> Response:
    # Pages and redirects here carry codes, CSRF tokens and personal data: never cached, never
    # framed (clickjacking a consent button), never leaking their URL through Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["X-Frame-Options"] = "DENY"
    # No scripts at all. No form-action either: browsers apply it to the redirect that follows
    # the consent form, which must reach the client's (other-origin) redirect URI.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if lang:
        response.headers["Content-Language"] = lang
        response.vary.add("Accept-Language")
    return response


def _error_page(
    message_key: str, status: int = 400, code: str | None = None, detail: str | None = None
) -> Response:
    _lang, texts = _texts()
    return _page("error.html", status, message=texts[message_key], code=code, detail=detail)


# -- the sign-in session ---------------------------------------------------------------------
@dataclass(frozen=True)
class SignedIn:
    """The person signed in to this browser, and when they entered their password."""

    account: Account
    auth_time: int

    @property
    def id(self) -> int:
        """The account id (what Authlib stores as the code's user)."""
        return self.account.id


def current_sign_in() -> SignedIn | None:
    """The browser's sign-in, if it is recent enough and the account may still sign in.

    A password reset (a new password stamp), a disabled account or a citizen no longer active
    ends every earlier session.
    """
    uid, auth_time = session.get("uid"), session.get("auth_time")
    if not isinstance(uid, int) or not isinstance(auth_time, int):
        return None
    lifetime = int(current_app.config["OAUTH2_LOGIN_SESSION_LIFETIME"])
    account = db.session.get(Account, uid)
    if (
        time.time() - auth_time > lifetime
        or account is None
        or session.get("pw") != accounts.password_stamp(account)
        or not accounts.account_is_usable(account)
    ):
        _end_session()
        return None
    return SignedIn(account, auth_time)


def _start_session(account: Account) -> None:
    # A fresh session (and CSRF token) at every sign-in: nothing set before it survives.
    session.clear()
    session["uid"] = account.id
    session["auth_time"] = int(time.time())
    session["pw"] = accounts.password_stamp(account)
    session["csrf"] = secrets.token_urlsafe(32)


def _end_session() -> None:
    session.pop("uid", None)
    session.pop("auth_time", None)
    session.pop("pw", None)


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected, sent = session.get("csrf"), request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def _who(account: Account) -> str:
    """How a page names the signed-in person, masked (a shared screen at a station)."""
    if account.kind == "resident":
        citizen = db.session.get(Citizen, account.citizen_id)
        if citizen is not None:
            return f"{mask_name(citizen.name)} ({mask_national_id(citizen.national_id)})"
    return account.display_name or f"#{account.id}"


# -- scopes and tokens -------------------------------------------------------------------------
def grantable_scopes(client: ClientView, account: Account, scope: str | None) -> list[str]:
    """What a token may carry: asked ∩ the client's ∩ what the person may delegate."""
    asked = set((scope or "").split())
    allowed = person_scopes(current_app, account.kind, account.role)
    return sorted(asked & client.scopes & allowed)


def person_token(
    client: ClientView,
    account: Account,
    scope: str | None,
    *,
    auth_time: int | None,
    family_id: str | None,
    refresh_scope: str | None = None,
) -> dict[str, Any]:
    """The token response for a person: an access token and, for a family, a refresh token."""
    scopes = grantable_scopes(client, account, scope)
    if not scopes:
        raise InvalidScopeError("none of the scopes can be granted any more")
    issued = tokens.issue_access_token(
        client_id=client.client_id,
        client_kind=client.kind,
        organisation=client.organisation,
        scopes=scopes,
        account=account,
        auth_time=auth_time,
    )
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "scope": issued.claims["scope"],
    }
    if family_id is not None:
        body["refresh_token"], _lifetime = refresh.issue(
            client_id=client.client_id,
            account_id=account.id,
            # RFC 6749 §6: a narrower refresh keeps the family's scope for the next one.
            scope=refresh_scope or issued.claims["scope"],
            family_id=family_id,
        )
    return body


# -- grants ------------------------------------------------------------------------------------
def _s256_matches(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636), required for every client and only with S256 (RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    CODE_CHALLENGE_METHODS = {"S256": _s256_matches}

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        """Refuse a missing challenge and any method but S256 (a downgrade to plain)."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send code_challenge with code_challenge_method=S256"
            )
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is refused)")
        super().validate_code_challenge(grant, redirect_uri)


@dataclass(frozen=True)
class IssuedCode:
    """A redeemed authorization code, as Authlib's grant and extensions read it."""

    row: AuthorizationCode

    def get_redirect_uri(self) -> str:
        """The redirect URI the code was issued for."""
        return self.row.redirect_uri

    def get_scope(self) -> str:
        """The scopes granted with the code."""
        return self.row.scope

    @property
    def code_challenge(self) -> str:
        """The PKCE challenge."""
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        """Always S256."""
        return self.row.code_challenge_method


class CodeGrant(AuthorizationCodeGrant):
    """RFC 6749 §4.1 with hashed single-use codes and replay revoking the code's family."""

    TOKEN_ENDPOINT_AUTH_METHODS = CODE_FLOW_AUTH_METHODS

    def validate_authorization_request(self) -> str:
        """Authlib's checks, plus: redirect_uri is required and the client must be usable."""
        client = self.server.query_client(self.request.payload.client_id or "")
        if client is not None and not client.usable:
            # An error page, not a redirect: nothing goes to a suspended partner.
            raise InvalidClientError(description="this application is suspended or expired")
        if not self.request.payload.redirect_uri:
            raise InvalidRequestError("redirect_uri is required")
        redirect_uri: str = super().validate_authorization_request()
        if len(self.request.payload.data.get("nonce") or "") > MAX_NONCE_LENGTH:
            raise InvalidRequestError("nonce is too long", redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        """256 random bits."""
        return secrets.token_urlsafe(32)

    def save_authorization_code(self, code: str, request: Any) -> None:
        """Store the code's hash with everything the token request will be checked against."""
        signed_in: SignedIn = request.user
        client: ClientView = request.client
        scope = " ".join(grantable_scopes(client, signed_in.account, request.scope))
        lifetime = int(current_app.config["OAUTH2_AUTHORIZATION_CODE_LIFETIME"])
        data = request.payload.data
        db.session.add(
            AuthorizationCode(
                code_hash=refresh.hash_token(code),
                client_id=client.client_id,
                account_id=signed_in.account.id,
                redirect_uri=request.payload.redirect_uri,
                scope=scope,
                nonce=data.get("nonce") or None,
                code_challenge=data["code_challenge"],
                code_challenge_method="S256",
                auth_time=signed_in.auth_time,
                expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
            )
        )
        audit(
            "oauth.authorize",
            actor=Actor(signed_in.account.kind, f"account:{signed_in.account.id}"),
            citizen_id=signed_in.account.citizen_id,
            subject=f"client:{client.client_id}",
            details={"scopes": scope.split()},
        )
        db.session.commit()

    def query_authorization_code(self, code: str, client: ClientView) -> IssuedCode | None:
        """Redeem a code: None when unknown, another client's, expired or already used.

        Redeeming is an UPDATE guarded by ``used_at IS NULL`` that also names the refresh
        family the code will start; it commits with the tokens. A second redemption finds the
        code used and revokes that family (RFC 6749 §4.1.2).
        """
        row = db.session.scalars(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == refresh.hash_token(code))
        ).first()
        if row is None or row.client_id != client.client_id:
            return None
        if row.used_at is not None:
            self._replayed(row)
            return None
        if refresh.as_utc(row.expires_at) <= datetime.now(UTC):
            return None
        result = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=datetime.now(UTC), family_id=refresh.new_family())
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(row)
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            self._replayed(row)
            return None
        return IssuedCode(row)

    @staticmethod
    def _replayed(row: AuthorizationCode) -> None:
        if row.family_id is not None:
            refresh.revoke_family(row.family_id, reason="authorization code replayed")
        else:
            audit(
                "oauth.code.replay",
                actor=refresh.SYSTEM,
                subject=f"client:{row.client_id}",
                outcome="refused",
            )
        db.session.commit()

    def authenticate_user(self, authorization_code: IssuedCode) -> Account | None:
        """The code's account, if it may still sign in."""
        account = db.session.get(Account, authorization_code.row.account_id)
        return account if account is not None and accounts.account_is_usable(account) else None

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Our token response (Authlib would otherwise call the client-credentials generator)."""
        code: IssuedCode = self.request.authorization_code
        return person_token(
            self.request.client,
            user,
            scope,
            auth_time=code.row.auth_time,
            family_id=code.row.family_id if include_refresh_token else None,
        )

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """The code was spent when redeemed; commit it with the new refresh token."""
        db.session.commit()


class IdToken(OpenIDCode):
    """OIDC Core §3.1.3.3: an ES256 id_token signed with the access tokens' keys."""

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        """A nonce is used once per client (a replayed authentication request is refused)."""
        found = db.session.scalar(
            select(AuthorizationCode.id)
            .where(
                AuthorizationCode.client_id == request.payload.client_id,
                AuthorizationCode.nonce == nonce,
            )
            .limit(1)
        )
        return found is not None

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        """iss, sub (the access token's), aud = client_id, nonce, auth_time, at_hash."""
        account: Account = request.user
        client: ClientView = request.client
        code: IssuedCode = request.authorization_code
        now = int(time.time())
        digest = hashlib.sha256(token["access_token"].encode("ascii")).digest()
        claims: dict[str, Any] = {
            "iss": tokens.issuer(),
            "sub": tokens.person_subject(client.organisation, account),
            "aud": client.client_id,
            "iat": now,
            "exp": now + int(current_app.config["OAUTH2_ID_TOKEN_LIFETIME"]),
            "auth_time": code.row.auth_time,
            "at_hash": jose.b64url(digest[:16]),
        }
        if code.row.nonce:
            claims["nonce"] = code.row.nonce
        key = tokens.signing_keys().active
        return jose.sign(claims, key.private, key.kid, typ="JWT")


class RefreshGrant(RefreshTokenGrant):
    """RFC 6749 §6 with rotation: every use spends the token and issues its successor."""

    TOKEN_ENDPOINT_AUTH_METHODS = CODE_FLOW_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> refresh.RefreshHandle | None:
        """Spend the token (a spent one revokes its family)."""
        return refresh.claim(refresh_token)

    def authenticate_user(self, refresh_token: refresh.RefreshHandle) -> Account:
        """The account, if it may still sign in (else invalid_grant, not a new token)."""
        account = db.session.get(Account, refresh_token.account_id)
        if account is None or not accounts.account_is_usable(account):
            raise InvalidGrantError("the account can no longer sign in")
        return account

    def issue_token(self, user: Account, refresh_token: refresh.RefreshHandle) -> dict[str, Any]:
        """A new access token (asked scope or the family's) and the family's next token."""
        return person_token(
            self.request.client,
            user,
            self.request.payload.scope or refresh_token.get_scope(),
            auth_time=None,
            family_id=refresh_token.family_id,
            refresh_scope=refresh_token.get_scope(),
        )

    def revoke_old_credential(self, refresh_token: refresh.RefreshHandle) -> None:
        """The old token was spent when claimed; commit that with its successor."""
        db.session.commit()


def register(authorization_server: Any) -> None:
    """Add the code flow (PKCE S256, OIDC) and refresh grants to the authorization server."""
    authorization_server.register_grant(CodeGrant, [S256CodeChallenge(), IdToken()])
    authorization_server.register_grant(RefreshGrant)


# -- views -------------------------------------------------------------------------------------
_FORM_ONLY = frozenset({"csrf_token", "decision"})


def _request_params(*, drop_prompt_login: bool = False) -> list[tuple[str, str]]:
    """The authorization request's parameters, as they came (query or form)."""
    params: list[tuple[str, str]] = []
    for name in request.values:
        if name in _FORM_ONLY:
            continue
        for value in request.values.getlist(name):
            if name == "prompt" and drop_prompt_login:
                value = " ".join(p for p in value.split() if p != "login")
                if not value:
                    continue
            params.append((name, value))
    return params


def _authorize_url(**kwargs: bool) -> str:
    return url_for("oauth.authorize") + "?" + urlencode(_request_params(**kwargs))


def _safe_next(target: str | None) -> str | None:
    """Only our own authorization endpoint is a place to return to after sign-in."""
    if not target or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path != url_for("oauth.authorize"):
        return None
    return target


def _redirect_error(grant: Any, error: OAuth2Error) -> Response:
    error.redirect_uri = grant.redirect_uri
    error.state = grant.request.payload.state
    return _authorization_error(error)


def _authorization_error(error: OAuth2Error) -> Response:
    """Redirect the error to the client when its redirect URI is known good, else a page."""
    if error.redirect_uri:
        return _protect(server().handle_error_response(None, error))
    return _error_page(
        "bad_request", int(error.status_code or 400), error.error, error.get_error_description()
    )


def _issue_code(grant: Any, signed_in: SignedIn) -> Response:
    response: Response = server().create_authorization_response(grant_user=signed_in, grant=grant)
    return _protect(response)


def authorize() -> Response:
    """Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2)."""
    signed_in = current_sign_in()
    try:
        grant = server().get_consent_grant(end_user=signed_in)
    except OAuth2Error as error:
        return _authorization_error(error)
    prompts = set(request.values.get("prompt", "").split())
    max_age = request.values.get("max_age", "")
    too_old = (
        signed_in is not None
        and max_age.isascii()
        and max_age.isdigit()
        and time.time() - signed_in.auth_time > int(max_age)
    )
    if signed_in is None or "login" in prompts or too_old:
        if "none" in prompts:
            return _redirect_error(grant, LoginRequiredError())
        target = _authorize_url(drop_prompt_login=True)
        return _protect(redirect(url_for("oauth.login", next=target)))
    return _decide(grant, signed_in, prompts)


def _scopes_or_error(grant: Any, account: Account) -> list[str] | Response:
    """The scopes this person may grant this client, or the error redirect."""
    client: ClientView = grant.client
    if account.kind == "staff" and client.kind != "station":
        return _redirect_error(
            grant, AccessDeniedError("staff sign in through a station application")
        )
    scopes = grantable_scopes(client, account, grant.request.scope)
    if not scopes:
        return _redirect_error(
            grant, InvalidScopeError("none of the requested scopes can be granted to this account")
        )
    return scopes


def _decide(grant: Any, signed_in: SignedIn, prompts: set[str]) -> Response:
    client: ClientView = grant.client
    account = signed_in.account
    scopes = _scopes_or_error(grant, account)
    if isinstance(scopes, Response):
        return scopes
    # Staff act under their role, not a personal delegation: there is nothing to consent to.
    remembered = account.kind == "staff" or consents.covers(account.id, client.client_id, scopes)
    if remembered and "consent" not in prompts:
        return _issue_code(grant, signed_in)
    if "none" in prompts:
        return _redirect_error(grant, ConsentRequiredError())
    english = prefers_english()
    return _page(
        "consent.html",
        client_name=client.name,
        organisation=client.organisation,
        scopes=[
            {"name": s, "description": describe_scope(current_app, s, english=english)}
            for s in scopes
        ],
        who=_who(account),
        csrf_token=csrf_token(),
        params=[(k, v) for k, v in _request_params() if k != "prompt"],
    )


def consent() -> Response:
    """The consent form's answer: allow (remembered) or deny."""
    if not _csrf_ok():
        return _error_page("csrf", 400, "csrf")
    signed_in = current_sign_in()
    if signed_in is None:
        return _protect(redirect(url_for("oauth.login", next=_authorize_url())))
    try:
        grant = server().get_consent_grant(end_user=signed_in)
    except OAuth2Error as error:
        return _authorization_error(error)
    client: ClientView = grant.client
    account = signed_in.account
    scopes = _scopes_or_error(grant, account)
    if isinstance(scopes, Response):
        return scopes
    if request.form.get("decision") != "allow":
        return _redirect_error(grant, AccessDeniedError("the resident declined"))
    if account.kind == "resident":
        consents.remember(
            account, client.client_id, scopes, actor=Actor("resident", f"account:{account.id}")
        )
    return _issue_code(grant, signed_in)


def login() -> Response:
    """The sign-in form: national ID number or staff username, and password."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return _login_page(target)
    if not _csrf_ok():
        return _error_page("csrf", 400, "csrf")
    login_name = request.form.get("login", "").strip()[:64]
    password = request.form.get("password", "")
    _lang, texts = _texts()
    if not login_name or not password:
        return _login_page(target, texts["login_empty"], login_name=login_name)
    try:
        account = accounts.authenticate(
            login_name, password, address=request.remote_addr or "unknown"
        )
    except accounts.LoginLocked as exc:
        seconds = max(1, int((exc.until - datetime.now(UTC)).total_seconds()))
        response = _login_page(
            target,
            texts["login_locked"].format(minutes=(seconds + 59) // 60),
            status=429,
            login_name=login_name,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    except accounts.LoginFailed:
        return _login_page(target, texts["login_failed"], login_name=login_name)
    except accounts.AccountUnusable:
        return _login_page(target, texts["login_unusable"], status=403)
    _start_session(account)
    return _protect(redirect(target or url_for("oauth.logout")))


def _login_page(
    target: str | None, error: str | None = None, *, status: int = 200, login_name: str = ""
) -> Response:
    return _page(
        "login.html",
        status,
        error=error,
        next=target,
        csrf_token=csrf_token(),
        # The ID number typed is shown back only to spare retyping; never a staff password.
        login=login_name,
    )


def logout() -> Response:
    """End the sign-in session (GET asks, POST does; RP-initiated logout's redirect)."""
    signed_in = current_sign_in()
    keep = ("client_id", "post_logout_redirect_uri", "state")
    params = [(k, v) for k, v in request.values.items() if k in keep]
    if request.method == "GET":
        who = _who(signed_in.account) if signed_in else None
        return _page("logout.html", who=who, csrf_token=csrf_token(), params=params)
    if not _csrf_ok():
        return _error_page("csrf", 400, "csrf")
    session.clear()
    client = get_client(request.form.get("client_id", ""))
    back = request.form.get("post_logout_redirect_uri", "")
    if client is not None and client.usable and client.check_redirect_uri(back):
        state = request.form.get("state")
        separator = "&" if "?" in back else "?"
        target = back + (separator + urlencode({"state": state}) if state else "")
        return _protect(redirect(target))
    return _page("logout.html", who=None, csrf_token=csrf_token(), params=[])


@require_scopes("openid", kinds=("resident", "staff"))
def userinfo() -> Response:
    """OIDC UserInfo: the signed-in person's claims, as far as the token's scopes allow."""
    principal = current_principal()
    account = db.session.get(Account, principal.account_id) if principal.account_id else None
    if account is None or not accounts.account_is_usable(account):
        # Disabled since the token was issued, or the citizen died or moved away: no more data.
        return problem_response(
            401,
            "UNAUTHORIZED",
            detail="the account can no longer sign in",
            headers={"WWW-Authenticate": 'Bearer realm="citizen-card", error="invalid_token"'},
        )
    claims: dict[str, Any] = {"sub": principal.subject}
    released: list[str] = []
    if account.kind == "resident":
        citizen = db.session.get(Citizen, account.citizen_id)
        if citizen is not None:
            if "profile" in principal.scopes:
                claims["name"] = citizen.name
                released.append("name")
            if "phone" in principal.scopes and citizen.phone:
                claims["phone_number"] = "+86" + citizen.phone  # E.164, as OIDC recommends
                released.append("phone_number")
        if released:
            # The resident consented; still, every release of personal data is on record.
            audit(
                "oauth.userinfo",
                actor=Actor("client", principal.client_id),
                citizen_id=account.citizen_id,
                subject=f"account:{account.id}",
                details={"fields": released},
            )
            db.session.commit()
    elif "profile" in principal.scopes and account.display_name:
        claims["name"] = account.display_name
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def add_routes(blp: Blueprint) -> None:
    """Put the browser routes and UserInfo on the ``oauth`` blueprint (once, at import)."""
    blp.add_url_rule("/oauth/authorize", "authorize", authorize, methods=["GET", "POST"])
    blp.add_url_rule("/oauth/login", "login", login, methods=["GET", "POST"])
    blp.add_url_rule("/oauth/consent", "consent", consent, methods=["POST"])
    blp.add_url_rule("/oauth/logout", "logout", logout, methods=["GET", "POST"])
    blp.add_url_rule("/oauth/userinfo", "userinfo", userinfo, methods=["GET", "POST"])

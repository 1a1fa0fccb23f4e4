"""The client registry: CLI, admin API, and the rule that every route is protected."""

from __future__ import annotations

import json
import re
from base64 import b64encode

import pytest

# Routes anyone may call: probes, API docs, and the OAuth endpoints (which authenticate
# clients themselves). Everything else must carry @require_scopes.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/api/openapi.json",
    "/api/docs",
    "/api/docs/static/<path:filename>",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/jwks",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/static/<path:filename>",
    "/api/v1/pki/issuer.pem",  # the CA certificate is public by nature
    # The browser sign-in pages (session cookie + CSRF token, not bearer tokens). UserInfo is
    # not here: it takes a bearer token through @require_scopes("openid").
    "/oauth/authorize",
    "/oauth/login",
    "/oauth/consent",
    "/oauth/logout",
}


def _methods_of(view, methods):
    cls = getattr(view, "view_class", None)
    if cls is None:
        return {m: view for m in methods}
    return {m: getattr(cls, m.lower()) for m in methods if hasattr(cls, m.lower())}


def test_every_route_is_protected_or_listed_public(app):
    unprotected = []
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        view = app.view_functions[rule.endpoint]
        for method, func in _methods_of(view, rule.methods - {"HEAD", "OPTIONS"}).items():
            if not getattr(func, "_protected", False):
                unprotected.append(f"{method} {rule.rule}")
    assert unprotected == []


def test_every_protected_route_answers_401_and_403_as_problems(app, client, bearer):
    # A token with a scope no route needs: every protected route must say 403, not 200.
    nobody = bearer("me:consents")
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        path = re.sub(r"<int:\w+>", "1", rule.rule)
        path = re.sub(r"<(?:\w+:)?\w+>", "x", path)
        view = app.view_functions[rule.endpoint]
        for method, func in _methods_of(view, rule.methods - {"HEAD", "OPTIONS"}).items():
            r = client.open(path, method=method, json={} if method != "GET" else None)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.mimetype == "application/problem+json"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            if not func._required_scopes:
                continue  # any valid token will do (e.g. /api/v1/me)
            r = client.open(
                path, method=method, headers=nobody, json={} if method != "GET" else None
            )
            assert r.status_code == 403, (method, path, r.status_code)
            assert r.mimetype == "application/problem+json"
            checked += 1
    assert checked >= 5


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_create_prints_json_with_secret_once(app, client):
    result = _cli(
        app,
        "clients",
        "create",
        "--name",
        "Beijing Hospital",
        "--kind",
        "partner",
        "--scopes",
        "hello_service:read",
        "--json",
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["client_id"].startswith("part-") and len(created["client_secret"]) >= 40
    assert created["expires_at"] and created["auth_method"] == "client_secret_basic"
    basic = b64encode(f"{created['client_id']}:{created['client_secret']}".encode()).decode()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200
    listed = json.loads(_cli(app, "clients", "list", "--json").output)
    mine = [c for c in listed if c["client_id"] == created["client_id"]]
    assert mine and "client_secret" not in mine[0]


def test_cli_terminal_with_jwks(app, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    jwk = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()).public_key()).as_dict()
    (tmp_path / "gate.jwks").write_text(json.dumps({"keys": [jwk]}))
    result = _cli(
        app,
        "clients",
        "create",
        "--name",
        "Gate 1",
        "--kind",
        "terminal",
        "--scopes",
        "hello_service:read",
        "--jwks",
        str(tmp_path / "gate.jwks"),
        "--site",
        "gate-1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["auth_method"] == "private_key_jwt" and "client_secret" not in created
    assert created["site"] == "gate-1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "terminal"], "terminals authenticate with private_key_jwt"),
        (["--kind", "partner", "--scopes", "nope:read"], "unknown scopes: nope:read"),
        (["--kind", "partner", "--valid-days", "5000"], "never forever"),
        (["--kind", "partner", "--grant-types", "authorization_code"], "redirect URI"),
        (
            [
                "--kind",
                "partner",
                "--grant-types",
                "authorization_code",
                "--redirect-uri",
                "http://evil.example/cb",
            ],
            "must be https",
        ),
    ],
)
def test_cli_create_refuses_bad_registrations(app, args, message):
    base = ["clients", "create", "--name", "X"]
    if "--scopes" not in args:
        args = [*args, "--scopes", "hello_service:read"]
    result = _cli(app, *base, *args)
    assert result.exit_code == 1
    assert message in result.output


def test_cli_suspend_and_rotate_secret(app, client):
    created = json.loads(
        _cli(
            app,
            "clients",
            "create",
            "--name",
            "Insurer",
            "--kind",
            "partner",
            "--scopes",
            "hello_service:read",
            "--json",
        ).output
    )
    cid, old = created["client_id"], created["client_secret"]

    def token(secret):
        basic = b64encode(f"{cid}:{secret}".encode()).decode()
        return client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ).status_code

    rotated = json.loads(_cli(app, "clients", "rotate-secret", cid, "--json").output)
    assert token(old) == 401
    assert token(rotated["client_secret"]) == 200
    assert _cli(app, "clients", "suspend", cid, "--reason", "audit finding").exit_code == 0
    assert token(rotated["client_secret"]) in (400, 401)
    again = _cli(app, "clients", "suspend", cid, "--reason", "twice")
    assert again.exit_code == 1 and "already suspended" in again.output
    assert _cli(app, "clients", "activate", cid, "--reason", "resolved").exit_code == 0
    assert token(rotated["client_secret"]) == 200


def test_admin_api(client, bearer):
    admin = bearer("admin:clients")
    r = client.post(
        "/api/v1/admin/clients",
        headers=admin,
        json={
            "name": "Employment agency",
            "kind": "partner",
            "organisation": "人社局",
            "scopes": ["hello_service:read"],
        },
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["client_secret"]
    listed = client.get("/api/v1/admin/clients", headers=admin).get_json()
    assert created["client_id"] in {c["client_id"] for c in listed}
    assert all("client_secret" not in c for c in listed)
    r = client.post(
        f"/api/v1/admin/clients/{created['client_id']}/suspend",
        headers=admin,
        json={"reason": "testing"},
    )
    assert r.status_code == 200 and r.get_json()["status"] == "suspended"
    r = client.post("/api/v1/admin/clients/nope/suspend", headers=admin, json={"reason": "x" * 5})
    assert r.status_code == 404 and r.get_json()["code"] == "CLIENT_NOT_FOUND"
    r = client.post(
        "/api/v1/admin/clients",
        headers=admin,
        json={"name": "X", "kind": "partner", "organisation": "Y", "scopes": ["admin:nope"]},
    )
    assert r.status_code == 422 and r.get_json()["unknown"] == ["admin:nope"]


def test_client_changes_are_audited(app, client, bearer):
    from sqlalchemy import select

    from citizen_card.audit.models import AuditEvent
    from citizen_card.extensions import db

    admin = bearer("admin:clients")
    r = client.post(
        "/api/v1/admin/clients",
        headers=admin,
        json={"name": "Clinic", "kind": "partner", "organisation": "Clinic", "scopes": []},
    )
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "oauth.client.create")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event.subject == f"client:{r.get_json()['client_id']}"
        assert event.actor_type == "client"

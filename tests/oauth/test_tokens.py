"""The token endpoint and protected calls, driven over HTTP by third-party clients.

Tokens come from Authlib's requests client and are verified with PyJWT against /oauth/jwks
only, as a partner would.
"""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from citizen_card.audit.actions import Actor
from citizen_card.oauth import jose
from citizen_card.oauth.clients import create_client
from citizen_card.oauth.clients import set_client_status
from citizen_card.oauth.tokens import signing_keys

GREETINGS = "/api/v1/hello-service/greetings"
SYSTEM = Actor.system("test")


def register(live, scopes=("hello_service:read",), **kwargs):
    kwargs.setdefault("name", "Hospital 1")
    kwargs.setdefault("kind", "partner")
    kwargs.setdefault("organisation", kwargs["name"])
    with live.app.app_context():
        client, secret = create_client(scopes=list(scopes), actor=SYSTEM, **kwargs)
        return client.client_id, secret


def fetch(live, client_id, secret, scope="hello_service:read"):
    session = OAuth2Session(client_id, secret, scope=scope)
    return session.fetch_token(f"{live.url}/oauth/token", grant_type="client_credentials")


def get(live, path, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(live.url + path, headers=headers, timeout=10)


def test_client_credentials_token_verifies_with_pyjwt_and_jwks(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] == 600
    assert "refresh_token" not in token
    jwks_client = pyjwt.PyJWKClient(f"{live.url}/oauth/jwks")
    key = jwks_client.get_signing_key_from_jwt(token["access_token"])
    claims = pyjwt.decode(
        token["access_token"],
        key.key,
        algorithms=["ES256"],
        audience=f"{live.url}/api",
        issuer=live.url,
    )
    header = pyjwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt" and header["kid"] == key.key_id
    # RFC 9068 §2.2 required claims
    for claim in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):
        assert claim in claims
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "hello_service:read"
    assert claims["exp"] - claims["iat"] == 600


def test_protected_call_with_and_without_token(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    assert get(live, GREETINGS, token).status_code == 200
    r = get(live, GREETINGS)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="citizen-card"'
    assert r.json()["code"] == "UNAUTHORIZED"


def test_insufficient_scope_is_403_with_challenge(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    r = requests.post(
        live.url + GREETINGS,
        json={"text": "hi"},
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert 'scope="hello_service:write"' in r.headers["WWW-Authenticate"]
    assert r.json()["required_scopes"] == ["hello_service:write"]


def test_scope_not_registered_is_refused(live):
    client_id, secret = register(live)
    r = requests.post(
        f"{live.url}/oauth/token",
        auth=(client_id, secret),
        timeout=10,
        data={"grant_type": "client_credentials", "scope": "hello_service:write"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


def test_wrong_secret_and_unknown_client(live):
    client_id, _secret = register(live)
    for auth in ((client_id, "wrong"), ("nobody", "x")):
        r = requests.post(
            f"{live.url}/oauth/token",
            auth=auth,
            timeout=10,
            data={"grant_type": "client_credentials"},
        )
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"


def test_secret_in_body_is_not_accepted(live):
    client_id, secret = register(live)
    r = requests.post(
        f"{live.url}/oauth/token",
        timeout=10,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 401


def test_suspended_client_gets_no_token_and_its_tokens_die(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    with live.app.app_context():
        set_client_status(client_id, "suspended", actor=SYSTEM, reason="contract ended")
    time.sleep(live.app.config["OAUTH2_CACHE_SECONDS"] + 0.1)  # other threads' caches
    r = requests.post(
        f"{live.url}/oauth/token",
        auth=(client_id, secret),
        timeout=10,
        data={"grant_type": "client_credentials"},
    )
    assert r.status_code in (400, 401) and r.json()["error"] in (
        "invalid_client",
        "unauthorized_client",
    )
    r = get(live, GREETINGS, token)
    assert r.status_code == 401 and "suspended" in r.json()["detail"]


def test_expired_client_refused(live):
    client_id, secret = register(live, valid_days=1)
    with live.app.app_context():
        from sqlalchemy import update

        from citizen_card.extensions import db
        from citizen_card.oauth.models import OAuthClient

        db.session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == client_id)
            .values(expires_at=OAuthClient.created_at)
        )
        db.session.commit()
    r = requests.post(
        f"{live.url}/oauth/token",
        auth=(client_id, secret),
        timeout=10,
        data={"grant_type": "client_credentials"},
    )
    assert r.status_code in (400, 401)


def _forge(live, claims_update=None, header_update=None, key=None, kid=None):
    """A token like ours, altered, signed with our key unless told otherwise."""
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    header = json.loads(jose.b64url_decode(token.split(".")[0]))
    claims = json.loads(jose.b64url_decode(token.split(".")[1]))
    claims.update(claims_update or {})
    with live.app.app_context():
        active = signing_keys().active
        return jose.sign(
            claims,
            key or active.private,
            kid or header["kid"],
            typ=(header_update or {}).get("typ", "at+jwt"),
        )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "https://elsewhere.example/api"}, "audience"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4200}, "expired"),
        ({"iat": int(time.time()) + 3600}, "future"),
    ],
)
def test_forged_claims_refused(live, change, reason):
    r = get(live, GREETINGS, _forge(live, change))
    assert r.status_code == 401
    assert reason in r.json()["detail"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_foreign_key_refused(live):
    r = get(live, GREETINGS, _forge(live, key=ec.generate_private_key(ec.SECP256R1())))
    assert r.status_code == 401 and r.json()["detail"] == "bad signature"


def test_alg_none_refused(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    _h, payload, _sig = token.split(".")
    header = jose.b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    r = get(live, GREETINGS, f"{header}.{payload}.")
    assert r.status_code == 401 and "'none' not accepted" in r.json()["detail"]


def test_hs256_with_public_key_as_secret_refused(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    claims = pyjwt.decode(token, options={"verify_signature": False})
    kid = pyjwt.get_unverified_header(token)["kid"]
    with live.app.app_context():
        pem = signing_keys().active.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    # The classic confusion attack: HMAC keyed with the server's public key.
    import hashlib
    import hmac

    header = jose.b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = jose.b64url(json.dumps(claims).encode())
    sig = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    r = get(live, GREETINGS, f"{header}.{body}.{jose.b64url(sig)}")
    assert r.status_code == 401 and "HS256" in r.json()["detail"]


def test_garbage_and_wrong_scheme(live):
    assert get(live, GREETINGS, "not-a-jwt").status_code == 401
    r = requests.get(live.url + GREETINGS, headers={"Authorization": "Basic abc"}, timeout=10)
    assert r.status_code == 401 and 'error="invalid_request"' in r.headers["WWW-Authenticate"]


def test_revoked_access_token_refused_everywhere(live):
    client_id, secret = register(live)
    token = fetch(live, client_id, secret)["access_token"]
    assert get(live, GREETINGS, token).status_code == 200
    r = requests.post(
        f"{live.url}/oauth/revoke",
        auth=(client_id, secret),
        data={"token": token, "token_type_hint": "access_token"},
        timeout=10,
    )
    assert r.status_code == 200
    r = get(live, GREETINGS, token)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_a_client_cannot_revoke_another_clients_token(live):
    a_id, a_secret = register(live)
    b_id, b_secret = register(live, name="Insurer 2")
    token = fetch(live, a_id, a_secret)["access_token"]
    r = requests.post(
        f"{live.url}/oauth/revoke", auth=(b_id, b_secret), data={"token": token}, timeout=10
    )
    assert r.status_code == 400
    assert get(live, GREETINGS, token).status_code == 200


def test_introspection(live):
    a_id, a_secret = register(live)
    b_id, b_secret = register(live, name="Insurer 3")
    rs_id, rs_secret = register(live, scopes=("oauth:introspect",), name="Resource server")
    token = fetch(live, a_id, a_secret)["access_token"]

    def introspect(auth):
        r = requests.post(
            f"{live.url}/oauth/introspect", auth=auth, data={"token": token}, timeout=10
        )
        assert r.status_code == 200
        return r.json()

    own = introspect((a_id, a_secret))
    assert own["active"] is True and own["client_id"] == a_id
    assert own["scope"] == "hello_service:read"
    assert introspect((b_id, b_secret)) == {"active": False}
    assert introspect((rs_id, rs_secret))["active"] is True
    requests.post(
        f"{live.url}/oauth/revoke", auth=(a_id, a_secret), data={"token": token}, timeout=10
    )
    assert introspect((a_id, a_secret)) == {"active": False}


def _terminal(live):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECKey.import_key(key.public_key()).as_dict()
    jwk["kid"] = "gate-key-1"
    client_id, secret = register(
        live, kind="terminal", name="Gate 17", site="gate-17", jwks={"keys": [jwk]}
    )
    assert secret is None
    return client_id, ECKey.import_key(key)


def test_terminal_private_key_jwt(live):
    client_id, pem = _terminal(live)
    session = OAuth2Session(
        client_id, pem, token_endpoint_auth_method="private_key_jwt", scope="hello_service:read"
    )
    session.register_client_auth_method(PrivateKeyJWT(f"{live.url}/oauth/token", alg="ES256"))
    token = session.fetch_token(f"{live.url}/oauth/token", grant_type="client_credentials")
    claims = pyjwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["cc_kind"] == "terminal" and claims["cc_site"] == "gate-17"
    assert get(live, GREETINGS, token["access_token"]).status_code == 200


def test_terminal_assertion_replay_and_wrong_key_refused(live):
    client_id, pem = _terminal(live)
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    assertion = private_key_jwt_sign(pem, client_id, f"{live.url}/oauth/token", alg="ES256")
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert requests.post(f"{live.url}/oauth/token", data=data, timeout=10).status_code == 200
    replay = requests.post(f"{live.url}/oauth/token", data=data, timeout=10)
    # RFC 6749 §5.2: 401 only when the client used the Authorization header.
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    stranger = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    data["client_assertion"] = private_key_jwt_sign(
        stranger, client_id, f"{live.url}/oauth/token", alg="ES256"
    )
    wrong = requests.post(f"{live.url}/oauth/token", data=data, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"


def test_terminal_cannot_use_a_secret(live):
    with pytest.raises(Exception, match="private_key_jwt"):
        register(live, kind="terminal", name="Gate 18")


def test_signing_key_rotation_keeps_old_tokens_valid(live):
    client_id, secret = register(live)
    old = fetch(live, client_id, secret)["access_token"]
    with live.app.app_context():
        old_kid = signing_keys().active.kid
        new_kid = signing_keys().rotate().kid
    new = fetch(live, client_id, secret)["access_token"]
    assert pyjwt.get_unverified_header(new)["kid"] == new_kid
    kids = {k["kid"] for k in requests.get(f"{live.url}/oauth/jwks", timeout=10).json()["keys"]}
    assert {old_kid, new_kid} <= kids
    assert get(live, GREETINGS, old).status_code == 200
    assert get(live, GREETINGS, new).status_code == 200


def test_metadata_documents(live):
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        doc = requests.get(live.url + path, timeout=10).json()
        assert doc["issuer"] == live.url
        assert doc["token_endpoint"] == f"{live.url}/oauth/token"
        assert doc["jwks_uri"] == f"{live.url}/oauth/jwks"
        assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
        assert "hello_service:read" in doc["scopes_supported"]


def test_jwks_publishes_public_keys_only(live):
    keys = requests.get(f"{live.url}/oauth/jwks", timeout=10).json()["keys"]
    assert keys and all(k["kty"] == "EC" and "d" not in k and k["kid"] for k in keys)


def test_basic_auth_header_garbage_is_invalid_client(live):
    r = requests.post(
        f"{live.url}/oauth/token",
        timeout=10,
        headers={"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()},
        data={"grant_type": "client_credentials"},
    )
    assert r.status_code in (400, 401)
    assert r.headers["Content-Type"].startswith("application/json")

"""Compact ES256 JWTs, signed and verified with `cryptography` directly.

The hot path (every protected request) verifies a token; a general JOSE library spends most of
its time on flexibility we must refuse anyway (other algorithms, `none`, embedded keys). Here
only ES256 with a known ``kid`` is accepted, so algorithm confusion is impossible by
construction. Third-party verifiers (PyJWT in the tests) check that what we sign is standard.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

_ECDSA = ec.ECDSA(hashes.SHA256())


class JoseError(ValueError):
    """A token is malformed, signed with an unknown key or algorithm, or tampered with."""


def b64url(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url; raises JoseError on garbage."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JoseError("bad base64url") from exc


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(
    claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str, typ: str = "at+jwt"
) -> str:
    """Sign claims as a compact JWS (ES256, header alg/typ/kid)."""
    header = {"alg": "ES256", "typ": typ, "kid": kid}
    signing_input = b64url(_json(header)) + "." + b64url(_json(claims))
    der = key.sign(signing_input.encode("ascii"), _ECDSA)
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def unverified_header(token: str) -> dict[str, Any]:
    """The header, parsed but not trusted."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, IndexError) as exc:
        raise JoseError("malformed token") from exc
    if not isinstance(header, dict):
        raise JoseError("malformed token")
    return header


def verify(
    token: str, keys: dict[str, ec.EllipticCurvePublicKey], typ: str | None = "at+jwt"
) -> dict[str, Any]:
    """Check the ES256 signature with the key named by kid; return the (unchecked) claims."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseError("malformed token")
    header = unverified_header(token)
    if header.get("alg") != "ES256":
        raise JoseError(f"algorithm {header.get('alg')!r} not accepted")
    if typ is not None and str(header.get("typ", "")).lower() not in (typ, "application/" + typ):
        raise JoseError(f"token type must be {typ}")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise JoseError("unknown key id")
    raw = b64url_decode(parts[2])
    if len(raw) != 64:
        raise JoseError("bad signature")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, (parts[0] + "." + parts[1]).encode("ascii"), _ECDSA)
    except InvalidSignature as exc:
        raise JoseError("bad signature") from exc
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError as exc:
        raise JoseError("malformed claims") from exc
    if not isinstance(claims, dict):
        raise JoseError("malformed claims")
    return claims


def public_jwk(key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """The public JWK (RFC 7517) of a P-256 key."""
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    }

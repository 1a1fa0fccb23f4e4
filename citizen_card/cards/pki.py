"""The city's issuer PKI: an ECDSA P-256 CA that certifies each card's own key.

The CA key comes from ``CARD_ISSUER_KEY_FILE`` / ``CARD_ISSUER_CERT_FILE`` (PEM); in
development it is generated on first run into the instance folder. Card certificates are
X.509, valid 5 years, binding the card number (subject serialNumber) to the card's public key.
"""

from __future__ import annotations

import os
from datetime import UTC
from datetime import date
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask import current_app

from card_reader.errors import CardReaderError
from card_reader.issuer import Issuer
from citizen_card.config import ConfigError


class IssuerKeyError(ConfigError):
    """The issuer CA key or certificate is missing or unreadable."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_or_create_issuer(key_file: str, cert_file: str, *, create: bool) -> Issuer:
    """The issuer CA from its PEM files; in development, generated when absent."""
    key_path, cert_path = Path(key_file), Path(cert_file)
    if not key_path.exists() and not cert_path.exists() and create:
        issuer = Issuer.generate_test_issuer("Beijing Citizen Card Issuer CA (development)")
        _write_private(
            key_path,
            issuer.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
        return issuer
    try:
        return Issuer.load(key_path, cert_path)
    except CardReaderError as exc:
        raise IssuerKeyError(f"card issuer CA: {exc}") from exc


def issuer() -> Issuer:
    """The app's issuer CA."""
    ca: Issuer = current_app.extensions["card_issuer"]
    return ca


def issuer_pem() -> bytes:
    """The issuer certificate, PEM, as terminals download it."""
    return issuer().certificate.public_bytes(serialization.Encoding.PEM)


def issue_card_certificate(
    public_key: ec.EllipticCurvePublicKey,
    *,
    card_number: str,
    holder: str,
    valid_from: date,
    valid_until: date,
) -> x509.Certificate:
    """Certify a card's key; ``holder`` is shown masked (a certificate is readable by anyone)."""
    der = issuer().issue_card_certificate(
        public_key,
        card_number=card_number,
        holder_name=holder,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return x509.load_der_x509_certificate(der)


def check_card_certificate(der: bytes, *, card_number: str, public_point: bytes) -> str | None:
    """Why a card certificate is not acceptable, or None: issuer signature, binding, dates."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "certificate is not X.509 DER"
    ca = issuer().certificate
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "certificate is not issued by the city's CA"
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not serials or serials[0].value != card_number:
        return "certificate is for another card"
    point = cert.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    if point != public_point:
        return "certificate is for another key"
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "certificate is outside its validity period"
    return None


def init_app(app: Flask) -> None:
    """Load the issuer CA (generating a development one on first run)."""
    app.extensions["card_issuer"] = load_or_create_issuer(
        app.config["CARD_ISSUER_KEY_FILE"],
        app.config["CARD_ISSUER_CERT_FILE"],
        create=app.config.get("ENV") != "production",
    )

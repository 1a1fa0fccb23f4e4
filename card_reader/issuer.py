"""Demo issuer: X.509 certificates for cards, and one-call personalization.

The real issuance flow (numbers from the server, the city's issuer CA key in the server's
key store) belongs to the card-issuance work; this module gives tests, the CLI's
``personalize`` command and demos a complete card: a key pair generated on the card, a card
certificate over that key signed by an issuer CA, and the issuer certificate.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from card_reader.card import CitizenCardClient
from card_reader.errors import CardReaderError
from card_reader.protocol import make_card_number

DEMO_CARD_PREFIX = "62"


@dataclass(frozen=True)
class Issuer:
    """An issuer CA: its private key and certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate_test_issuer(cls, common_name: str = "Citizen Card Test Issuer CA") -> Issuer:
        """A throw-away self-signed P-256 issuer CA (tests and demos only)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC).replace(microsecond=0)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load(cls, key_file: str | Path, certificate_file: str | Path) -> Issuer:
        """Load an issuer from a PEM private key (unencrypted) and a PEM or DER certificate."""
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
            raw = Path(certificate_file).read_bytes()
            if raw.lstrip().startswith(b"-----BEGIN"):
                certificate = x509.load_pem_x509_certificate(raw)
            else:
                certificate = x509.load_der_x509_certificate(raw)
        except (OSError, ValueError, TypeError) as exc:
            raise CardReaderError(f"cannot load issuer key/certificate: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CardReaderError("the issuer key must be an EC private key")
        return cls(key, certificate)

    def issue_card_certificate(
        self,
        card_public_key: ec.EllipticCurvePublicKey,
        *,
        card_number: str,
        holder_name: str,
        valid_from: date,
        valid_until: date,
    ) -> bytes:
        """A DER card certificate binding the card number to the card's public key."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.SERIAL_NUMBER, card_number),
                x509.NameAttribute(NameOID.COMMON_NAME, holder_name),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(card_public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.combine(valid_from, time.min, UTC))
            .not_valid_after(datetime.combine(valid_until, time.max, UTC).replace(microsecond=0))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.DER)


def random_card_number(prefix: str = DEMO_CARD_PREFIX) -> str:
    """A random valid 19-digit demo card number starting with ``prefix``."""
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(18 - len(prefix)))
    return make_card_number(body)


def personalize(
    client: CitizenCardClient,
    *,
    issuer: Issuer,
    card_number: str,
    holder_name: str,
    citizen_ref: str,
    valid_from: date,
    valid_until: date,
    pin: str,
    puk: str,
    lock: bool = True,
) -> ec.EllipticCurvePublicKey:
    """Personalize a blank card end to end; return its public key.

    Selects the application, generates the key pair on the card, issues the card certificate
    over that public key, writes every data object, sets PIN and PUK, and (by default) locks.
    """
    client.select()
    public_key = client.generate_key_pair()
    certificate = issuer.issue_card_certificate(
        public_key,
        card_number=card_number,
        holder_name=holder_name,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    client.write_data(
        card_number=card_number,
        holder_name=holder_name,
        citizen_ref=citizen_ref,
        valid_from=valid_from,
        valid_until=valid_until,
        card_certificate=certificate,
        issuer_certificate=issuer.certificate.public_bytes(serialization.Encoding.DER),
    )
    client.set_pin_puk(pin, puk)
    if lock:
        client.lock()
    return public_key

"""Schemas of the card, PKI and card-authentication APIs."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import marshmallow as ma

from card_reader.errors import TransactionFormatError
from card_reader.protocol import SignedTransaction


class Base64Bytes(ma.fields.Field[bytes]):
    """Bytes as standard base64 in JSON."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bytes:
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ma.ValidationError("must be base64") from exc


class HexBytes(ma.fields.Field[bytes]):
    """Bytes as hex in JSON."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else bytes(value).hex()

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bytes:
        try:
            return bytes.fromhex(str(value))
        except ValueError as exc:
            raise ma.ValidationError("must be hex") from exc


class SignedTransactionSchema(ma.Schema):
    """A card's signed transaction, as card_reader's SignedTransaction.to_json() writes it."""

    card_number = ma.fields.String(required=True)
    atc = ma.fields.Integer(required=True, strict=True)
    terminal_id = ma.fields.String(required=True)
    unpredictable_number = ma.fields.String(required=True, metadata={"description": "8 bytes, hex"})
    timestamp = ma.fields.Integer(required=True, strict=True, metadata={"description": "Unix s"})
    amount_fen = ma.fields.Integer(required=True, strict=True)
    pin_verified = ma.fields.Boolean(required=True)
    signature = ma.fields.String(required=True, metadata={"description": "r||s, base64url"})

    @ma.post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> SignedTransaction:
        try:
            return SignedTransaction.from_json(data)
        except (TransactionFormatError, ValueError, KeyError, TypeError) as exc:
            raise ma.ValidationError(str(exc)) from exc


class IssuanceCreateSchema(ma.Schema):
    """Step 1: whom the card is for."""

    citizen_id = ma.fields.Integer(required=True, strict=True)
    replacement = ma.fields.Boolean(load_default=False)


class PersonalizeSchema(ma.Schema):
    """Step 2: the public key the card generated (65-byte uncompressed point)."""

    public_key = HexBytes(required=True)


class IssuanceFailSchema(ma.Schema):
    """Why the station gave up."""

    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=256))
    cancel = ma.fields.Boolean(load_default=False)


class IssuanceSchema(ma.Schema):
    """An issuance request."""

    id = ma.fields.Integer()
    citizen_id = ma.fields.Integer()
    state = ma.fields.String()
    card_number = ma.fields.String(allow_none=True)
    replaces_card_id = ma.fields.Integer(allow_none=True)
    station = ma.fields.String(allow_none=True)
    failure_reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class PersonalizationSchema(ma.Schema):
    """Step 3: what the terminal writes to the card."""

    request_id = ma.fields.Integer()
    card_number = ma.fields.String()
    holder_name = ma.fields.String()
    citizen_ref = ma.fields.String()
    valid_from = ma.fields.Date()
    valid_until = ma.fields.Date()
    card_certificate = Base64Bytes(metadata={"description": "X.509 DER, base64"})
    issuer_certificate = Base64Bytes(metadata={"description": "X.509 DER, base64"})


class CardSchema(ma.Schema):
    """A card's public facts."""

    card_number = ma.fields.String()
    citizen_id = ma.fields.Integer()
    status = ma.fields.String()
    status_reason = ma.fields.String(allow_none=True)
    issued_at = ma.fields.DateTime()
    activated_at = ma.fields.DateTime(allow_none=True)
    expires_at = ma.fields.DateTime()
    certificate_serial = ma.fields.String()


class ReportLostSchema(ma.Schema):
    """Why the card is reported lost."""

    reason = ma.fields.String(load_default="reported lost", validate=ma.validate.Length(max=256))


class UnsuspendSchema(ma.Schema):
    """Proof the card is present and its PIN was verified: a fresh signed transaction."""

    transaction = ma.fields.Nested(SignedTransactionSchema, required=True)


class DenyListArgsSchema(ma.Schema):
    """Which version the terminal already has."""

    since = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0))


class DenyListChangeSchema(ma.Schema):
    """One change."""

    version = ma.fields.Integer()
    card_number = ma.fields.String()
    change = ma.fields.String(metadata={"description": "add or remove"})
    reason = ma.fields.String()


class DenyListSchema(ma.Schema):
    """Changes since the asked version, and the version to ask from next time."""

    version = ma.fields.Integer()
    changes = ma.fields.List(ma.fields.Nested(DenyListChangeSchema))


class CertificateStatusSchema(ma.Schema):
    """An online certificate status answer."""

    card_number = ma.fields.String()
    certificate_serial = ma.fields.String()
    status = ma.fields.String(metadata={"description": "good or revoked"})
    card_status = ma.fields.String()
    not_after = ma.fields.DateTime()


class ChallengeSchema(ma.Schema):
    """A card-login challenge."""

    challenge = ma.fields.String(attribute="nonce", metadata={"description": "32 bytes, hex"})
    expires_at = ma.fields.DateTime()


class CardSessionCreateSchema(ma.Schema):
    """The card's INTERNAL AUTHENTICATE answer to a challenge."""

    card_number = ma.fields.String(required=True)
    challenge = ma.fields.String(required=True, validate=ma.validate.Length(equal=64))
    signature = Base64Bytes(required=True, metadata={"description": "r||s (64 bytes), base64"})


class TokenSchema(ma.Schema):
    """An access token for the card holder, usable by this terminal only."""

    access_token = ma.fields.String()
    token_type = ma.fields.String()
    expires_in = ma.fields.Integer()
    scope = ma.fields.String()


class VerifySchema(SignedTransactionSchema):
    """A signed transaction as the card produced it, plus whether this check needs the PIN.

    Flat, so a terminal can post ``SignedTransaction.to_json()`` as it is.
    """

    require_pin = ma.fields.Boolean(load_default=False)

    @ma.post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        require_pin = data.pop("require_pin")
        return {
            "transaction": SignedTransactionSchema._make(self, data),
            "require_pin": require_pin,
        }


class VerifiedSchema(ma.Schema):
    """An accepted card: whose it is."""

    citizen_id = ma.fields.Integer()
    card_number = ma.fields.String()
    atc = ma.fields.Function(lambda v: v.transaction.atc)
    pin_verified = ma.fields.Function(lambda v: v.transaction.pin_verified)

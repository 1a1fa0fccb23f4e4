"""Field encryption, key rotation, blind index and masking."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from citizen_card import pii
from citizen_card.extensions import db
from citizen_card.pii import DecryptionError
from citizen_card.pii import Keyring
from citizen_card.pii import KeyringError
from tests.plugins.hello_service.models import Greeting

GREETINGS = "/api/v1/hello-service/greetings"


@pytest.fixture()
def ring(tmp_path) -> Keyring:
    return Keyring(tmp_path / "ring.json", create=True)


def test_roundtrip_and_format(ring):
    token = ring.encrypt("110105199001011234", "citizen.national_id")
    version, kid, _body = token.split(".", 2)
    assert (version, kid) == ("v1", ring.active_key_id)
    assert "110105" not in token
    assert ring.decrypt(token, "citizen.national_id") == "110105199001011234"


def test_same_plaintext_encrypts_differently(ring):
    assert ring.encrypt("13812345678", "c") != ring.encrypt("13812345678", "c")


def test_tampered_ciphertext_rejected(ring):
    token = ring.encrypt("13812345678", "citizen.phone")
    head, body = token.rsplit(".", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError, match="authentication"):
        ring.decrypt(f"{head}.{flipped}", "citizen.phone")


def test_ciphertext_moved_to_another_column_rejected(ring):
    token = ring.encrypt("13812345678", "citizen.phone")
    with pytest.raises(DecryptionError):
        ring.decrypt(token, "citizen.national_id")


@pytest.mark.parametrize("garbage", ["", "v1", "v1.k", "v2.k.AAAA", "v1.k.!!!!", "v1.nokey.AAAA"])
def test_malformed_ciphertext_rejected(ring, garbage):
    with pytest.raises(DecryptionError):
        ring.decrypt(garbage, "c")


def test_rotation_keeps_old_ciphertexts_readable(ring):
    old = ring.encrypt("secret", "c")
    old_kid = ring.active_key_id
    new_kid = ring.add_key()
    assert new_kid != old_kid and ring.active_key_id == new_kid
    assert ring.key_id_of(ring.encrypt("secret", "c")) == new_kid
    assert ring.decrypt(old, "c") == "secret"


def test_other_process_sees_rotation(ring, tmp_path):
    other = Keyring(tmp_path / "ring.json", create=False)
    ring.add_key()
    token = ring.encrypt("x", "c")
    # An unknown key id makes the other process reload the file at once.
    assert other.decrypt(token, "c") == "x"


def test_missing_keyring_refused_without_create(tmp_path):
    with pytest.raises(KeyringError, match="does not exist"):
        Keyring(tmp_path / "absent.json", create=False)


def test_corrupt_keyring_refused(tmp_path):
    path = tmp_path / "ring.json"
    path.write_text(json.dumps({"active": "k1", "keys": {"k1": "c2hvcnQ"}, "blind_index_key": ""}))
    with pytest.raises(KeyringError, match="not 256-bit"):
        Keyring(path, create=False)


def test_keyring_file_is_private(ring):
    assert ring.path.stat().st_mode & 0o077 == 0


def test_blind_index_is_keyed_and_normalised(ring, tmp_path):
    a = ring.blind_index("11010519900101123x", "citizen.national_id")
    assert a == ring.blind_index(" 11010519900101123X ", "citizen.national_id")
    assert a != ring.blind_index("11010519900101123X", "other.column")
    other_ring = Keyring(tmp_path / "other.json", create=True)
    assert a != other_ring.blind_index("11010519900101123X", "citizen.national_id")
    assert len(a) == 64


@pytest.mark.parametrize(
    ("func", "value", "masked"),
    [
        (pii.mask_national_id, "110105199001011234", "110105********1234"),
        (pii.mask_phone, "13812345678", "138****5678"),
        (pii.mask_name, "张三丰", "张**"),
        (pii.mask_name, "李", "*"),
        (pii.mask_phone, "123", "***"),
        (pii.mask_phone, None, None),
    ],
)
def test_masking(func, value, masked):
    assert func(value) == masked


def test_encrypted_column_stored_encrypted_and_searchable(hello_client, app):
    r = hello_client.post(GREETINGS, json={"text": "hi", "phone": "13812345678"})
    assert r.status_code == 201
    assert r.get_json()["phone"] == "138****5678"
    with app.app_context():
        raw = db.session.execute(sa.text("SELECT phone, phone_index FROM hello_service_greeting"))
        stored, index = raw.one()
        assert stored.startswith("v1.") and "13812345678" not in stored
        assert "13812345678" not in index
        assert db.session.scalars(sa.select(Greeting)).one().phone == "13812345678"
    found = hello_client.get(GREETINGS, query_string={"phone": "13812345678"}).get_json()
    assert [g["text"] for g in found] == ["hi"]
    assert hello_client.get(GREETINGS, query_string={"phone": "13900000000"}).get_json() == []


def test_keys_rotate_reencrypts_every_value(hello_client, app):
    for i in range(3):
        hello_client.post(GREETINGS, json={"text": f"g{i}", "phone": f"1381234567{i}"})
    with app.app_context():
        ring = pii.keyring()
        old_kid = ring.active_key_id
        result = app.test_cli_runner().invoke(args=["keys", "rotate", "--batch", "2"])
        assert result.exit_code == 0, result.output
        assert "re-encrypted 3 values" in result.output
        new_kid = ring.active_key_id
        assert new_kid != old_kid
        stored = db.session.scalars(sa.text("SELECT phone FROM hello_service_greeting")).all()
        assert {ring.key_id_of(s) for s in stored} == {new_kid}
        phones = sorted(g.phone for g in db.session.scalars(sa.select(Greeting)))
        assert phones == ["13812345670", "13812345671", "13812345672"]
    # The blind index does not depend on the data key: lookups still work.
    found = hello_client.get(GREETINGS, query_string={"phone": "13812345671"}).get_json()
    assert [g["text"] for g in found] == ["g1"]

"""The registry over HTTP: scopes decide masking, partners state a purpose, all is audited."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from citizen_card.audit.models import AuditEvent
from citizen_card.extensions import db
from tests.citizens.conftest import citizen_data

BASE = "/api/v1/citizens"


def _register(client, headers, **overrides):
    r = client.post(BASE, json=citizen_data(**overrides), headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_station_registers_and_partner_reads_masked_with_purpose(app, client, bearer):
    station = bearer(
        "citizens:write",
        "citizens:read",
        "citizens:pii",
        kind="partner",
        organisation="Chaoyang station",
    )
    created = _register(client, station, name="王小明")
    assert created["name"] == "王小明" and len(created["national_id"]) == 18
    hospital = bearer("citizens:read", organisation="Beijing Hospital")
    r = client.get(f"{BASE}/{created['id']}", headers=hospital)
    assert r.status_code == 400 and r.get_json()["code"] == "PURPOSE_REQUIRED"
    r = client.get(
        f"{BASE}/{created['id']}",
        headers=hospital,
        query_string={"purpose": "门诊挂号 outpatient booking"},
    )
    assert r.status_code == 200
    body = r.get_json()
    assert body["name"] == "王**"
    assert (
        body["national_id"] == created["national_id"][:6] + "********" + created["national_id"][-4:]
    )
    assert body["phone"] == "138****5678"
    assert "birth_date" not in body and body["birth_year"] == 1990
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "citizen.read", AuditEvent.citizen_id == created["id"])
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event.actor_type == "client" and event.purpose == "门诊挂号 outpatient booking"
        assert event.outcome == "ok"


def test_pii_scope_sees_full_values(client, bearer):
    station = bearer("citizens:write", "citizens:read", "citizens:pii")
    created = _register(client, station)
    insurer = bearer("citizens:read", "citizens:pii", organisation="Insurer")
    r = client.get(f"{BASE}/{created['id']}", headers=insurer, query_string={"purpose": "理赔"})
    assert r.get_json()["national_id"] == created["national_id"]
    assert r.get_json()["phone"] == "13812345678"


def test_lookup_by_national_id(client, bearer):
    station = bearer("citizens:write", "citizens:read", "citizens:pii")
    created = _register(client, station)
    r = client.get(
        BASE,
        headers=station,
        query_string={"national_id": created["national_id"].lower(), "purpose": "办卡 card"},
    )
    assert [c["id"] for c in r.get_json()] == [created["id"]]


def test_duplicate_and_invalid_national_id(client, bearer):
    station = bearer("citizens:write", "citizens:read")
    data = citizen_data()
    first = client.post(BASE, json=data, headers=station).get_json()
    r = client.post(BASE, json=data, headers=station)
    assert r.status_code == 409
    assert r.get_json()["code"] == "DUPLICATE_NATIONAL_ID"
    assert r.get_json()["existing_citizen_id"] == first["id"]
    bad = data["national_id"][:17] + ("0" if data["national_id"][17] != "0" else "1")
    r = client.post(BASE, json=citizen_data(national_id=bad), headers=station)
    assert r.status_code == 422 and r.get_json()["code"] == "INVALID_NATIONAL_ID"
    assert "check digit" in r.get_json()["detail"]


def test_update_with_version_and_stale_version(client, bearer):
    station = bearer("citizens:write", "citizens:read")
    created = _register(client, station)
    r = client.patch(
        f"{BASE}/{created['id']}",
        headers=station,
        json={"version": created["version"], "district": "110101"},
    )
    assert r.status_code == 200 and r.get_json()["district"] == "110101"
    r = client.patch(
        f"{BASE}/{created['id']}",
        headers=station,
        json={"version": created["version"], "district": "110102"},
    )
    assert r.status_code == 409 and r.get_json()["code"] == "STALE_VERSION"


def test_life_event(client, bearer):
    station = bearer("citizens:write", "citizens:read")
    created = _register(client, station)
    event = {
        "event": "deceased",
        "effective_date": date.today().isoformat(),
        "reason": "死亡证明 No. 2026-001",
    }
    r = client.post(f"{BASE}/{created['id']}/life-events", headers=station, json=event)
    assert r.status_code == 200 and r.get_json()["status"] == "deceased"
    r = client.post(f"{BASE}/{created['id']}/life-events", headers=station, json=event)
    assert r.status_code == 409 and r.get_json()["current_status"] == "deceased"


def test_partner_without_write_scope_cannot_register(client, bearer):
    hospital = bearer("citizens:read")
    r = client.post(BASE, json=citizen_data(), headers=hospital)
    assert r.status_code == 403


def test_unknown_citizen_is_404(client, bearer):
    station = bearer("citizens:read")
    r = client.get(f"{BASE}/999999", headers=station, query_string={"purpose": "check"})
    assert r.status_code == 404 and r.get_json()["code"] == "CITIZEN_NOT_FOUND"


def test_demo_load_is_idempotent(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "demo residents: 3 added" in first.output
    assert "demo clients: 3 added" in first.output
    assert "demo cards: 3 issued" in first.output
    assert "demo wallets: 3 topped up" in first.output
    assert "demo transit network: sample Beijing feed imported" in first.output
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0, second.output
    assert "demo residents: 0 added, 3 already there" in second.output
    assert "demo clients: 0 added" in second.output
    assert "demo cards: 0 issued" in second.output
    assert "demo wallets: 0 topped up" in second.output
    assert "demo transit network: already imported" in second.output

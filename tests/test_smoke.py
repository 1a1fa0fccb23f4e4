"""Smoke: the app starts and answers."""


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_greeting_roundtrip(hello_client):
    r = hello_client.post("/api/v1/hello-service/greetings", json={"text": "你好"})
    assert r.status_code == 201, r.get_data(as_text=True)
    r = hello_client.get("/api/v1/hello-service/greetings")
    assert [g["text"] for g in r.get_json()] == ["你好"]


def test_isolated_from_previous_test(hello_client):
    assert hello_client.get("/api/v1/hello-service/greetings").get_json() == []

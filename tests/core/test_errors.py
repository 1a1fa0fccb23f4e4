"""Every error is one RFC 9457 problem document, in Chinese or English."""

from __future__ import annotations

import pytest

GREETINGS = "/api/v1/hello-service/greetings"
PROBLEM = "application/problem+json"


def assert_problem(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert list(body)[:4] == ["type", "title", "status", "code"]
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].startswith("/problems/")
    assert body["title"]
    assert body["instance"] == response.request.path
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_malformed_json_is_400(hello_client):
    r = hello_client.post(GREETINGS, data="{bad", content_type="application/json")
    body = assert_problem(r, 400, "MALFORMED_JSON")
    assert "invalid JSON" in body["detail"]


def test_malformed_json_on_unknown_api_route_is_still_400_not_500(client):
    r = client.post("/api/v1/nowhere", data="{bad", content_type="application/json")
    assert_problem(r, 400, "MALFORMED_JSON")


def test_wrong_content_type_is_415(hello_client):
    form = "application/x-www-form-urlencoded"
    r = hello_client.post(GREETINGS, data="text=hi", content_type=form)
    body = assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/x-www-form-urlencoded" in body["detail"]


def test_oversized_body_is_413(app, hello_client):
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    body = b"[" + b" " * size + b"]"
    r = hello_client.post(GREETINGS, data=body, content_type="application/json")
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE")


def test_validation_is_422_with_field_errors(hello_client):
    r = hello_client.post(GREETINGS, json={"text": ""})
    body = assert_problem(r, 422, "VALIDATION_FAILED")
    assert body["errors"] == {"json": {"text": ["Length must be between 1 and 200."]}}


def test_unknown_field_is_rejected_not_ignored(hello_client):
    r = hello_client.post(GREETINGS, json={"text": "hi", "admin": True})
    body = assert_problem(r, 422, "VALIDATION_FAILED")
    assert "admin" in body["errors"]["json"]


def test_unknown_route_is_404(client):
    assert_problem(client.get("/no/such/thing"), 404, "NOT_FOUND")
    assert_problem(client.get("/api/v1/nope"), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow(hello_client):
    r = hello_client.delete(GREETINGS)
    assert_problem(r, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in r.headers["Allow"]


def test_domain_error_carries_its_type_and_extensions(hello_client, app):
    r = hello_client.post(GREETINGS, json={"text": "x" * 41})
    body = assert_problem(r, 422, "GREETING_TOO_LONG")
    assert body["type"] == "/problems/hello_service/greeting-too-long"
    assert body["limit"] == 40
    assert body["detail"] == "at most 40 characters"


def test_domain_error_wrote_nothing(hello_client):
    hello_client.post(GREETINGS, json={"text": "x" * 41})
    assert hello_client.get(GREETINGS).get_json() == []


def test_500_is_a_problem_without_internals(hello_client, caplog):
    r = hello_client.get("/api/v1/hello-service/crash")
    body = assert_problem(r, 500, "INTERNAL_ERROR")
    assert "detail" not in body
    assert "hunter2" not in r.get_data(as_text=True)
    # ...but the log has the traceback, tied to the request id.
    logged = [rec for rec in caplog.records if rec.getMessage() == "unhandled error"]
    assert logged and logged[0].request_id == body["request_id"]
    assert "hunter2" in str(logged[0].exc_info[1])


@pytest.mark.parametrize(
    ("header", "title"),
    [
        (None, "资源不存在"),
        ("zh-CN,zh;q=0.9", "资源不存在"),
        ("en-US,en;q=0.8", "Not found"),
        ("fr-FR", "资源不存在"),
        ("en;q=0.5, zh;q=0.9", "资源不存在"),
    ],
)
def test_titles_follow_accept_language(client, header, title):
    headers = {"Accept-Language": header} if header else {}
    r = client.get("/nope", headers=headers)
    assert r.get_json(force=True)["title"] == title
    assert "Accept-Language" in r.headers["Vary"]


def test_domain_error_title_in_english(hello_client):
    r = hello_client.post(GREETINGS, json={"text": "x" * 41}, headers={"Accept-Language": "en"})
    assert r.get_json(force=True)["title"] == "Greeting too long"
    r = hello_client.post(GREETINGS, json={"text": "x" * 41})
    assert r.get_json(force=True)["title"] == "问候语过长"


def test_openapi_documents_problem_schema(hello_client):
    spec = hello_client.get("/api/openapi.json").get_json()
    assert "Problem" in spec["components"]["schemas"]
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/hello-service/greetings" in spec["paths"]

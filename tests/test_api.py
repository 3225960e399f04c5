"""The CRM JSON API against a real SQLite file, through the Flask test client."""
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlite_utils.db import NotFoundError

from app import create_app
from app.storage.crm import import_customers
from app.storage.connect import connect
from tests.conftest import API_TOKEN

DEMO_CUSTOMERS = Path(__file__).parent.parent / "app" / "demo_data" / "customers.json"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def demo_db(db_path):
    db = connect(db_path)
    import_customers(db, DEMO_CUSTOMERS, "US")
    db.conn.close()
    return db_path


def stored_issue(db_path, issue_id):
    """Read through a separate connection, as the webhook process would."""
    db = connect(db_path)
    try:
        return db["issues"].get(issue_id)
    finally:
        db.conn.close()


def snapshot(db_path):
    """Every customer and issue row, to show a refused request wrote nothing."""
    db = connect(db_path)
    try:
        return [list(db[table].rows) for table in ("customers", "issues")]
    finally:
        db.conn.close()


# --- auth ------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Basic {API_TOKEN}"},
    {"Authorization": API_TOKEN},
])
def test_missing_or_wrong_token_is_401(client, demo_db, headers):
    response = client.get("/api/customers/C-1001", headers=headers)
    assert response.status_code == 401
    assert "Bearer" in response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_writes_without_a_token_change_nothing(client, demo_db):
    response = client.post("/api/customers/C-1003/issues", json={"id": "CASE-9", "severity": "high"})
    assert response.status_code == 401
    with pytest.raises(NotFoundError):
        stored_issue(demo_db, "CASE-9")


def test_unconfigured_token_is_503_never_open(db_path):
    app = create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path), "HOLDGUARD_API_TOKEN": ""})
    response = app.test_client().get("/api/customers/C-1001", headers={"Authorization": "Bearer "})
    assert response.status_code == 503
    assert "HOLDGUARD_API_TOKEN is not set" in response.get_json()["error"]


# --- issues -------------------------------------------------------------------------

def test_open_issue_is_written_at_once(client, demo_db):
    response = client.post("/api/customers/C-1003/issues", headers=AUTH, json={
        "id": "CASE-2001", "severity": "Medium", "summary": "No signal at home",
        "opened_at": "2026-11-24T08:30:00+01:00"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["id"], body["customer_id"], body["severity"], body["open"]) == ("CASE-2001", "C-1003", "medium", True)
    stored = stored_issue(demo_db, "CASE-2001")
    assert (stored["opened_at"], stored["closed_at"]) == ("2026-11-24T07:30:00Z", None)


def test_open_issue_without_opened_at_is_opened_now(client, demo_db):
    response = client.post("/api/customers/C-1003/issues", headers=AUTH, json={"id": "CASE-1", "severity": "low"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["opened_at"].endswith("Z") and body["opened_at"] == body["updated_at"]
    assert body["summary"] == ""


def test_reposting_an_issue_is_an_update_not_a_duplicate(client, demo_db):
    first = {"id": "CASE-1", "severity": "low", "summary": "a"}
    assert client.post("/api/customers/C-1003/issues", headers=AUTH, json=first).status_code == 201
    client.post("/api/issues/CASE-1/close", headers=AUTH)
    again = client.post("/api/customers/C-1003/issues", headers=AUTH, json={**first, "severity": "high"})
    assert again.status_code == 200
    assert (again.get_json()["severity"], again.get_json()["closed_at"]) == ("high", None)  # reopened


def test_patch_updates_severity_and_summary(client, demo_db):
    response = client.patch("/api/issues/CASE-1042", headers=AUTH, json={"severity": "critical"})
    assert response.status_code == 200
    assert response.get_json()["severity"] == "critical"
    assert response.get_json()["summary"] == "Galaxy S7 reboots during calls"
    response = client.patch("/api/issues/CASE-1042", headers=AUTH, json={"summary": "Reboots, replacement sent"})
    stored = stored_issue(demo_db, "CASE-1042")
    assert (stored["severity"], stored["summary"]) == ("critical", "Reboots, replacement sent")
    assert stored["opened_at"] == "2026-11-20T09:12:00Z"


def test_close_sets_closed_at_now_and_is_idempotent(client, demo_db):
    response = client.post("/api/issues/CASE-1042/close", headers=AUTH)
    assert response.status_code == 200
    closed_at = response.get_json()["closed_at"]
    assert closed_at.endswith("Z") and response.get_json()["open"] is False
    assert stored_issue(demo_db, "CASE-1042")["closed_at"] == closed_at
    again = client.post("/api/issues/CASE-1042/close", headers=AUTH)
    assert again.get_json()["closed_at"] == closed_at
    customer = client.get("/api/customers/C-1001", headers=AUTH).get_json()
    assert customer["open_issues"] == []


def test_get_issue(client, demo_db):
    response = client.get("/api/issues/CASE-1042", headers=AUTH)
    assert response.status_code == 200 and response.get_json()["customer_id"] == "C-1001"


# --- customers and products ---------------------------------------------------------------

def test_put_products_replaces_the_list(client, demo_db):
    response = client.put("/api/customers/C-1003/products", headers=AUTH,
                          json={"products": ["Galaxy S7", " Fiber 1G "]})
    assert response.status_code == 200
    assert response.get_json()["products"] == ["Galaxy S7", "Fiber 1G"]
    assert snapshot(demo_db)[0][2]["products"] == '["Galaxy S7", "Fiber 1G"]'



def test_put_products_refuses_a_string(client, demo_db):
    before = snapshot(demo_db)
    response = client.put("/api/customers/C-1003/products", headers=AUTH, json={"products": "Galaxy S7"})
    assert response.status_code == 400
    assert response.get_json()["error"] == ("field 'products': expected a list of product names, "
                                            "got 'Galaxy S7'")
    assert snapshot(demo_db) == before

def test_put_customer_creates_then_updates(client, demo_db):
    created = client.put("/api/customers/C-2000", headers=AUTH, json={
        "phone": "(555) 555-0150", "name": "Ria", "products": ["Fiber 1G"], "marketing_opt_out": "yes"})
    assert created.status_code == 201
    body = created.get_json()
    assert (body["phone_e164"], body["marketing_opt_out"], body["open_issues"]) == ("+15555550150", True, [])
    updated = client.put("/api/customers/C-2000", headers=AUTH, json={"marketing_opt_out": False})
    assert updated.status_code == 200
    assert (updated.get_json()["marketing_opt_out"], updated.get_json()["name"]) == (False, "Ria")


# --- 400 / 404 / 409 -----------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body, error", [
    ("post", "/api/customers/C-1001/issues", {"id": "X-1", "severity": "urgent"},
     "field 'severity': 'urgent' is not one of low|medium|high|critical"),
    ("post", "/api/customers/C-1001/issues", {"severity": "low"}, "field 'id': missing"),
    ("post", "/api/customers/C-1001/issues", {"id": "X-1"}, "field 'severity': missing"),
    ("post", "/api/customers/C-1001/issues", {"id": "X-1", "severity": "low", "opened_at": "today"},
     "field 'opened_at': 'today' is not an ISO 8601 timestamp (e.g. 2026-11-20T09:12:00Z)"),
    ("post", "/api/customers/C-1001/issues", {"id": "X-1", "severty": "low"},
     "field 'severty': unknown field (allowed: id, severity, summary, opened_at)"),
    ("patch", "/api/issues/CASE-1042", {"severity": "urgent"},
     "field 'severity': 'urgent' is not one of low|medium|high|critical"),
    ("patch", "/api/issues/CASE-1042", {}, "nothing to update: give severity and/or summary"),
    ("patch", "/api/issues/CASE-1042", {"closed_at": None},
     "field 'closed_at': unknown field (allowed: severity, summary)"),
    ("put", "/api/customers/C-1001/products", {"products": [1, 2]},
     "field 'products': [1, 2] is not a list of product names"),
    ("put", "/api/customers/C-1001/products", {}, "field 'products': missing"),
    ("put", "/api/customers/C-1001", {"phone": "12"},
     "field 'phone': '12' is not a valid phone number (too short)"),
    ("put", "/api/customers/C-3000", {"name": "No Phone"},
     "field 'phone': missing (required for a new customer)"),
    # hostile or oversized values (issue #13): 400 naming the field, never 500
    ("post", "/api/customers/C-1003/issues", {"id": "X-1", "severity": "low", "opened_at": "0001-01-01T00:00:00+14:00"},
     "field 'opened_at': '0001-01-01T00:00:00+14:00' is out of range (years 1 to 9999, in UTC)"),
    ("post", "/api/customers/C-1003/issues", {"id": "X-1", "severity": "low", "opened_at": "9999-12-31T23:59:59-14:00"},
     "field 'opened_at': '9999-12-31T23:59:59-14:00' is out of range (years 1 to 9999, in UTC)"),
    ("post", "/api/customers/C-1003/issues", {"id": "CASE/7", "severity": "low"},  # /api/issues/<id> could not name it
     "field 'id': 'CASE/7' contains '/', which an issue id cannot"),
    ("put", "/api/customers/C-1003", {"name": "n" * 201},
     "field 'name': too long: at most 200 characters, got 201"),
    ("put", "/api/customers/" + "C" * 101, {"phone": "+15555550188"},
     "field 'customer_id': too long: at most 100 characters, got 101"),
    ("put", "/api/customers/C-1003", {"phone": "5" * 51},
     "field 'phone': too long: at most 50 characters, got 51"),
    ("put", "/api/customers/C-1003/products", {"products": [f"P{n}" for n in range(101)]},
     "field 'products': too long: at most 100 items, got 101"),
    ("put", "/api/customers/C-1003/products", {"products": ["ok", "p" * 201]},
     "field 'products[1]': too long: at most 200 characters, got 201"),
    ("post", "/api/customers/C-1003/issues", {"id": "I" * 101, "severity": "low"},
     "field 'id': too long: at most 100 characters, got 101"),
    ("post", "/api/customers/C-1003/issues", {"id": "X-1", "severity": "low", "summary": "s" * 2001},
     "field 'summary': too long: at most 2000 characters, got 2001"),
    ("patch", "/api/issues/CASE-1042", {"summary": "s" * 2001},
     "field 'summary': too long: at most 2000 characters, got 2001"),
])
def test_validation_errors_are_400_and_write_nothing(client, demo_db, method, path, body, error):
    before = snapshot(demo_db)
    response = getattr(client, method)(path, headers=AUTH, json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == error
    assert snapshot(demo_db) == before


def test_non_json_body_is_400(client, demo_db):
    response = client.post("/api/customers/C-1001/issues", headers=AUTH, data="id=X")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/customers/C-404", None),
    ("post", "/api/customers/C-404/issues", {"id": "X-1", "severity": "low"}),
    ("put", "/api/customers/C-404/products", {"products": []}),
    ("get", "/api/issues/CASE-404", None),
    ("patch", "/api/issues/CASE-404", {"severity": "low"}),
    ("post", "/api/issues/CASE-404/close", None),
])
def test_unknown_customer_or_issue_is_404(client, demo_db, method, path, body):
    before = snapshot(demo_db)
    response = getattr(client, method)(path, headers=AUTH, json=body)
    assert response.status_code == 404
    assert response.get_json()["error"].startswith(("no customer", "no issue"))
    assert snapshot(demo_db) == before


def test_issue_id_of_another_customer_is_409(client, demo_db):
    response = client.post("/api/customers/C-1002/issues", headers=AUTH, json={"id": "CASE-1042", "severity": "low"})
    assert response.status_code == 409
    assert "belongs to customer 'C-1001'" in response.get_json()["error"]
    assert stored_issue(demo_db, "CASE-1042")["severity"] == "high"


def test_missing_database_is_503(tmp_path):
    app = create_app({"TESTING": True, "HOLDGUARD_DB": str(tmp_path / "none.db"), "HOLDGUARD_API_TOKEN": API_TOKEN})
    response = app.test_client().get("/api/customers/C-1", headers=AUTH)
    assert response.status_code == 503
    assert "holdguard db init" in response.get_json()["error"]
    assert not (tmp_path / "none.db").exists()


@pytest.mark.sqlite_only  # a SQLite file's own lock
def test_locked_database_is_503_with_retry_after(client, demo_db):
    blocker = sqlite3.connect(demo_db)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/api/issues/CASE-1042/close", headers=AUTH)
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert stored_issue(demo_db, "CASE-1042")["closed_at"] is None


# --- hostile or oversized input: 400/413 naming the field, never 500, nothing written (issue #13) ------

def test_json_nested_too_deeply_is_400(client, demo_db):
    before = snapshot(demo_db)
    body = '{"name": ' + "[" * 1000 + "]" * 1000 + "}"
    response = client.put("/api/customers/C-1003", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "request body is nested too deeply"
    assert snapshot(demo_db) == before


@pytest.mark.parametrize("method, path, body, field", [
    ("put", "/api/customers/C-1003", '{"name": "\\ud800"}', "name"),
    ("put", "/api/customers/C-1003/products", '{"products": ["Galaxy \\udfff S7"]}', "products"),
    ("post", "/api/customers/C-1003/issues", '{"id": "X-\\ud800", "severity": "low"}', "id"),
    ("patch", "/api/issues/CASE-1042", '{"summary": "a\\ud83d"}', "summary"),
])
def test_a_lone_surrogate_is_400_naming_the_field(client, demo_db, method, path, body, field):
    before = snapshot(demo_db)
    response = getattr(client, method)(path, headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith(f"field '{field}': contains '\\ud") and error.endswith(
        "a lone surrogate (not valid Unicode text)")
    assert snapshot(demo_db) == before


def test_a_body_over_the_cap_is_413_and_writes_nothing(client, demo_db):
    before = snapshot(demo_db)
    response = client.put("/api/customers/C-1003", headers=AUTH, json={"name": "x" * (1024 * 1024)})
    assert response.status_code == 413
    assert response.get_json()["error"] == "request body too large (at most 1048576 bytes)"
    assert snapshot(demo_db) == before


def test_fields_at_their_length_limit_are_stored(client, demo_db):
    customer_id = "C" * 100
    created = client.put(f"/api/customers/{customer_id}", headers=AUTH, json={
        "phone": "+15555550188", "name": "n" * 200, "products": [f"{n:03d}" + "p" * 197 for n in range(100)]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert len(body["name"]) == 200 and len(body["products"]) == 100 and len(body["products"][0]) == 200
    issue = client.post(f"/api/customers/{customer_id}/issues", headers=AUTH,
                        json={"id": "I" * 100, "severity": "low", "summary": "s" * 2000})
    assert issue.status_code == 201 and len(issue.get_json()["summary"]) == 2000


def test_a_misspelt_field_is_reported_alone_and_other_problems_together(client, demo_db):
    typo = client.put("/api/customers/C-1003", headers=AUTH, json={"nmae": "Ria", "phone": "12"})
    assert typo.get_json()["errors"] == [
        "field 'nmae': unknown field (allowed: phone, name, products, marketing_opt_out)"]
    several = client.put("/api/customers/C-1003", headers=AUTH,
                         json={"phone": "12", "name": 3, "marketing_opt_out": "maybe"})
    assert several.status_code == 400
    assert several.get_json()["errors"] == [
        "field 'phone': '12' is not a valid phone number (too short)",
        "field 'name': 3 is not text",
        "field 'marketing_opt_out': 'maybe' is not a boolean (true/false, yes/no, 1/0)"]


# --- fuzzing: whatever the body, an answer the client can act on, never a 5xx ---------------------------

FIELDS = ["customer_id", "phone", "name", "products", "marketing_opt_out", "open_issues",
          "id", "severity", "summary", "opened_at"]
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=30)  # lone surrogates included
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
           | st.sampled_from(["low", "HIGH", "+15555550100", "(555) 555-0101", "2026-11-20T09:12:00Z",
                              "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "CASE/1", "yes"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, inner, max_size=4), max_leaves=12)
BODIES = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON_VALUES, max_size=5) | JSON_VALUES
ROUTES = [("put", "/api/customers/{}"), ("put", "/api/customers/{}/products"),
          ("post", "/api/customers/{}/issues"), ("patch", "/api/issues/{}"), ("post", "/api/issues/{}/close"),
          ("get", "/api/customers/{}"), ("get", "/api/issues/{}")]


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES),
       key=st.sampled_from(["C-1003", "CASE-1042", "a/b", "x\x00"]) | ANY_TEXT.filter(bool), body=BODIES)
def test_no_body_or_path_gets_a_server_error(client, demo_db, route, key, body):
    method, template = route
    response = getattr(client, method)(template.format(quote(key, safe="")), headers=AUTH, json=body)
    assert response.status_code in (200, 201, 400, 404, 409), (response.status_code, response.data[:300])
    if response.status_code >= 400 and response.is_json:  # not JSON: a URL no route takes ("a/b")
        assert response.get_json()["error"]


def test_a_nul_character_in_a_field_or_an_id_is_400_naming_it(client, demo_db):
    """PostgreSQL's text cannot hold NUL; no backend should be asked to."""
    before = snapshot(demo_db)
    body = client.put("/api/customers/C-1003", headers=AUTH, json={"name": "Ria\x00"})
    path = client.get("/api/issues/CASE%00-1042", headers=AUTH)
    assert (body.status_code, path.status_code) == (400, 400)
    assert body.get_json()["error"] == "field 'name': contains '\\x00', a NUL character (not storable text)"
    assert path.get_json()["error"] == "field 'issue_id': contains '\\x00', a NUL character (not storable text)"
    assert snapshot(demo_db) == before

"""The CRM's JSON API: push customers, products and issues as they change.

Every route needs `Authorization: Bearer <HOLDGUARD_API_TOKEN>`; with no token
configured the API answers 503 rather than run open. Each write is committed
before the response, and the hold webhook reads the same tables, so an issue
opened here suppresses promos from the caller's very next wait request.

    GET   /api/customers/<customer_id>            the customer with open issues
    PUT   /api/customers/<customer_id>            create/update: phone, name, products, marketing_opt_out
    PUT   /api/customers/<customer_id>/products   {"products": [...]}
    POST  /api/customers/<customer_id>/issues     open (or reopen) {id, severity, summary?, opened_at?}
    GET   /api/issues/<issue_id>
    PATCH /api/issues/<issue_id>                  {severity?, summary?}
    POST  /api/issues/<issue_id>/close            closed_at = now
"""
import hmac
import sqlite3

from flask import Blueprint, current_app, jsonify, request

from app.core.customers import (CUSTOMER_FIELDS, ISSUE_FIELDS, InvalidRecord, IssueOwnerConflict, parse_customer,
                                parse_issue, unknown_fields)
from app.storage.connect import DatabaseMissing, transaction
from app.storage.crm import (close_issue, customer_exists, customer_view, get_issue, now_text, save_customer,
                             save_issue, update_issue)
from app.web.db import get_db

bp = Blueprint("api", __name__, url_prefix="/api")

CUSTOMER_BODY_FIELDS = tuple(name for name in CUSTOMER_FIELDS if name not in ("customer_id", "open_issues"))
ISSUE_PATCH_FIELDS = ("severity", "summary")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, **extra):
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


@bp.before_request
def require_token():
    expected = current_app.config.get("HOLDGUARD_API_TOKEN") or ""
    if not expected:
        return _error(503, "API disabled: HOLDGUARD_API_TOKEN is not set on the server")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: no timing hint about how much of a guessed token was right
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        response = _error(401, "missing or wrong token: send Authorization: Bearer <HOLDGUARD_API_TOKEN>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="holdguard"'
        return response
    return None


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return _error(exc.status, str(exc))


@bp.errorhandler(InvalidRecord)
def _invalid_record(exc: InvalidRecord):
    status = 409 if isinstance(exc, IssueOwnerConflict) else 400
    return _error(status, str(exc), errors=exc.errors)


@bp.errorhandler(DatabaseMissing)
def _no_database(exc: DatabaseMissing):
    return _error(503, f"database unavailable: {exc}")


@bp.errorhandler(sqlite3.OperationalError)
def _database_busy(exc: sqlite3.OperationalError):
    response = _error(503, f"database unavailable: {exc}; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def _body(allowed: tuple[str, ...]) -> dict:
    """The request's JSON object, refusing fields the route does not take (typos must not pass silently)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object (Content-Type: application/json)")
    unknown = unknown_fields(body, allowed)
    if unknown:
        raise ApiError(400, f"field '{unknown[0]}': unknown field (allowed: {', '.join(allowed)})")
    return body


def _existing_customer(db, customer_id: str) -> None:
    if not customer_exists(db, customer_id):
        raise ApiError(404, f"no customer {customer_id!r}")


def _parse_customer(customer_id: str, body: dict):
    region = current_app.config["HOLDGUARD_DEFAULT_REGION"]
    return parse_customer({**body, "customer_id": customer_id}, region)


def _found(view: dict | None, what: str, key: str) -> dict:
    if view is None:
        raise ApiError(404, f"no {what} {key!r}")
    return view


@bp.get("/customers/<customer_id>")
def show_customer(customer_id):
    return jsonify(_found(customer_view(get_db(), customer_id), "customer", customer_id))


@bp.put("/customers/<customer_id>")
def put_customer(customer_id):
    """Create or update a customer; fields left out keep their stored value (phone needed to create)."""
    body = _body(CUSTOMER_BODY_FIELDS)
    customer = _parse_customer(customer_id, body)
    db = get_db()
    with transaction(db):
        outcome = save_customer(db, customer, now_text())
    return jsonify(customer_view(db, customer.customer_id)), 201 if outcome == "created" else 200


@bp.put("/customers/<customer_id>/products")
def put_products(customer_id):
    body = _body(("products",))
    if "products" not in body:
        raise ApiError(400, "field 'products': missing")
    if not isinstance(body["products"], list):  # the ';'-separated string form is for CSV files only
        raise ApiError(400, f"field 'products': expected a list of product names, got {body['products']!r}")
    customer = _parse_customer(customer_id, body)
    db = get_db()
    with transaction(db):
        _existing_customer(db, customer_id)
        save_customer(db, customer, now_text())
    return jsonify(customer_view(db, customer_id))


@bp.post("/customers/<customer_id>/issues")
def open_issue(customer_id):
    """Open an issue; an id seen before is updated and reopened, so CRM retries are harmless."""
    issue = parse_issue(_body(ISSUE_FIELDS))
    db = get_db()
    with transaction(db):
        _existing_customer(db, customer_id)
        outcome = save_issue(db, customer_id, issue, now_text())
    return jsonify(get_issue(db, issue.id)), 201 if outcome == "created" else 200


@bp.get("/issues/<issue_id>")
def show_issue(issue_id):
    return jsonify(_found(get_issue(get_db(), issue_id), "issue", issue_id))


@bp.patch("/issues/<issue_id>")
def patch_issue(issue_id):
    body = _body(ISSUE_PATCH_FIELDS)
    if not body:
        raise ApiError(400, f"nothing to update: give {' and/or '.join(ISSUE_PATCH_FIELDS)}")
    changes = parse_issue({**body, "id": issue_id}, partial=True)
    db = get_db()
    with transaction(db):
        view = update_issue(db, issue_id, now_text(), severity=changes.severity, summary=changes.summary)
    return jsonify(_found(view, "issue", issue_id))


@bp.post("/issues/<issue_id>/close")
def close(issue_id):
    """Close an issue now; closing a closed issue keeps its first closed_at."""
    db = get_db()
    with transaction(db):
        view = close_issue(db, issue_id, now_text())
    return jsonify(_found(view, "issue", issue_id))

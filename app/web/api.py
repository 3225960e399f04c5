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

Bodies are checked by the record rules of app.core.models (the importer's
rules, plus: only the fields a route takes). A bad body is a 400 naming the
field; a body over MAX_CONTENT_LENGTH (app.web.factory) is a 413.
"""
import hmac
import sqlite3

import psycopg

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.customers import (CustomerRecord, InvalidRecord, IssueOwnerConflict, checked, customer_record,
                                issue_record, parse_customer_id)
from app.core.models import CustomerBody, IssueBody, IssuePatch, ProductsBody, storable
from app.storage.connect import DatabaseMissing, one_line, transaction
from app.storage.crm import (close_issue, customer_exists, customer_view, get_issue, now_text, save_customer,
                             save_issue, update_issue)
from app.web.db import get_db

bp = Blueprint("api", __name__, url_prefix="/api")

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


@bp.before_request
def storable_ids_only():
    """An id in the URL that no database can hold (a NUL byte, %00) is refused before it reaches a query."""
    problems = []
    for name, value in (request.view_args or {}).items():
        try:
            storable(value)
        except ValueError as error:
            problems.append(f"field '{name}': {error}")
    if problems:
        raise InvalidRecord(problems)


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
@bp.errorhandler(psycopg.OperationalError)
def _database_busy(exc: Exception):
    """Busy, locked, down or unreachable: the CRM may retry; nothing was half-written."""
    response = _error(503, f"database unavailable: {one_line(exc)}; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge):
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return _error(413, f"request body too large (at most {limit} bytes)")


def _body(model):
    """The request's JSON object checked by `model`, which refuses fields the route does not take
    (typos must not pass silently); InvalidRecord names each bad field."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the json module gives up on very deep nesting; no body of ours nests
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object (Content-Type: application/json)")
    return checked(model, body, region=current_app.config["HOLDGUARD_DEFAULT_REGION"])


def _existing_customer(db, customer_id: str) -> None:
    if not customer_exists(db, customer_id):
        raise ApiError(404, f"no customer {customer_id!r}")


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
    customer = customer_record(parse_customer_id(customer_id), _body(CustomerBody))
    db = get_db()
    with transaction(db):
        outcome = save_customer(db, customer, now_text())
    return jsonify(customer_view(db, customer.customer_id)), 201 if outcome == "created" else 200


@bp.put("/customers/<customer_id>/products")
def put_products(customer_id):
    customer = CustomerRecord(customer_id, products=_body(ProductsBody).products)
    db = get_db()
    with transaction(db):
        _existing_customer(db, customer_id)
        save_customer(db, customer, now_text())
    return jsonify(customer_view(db, customer_id))


@bp.post("/customers/<customer_id>/issues")
def open_issue(customer_id):
    """Open an issue; an id seen before is updated and reopened, so CRM retries are harmless."""
    issue = issue_record(_body(IssueBody))
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
    changes = _body(IssuePatch)
    if not changes.model_fields_set:
        raise ApiError(400, f"nothing to update: give {' and/or '.join(IssuePatch.model_fields)}")
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

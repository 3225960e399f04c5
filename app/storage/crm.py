"""Customers, their products and open issues in the database; the caller the policy sees; the
suppression list marketing imports.

Every write that reads first runs in `transaction(db)` (BEGIN IMMEDIATE), so
an import or an API write waits for the webhook's short writes instead of
failing with "database is locked".
"""
import json
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from app.core.customers import (CustomerRecord, ImportFileError, InvalidRecord, IssueOwnerConflict, IssueRecord,
                                RowError, read_records)
from app.core.phones import to_e164
from app.core.policy import SEVERITIES, Caller, Issue
from app.core.suppression import HEADER, MARKETING_OPT_OUT, OPEN_ISSUE
from app.core.times import format_utc, utc_now
from app.storage.connect import WriterPacing, transaction

__all__ = ["ImportFileError"]  # raised by import_customers, defined with the file rules


def now_text() -> str:
    return format_utc(utc_now())


def _row(db, table: str, key_column: str, key: str) -> dict | None:
    rows = db.query(f'select * from "{table}" where "{key_column}" = ?', [key])
    return rows[0] if rows else None


def save_customer(db, customer: CustomerRecord, now: str) -> str:
    """Create or update a customer and, when given, their open issues.

    Returns "created", "updated" or "unchanged". Call inside `transaction(db)` so
    the customer and their issues land together or not at all.
    """
    existing = _row(db, "customers", "customer_id", customer.customer_id)
    if existing is None and customer.phone_e164 is None:
        raise InvalidRecord(["field 'phone': missing (required for a new customer)"])
    old = existing or {"name": "", "products": "[]", "marketing_opt_out": 0}
    row = {
        "customer_id": customer.customer_id,
        "phone_e164": customer.phone_e164 or old.get("phone_e164"),
        "name": old["name"] if customer.name is None else customer.name,
        "products": old["products"] if customer.products is None else json.dumps(customer.products),
        "marketing_opt_out": old["marketing_opt_out"] if customer.marketing_opt_out is None
        else int(customer.marketing_opt_out),
    }
    customer_changed = existing is None or any(existing[key] != value for key, value in row.items())
    if customer_changed:
        db["customers"].upsert({**row, "opted_out_at": _opted_out_at(old, row, now), "updated_at": now},
                               pk="customer_id")
    issues_changed = False
    if customer.open_issues is not None:
        for issue in customer.open_issues:
            issues_changed |= save_issue(db, customer.customer_id, issue, now) != "unchanged"
        kept_ids = [issue.id for issue in customer.open_issues]
        issues_changed |= close_issues_except(db, customer.customer_id, kept_ids, now) > 0
    if existing is None:
        return "created"
    return "updated" if customer_changed or issues_changed else "unchanged"


def _opted_out_at(old: dict, row: dict, now: str) -> str | None:
    """When the customer opted out: kept while they stay out (it is the suppression's start)."""
    if not row["marketing_opt_out"]:
        return None
    return old.get("opted_out_at") if old["marketing_opt_out"] and old.get("opted_out_at") else now


def save_issue(db, customer_id: str, issue: IssueRecord, now: str) -> str:
    """Open (or reopen, or update) an issue of this customer.

    Returns "created", "updated" or "unchanged"; raises IssueOwnerConflict if
    the id belongs to another customer (a CRM id mix-up should not silently
    move a case).
    """
    existing = _row(db, "issues", "id", issue.id)
    if existing is not None and existing["customer_id"] != customer_id:
        raise IssueOwnerConflict([f"field 'id': issue {issue.id!r} belongs to customer "
                                  f"{existing['customer_id']!r}, not {customer_id!r}"])
    old = existing or {"summary": "", "opened_at": now, "severity": None}
    row = {
        "id": issue.id,
        "customer_id": customer_id,
        "severity": issue.severity or old["severity"],
        "summary": old["summary"] if issue.summary is None else issue.summary,
        "opened_at": issue.opened_at or old["opened_at"],
        "closed_at": None,
    }
    if existing is not None and all(existing[key] == value for key, value in row.items()):
        return "unchanged"
    db["issues"].upsert({**row, "updated_at": now}, pk="id")
    return "created" if existing is None else "updated"


def update_issue(db, issue_id: str, now: str, *, severity: str | None = None,
                 summary: str | None = None) -> dict | None:
    """Change an issue's severity and/or summary, open or closed; None if there is no such issue."""
    existing = _row(db, "issues", "id", issue_id)
    if existing is None:
        return None
    changes = {key: value for key, value in (("severity", severity), ("summary", summary))
               if value is not None and existing[key] != value}
    if changes:
        db["issues"].update(issue_id, {**changes, "updated_at": now})
    return get_issue(db, issue_id)


def close_issue(db, issue_id: str, now: str) -> dict | None:
    """Close an issue (already closed: kept as closed then); None if there is no such issue."""
    existing = _row(db, "issues", "id", issue_id)
    if existing is None:
        return None
    if existing["closed_at"] is None:
        db["issues"].update(issue_id, {"closed_at": now, "updated_at": now})
    return get_issue(db, issue_id)


def close_issues_except(db, customer_id: str, kept_ids: list[str], now: str) -> int:
    """Close this customer's open issues whose ids are not in kept_ids; returns how many."""
    kept = f"and id not in ({', '.join('?' for _ in kept_ids)})" if kept_ids else ""
    cursor = db.execute(
        f"update issues set closed_at = ?, updated_at = ? where customer_id = ? and closed_at is null {kept}",
        [now, now, customer_id, *kept_ids],
    )
    return cursor.rowcount


def issue_view(row: dict) -> dict:
    """An issue as the API and `customers show --json` present it."""
    return {**row, "open": row["closed_at"] is None}


def customer_exists(db, customer_id: str) -> bool:
    return _row(db, "customers", "customer_id", customer_id) is not None


def get_issue(db, issue_id: str) -> dict | None:
    """An issue (open or closed) as issue_view presents it; None if unknown."""
    row = _row(db, "issues", "id", issue_id)
    return issue_view(row) if row else None


def customer_view(db, customer_id: str) -> dict | None:
    """A customer with products as a list, opt-out as a bool and their open issues; None if unknown."""
    row = _row(db, "customers", "customer_id", customer_id)
    if row is None:
        return None
    open_issues = db.execute(
        "select * from issues where customer_id = ? and closed_at is null order by opened_at, id",
        [customer_id],
    )
    columns = [description[0] for description in open_issues.description]
    return {
        **row,
        "products": json.loads(row["products"] or "[]"),
        "marketing_opt_out": bool(row["marketing_opt_out"]),
        "open_issues": [issue_view(dict(zip(columns, found))) for found in open_issues.fetchall()],
    }


def find_customer_ids(db, phone_or_id: str, default_region: str) -> list[str]:
    """Customers whose id is `phone_or_id`, else whose phone matches it once normalised."""
    if customer_exists(db, phone_or_id.strip()):
        return [phone_or_id.strip()]
    try:
        phone_e164 = to_e164(phone_or_id, default_region)
    except ValueError:
        return []
    found = db.execute("select customer_id from customers where phone_e164 = ? order by customer_id",
                       [phone_e164])
    return [customer_id for (customer_id,) in found.fetchall()]


# --- import ---------------------------------------------------------------------

@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0  # customers (or lines without one) not imported
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"imported {len(self.created)}, updated {len(self.updated)}, rejected {self.rejected}"
        return line + (f" ({len(self.unchanged)} unchanged)" if self.unchanged else "")


def import_customers(db, path, default_region: str = "US", *, now: str | None = None,
                     progress: bool = False) -> ImportReport:
    """Import a customers file (JSON list or CSV) into `db`, each customer in its own transaction.

    Bad rows are collected in the report and skipped; good rows still land.
    Raises ImportFileError, writing nothing, if the file cannot be read at all.
    """
    path = Path(path)
    now = now or now_text()
    records, warnings = read_records(path, default_region)
    report = ImportReport(warnings=warnings)
    pacing = WriterPacing()  # the webhook gets the write lock between customers
    # disable=None: a bar on a terminal only, never in logs or pipes
    for record in tqdm(records, desc="customers", unit="row", disable=None if progress else True,
                       leave=False):
        if record.customer is None:
            report.errors.extend(record.errors)
            report.rejected += 1
            continue
        try:
            with transaction(db):
                outcome = save_customer(db, record.customer, now)
            pacing.after_commit()
        except InvalidRecord as exc:
            report.errors.extend(RowError(path, record.location, error) for error in exc.errors)
            report.rejected += 1
            continue
        getattr(report, outcome).append(record.customer.customer_id)
    return report


# --- the caller, as the policy sees them ---------------------------------------------

def _products(customer_id: str, text: str | None) -> tuple[str, ...]:
    """customers.products is JSON list text; anything else is a fault (the caller then hears music)."""
    try:
        products = json.loads(text) if text else []
    except json.JSONDecodeError:
        products = None
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        raise ValueError(f"customers.products of {customer_id} is not a JSON list of names: {text!r}")
    return tuple(products)


def _flag(value) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "no", "none")


def load_caller(db, phone_e164: str | None) -> Caller | None:
    """The customer calling from this number with their open issues; None if unknown.

    Several customers on one number (a family plan) merge the cautious way: every
    product, every open issue, and opted out if any of them opted out.
    """
    if not phone_e164:
        return None
    # One query: each customer on this number, once per open issue (or once with no issue).
    rows = list(db.query("SELECT c.customer_id, c.name, c.products, c.marketing_opt_out, "
                         "i.id AS issue_id, i.severity, i.summary FROM customers c "
                         "LEFT JOIN issues i ON i.customer_id = c.customer_id "
                         "AND (i.closed_at IS NULL OR i.closed_at = '') "
                         "WHERE c.phone_e164 = ? ORDER BY c.customer_id, i.opened_at, i.id", [phone_e164]))
    if not rows:
        return None
    products = []
    for row in {row["customer_id"]: row for row in rows}.values():
        products += [p for p in _products(row["customer_id"], row["products"]) if p not in products]
    return Caller(
        phone_e164=phone_e164, customer_id=rows[0]["customer_id"], name=rows[0]["name"] or "",
        products=tuple(products),
        open_issues=tuple(Issue(r["issue_id"], r["severity"] or "", r["summary"] or "")
                          for r in rows if r["issue_id"] is not None),
        marketing_opt_out=any(_flag(row["marketing_opt_out"]) for row in rows),
    )


def issues_open_at(db, phone_e164: str, at: str) -> list[Issue]:
    """The issues of the customers on `phone_e164` that were open at `at` (stored form, as calls.started_at).

    Open at `at`: opened_at <= at and not closed by then (closed_at IS NULL or > at). Every time
    is in the one stored form, so they compare as text. An empty time (old rows) counts as none:
    no opening time means "always was", no closing time "still open".
    Same order as load_caller: by customer, then opening time. A missing severity counts as medium.
    """
    rows = db.query("select i.id, i.severity, i.summary from customers c "
                    "join issues i on i.customer_id = c.customer_id "
                    "where c.phone_e164 = ? "
                    "and (coalesce(i.opened_at, '') = '' or i.opened_at <= ?) "
                    "and (coalesce(i.closed_at, '') = '' or i.closed_at > ?) "
                    "order by c.customer_id, i.opened_at, i.id", [phone_e164, at, at])
    return [Issue(row["id"], row["severity"] or "medium", row["summary"] or "") for row in rows]


def save_caller(db, caller: Caller, at: str) -> None:
    """Write a customer and their open issues (the shape the CRM import writes); replaces both."""
    with transaction(db):
        db["customers"].upsert({
            "customer_id": caller.customer_id, "phone_e164": caller.phone_e164, "name": caller.name,
            "products": json.dumps(list(caller.products)),
            "marketing_opt_out": int(caller.marketing_opt_out), "updated_at": at,
        }, pk="customer_id")
        db.execute("DELETE FROM issues WHERE customer_id = ?", [caller.customer_id])
        db["issues"].insert_all([{
            "id": issue.id, "customer_id": caller.customer_id, "severity": issue.severity,
            "summary": issue.summary, "opened_at": at, "closed_at": None, "updated_at": at,
        } for issue in caller.open_issues], pk="id")


def customer_names(db) -> dict[str, str]:
    return {row["customer_id"]: row["name"] for row in db.query("select customer_id, name from customers")}


def open_issue_summaries(db) -> dict[str, str]:
    return {row["id"]: row["summary"] for row in db.query("select id, summary from issues where closed_at is null")}


# --- the suppression list ------------------------------------------------------------

def suppression_rows(db, now: datetime | str, min_severity: str = "low") -> list[dict]:
    """Rows keyed by app.core.suppression.HEADER, sorted by customer; `now` is the generated_at.

    Only open issues (closed_at IS NULL) at or above `min_severity` count; an
    opt-out always does. Empty case_id/severity are "" so templates and CSV show blanks.
    """
    generated_at = format_utc(now) if isinstance(now, datetime) else now
    counted = list(SEVERITIES[SEVERITIES.index(min_severity):])
    placeholders = ", ".join("?" for _ in counted)
    cursor = db.execute(
        f"""
        select c.customer_id, c.phone_e164, '{OPEN_ISSUE}', i.id, i.severity, i.opened_at
          from issues i join customers c on c.customer_id = i.customer_id
         where i.closed_at is null and i.severity in ({placeholders})
        union all
        select customer_id, phone_e164, '{MARKETING_OPT_OUT}', '', '', coalesce(opted_out_at, updated_at)
          from customers
         where marketing_opt_out = 1
        order by 1, 3, 4
        """,
        counted,
    )
    return [dict(zip(HEADER, (*found, generated_at))) for found in cursor.fetchall()]

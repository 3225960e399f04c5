"""Customers, their products and open issues: validate records, save them, import CRM files.

The same record rules serve `holdguard customers import` and the CRM JSON API
(app/api.py), so a value the API refuses is refused by the importer too, with
the same message.

A field that is absent is left as it is on an existing customer (a phone-book
CSV must not wipe products or close issues); a field that is present is the
new truth. `open_issues`, when present, is a snapshot: issues of that customer
that are open here but missing from it are closed.
"""
import csv
import io
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import click
from tqdm import tqdm

from app.db import db_option
from app.phones import to_e164
from app.policy import SEVERITIES

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0"}

CUSTOMER_FIELDS = ("customer_id", "phone", "name", "products", "marketing_opt_out", "open_issues")
ISSUE_FIELDS = ("id", "severity", "summary", "opened_at")
CSV_ISSUE_COLUMNS = tuple(f"issue_{name}" for name in ISSUE_FIELDS)


# --- time -----------------------------------------------------------------

def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with Z, to the second: the one timestamp form in holdguard's tables."""
    return moment.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)


def utc_now() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def parse_timestamp(value) -> str:
    """Normalise an ISO 8601 timestamp with a timezone ("...Z" or "+02:00") to UTC with Z."""
    example = "e.g. 2026-11-20T09:12:00Z"
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp ({example})")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp ({example})") from None
    if moment.tzinfo is None:
        # Guessing a zone could move suppress_from by hours: ask for it instead.
        raise ValueError(f"{value!r} has no timezone (add Z for UTC, {example})")
    return format_timestamp(moment)


# --- records ----------------------------------------------------------------

class InvalidRecord(ValueError):
    """One or more fields of a record are wrong; each message reads "field 'x': why"."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class IssueOwnerConflict(InvalidRecord):
    """An issue id that already belongs to another customer."""


@dataclass
class Issue:
    id: str
    severity: str | None = None  # None only in partial updates
    summary: str | None = None
    opened_at: str | None = None


@dataclass
class Customer:
    """A customer as given by a file row or an API call; None = not given, keep what is stored."""
    customer_id: str
    phone_e164: str | None = None
    name: str | None = None
    products: list[str] | None = None
    marketing_opt_out: bool | None = None
    open_issues: list[Issue] | None = None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_identifier(value) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{_short(value)} is not an id (text or a whole number)")
    return str(value).strip()


def parse_severity(value) -> str:
    severity = value.strip().lower() if isinstance(value, str) else value
    if severity not in SEVERITIES:
        raise ValueError(f"{value!r} is not one of {'|'.join(SEVERITIES)}")
    return severity


def parse_bool(value) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, 1/0)")


def parse_products(value) -> list[str]:
    """A list of product names, or one string with names separated by ';' (CSV)."""
    if value is None:
        return []
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{value!r} is not a list of product names")
    return [item.strip() for item in items if item.strip()]


def parse_text(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value.strip()


class _FieldReader:
    """Parses named fields of one record, collecting every error instead of stopping at the first."""

    def __init__(self, record: dict, prefix: str = ""):
        self.record = record
        self.prefix = prefix  # "open_issues[2]." or "issue_" for nested issue fields
        self.errors: list[str] = []

    def get(self, name: str, parse, *, required: bool = False):
        if name not in self.record:
            if required:
                self.errors.append(f"field '{self.prefix}{name}': missing")
            return None
        try:
            return parse(self.record[name])
        except InvalidRecord as exc:  # nested records name their own fields
            self.errors.extend(exc.errors)
        except ValueError as exc:
            self.errors.append(f"field '{self.prefix}{name}': {exc}")
        return None


def parse_issue(record, prefix: str = "", *, partial: bool = False) -> Issue:
    """An issue from {id, severity, summary, opened_at}; partial=True makes severity optional.

    `prefix` names where the issue sits in a bigger record, for error messages.
    """
    if not isinstance(record, dict):
        where = prefix.rstrip("._") or "issue"
        raise InvalidRecord([f"field '{where}': expected an object with id and severity, "
                             f"got {_short(record)}"])
    reader = _FieldReader(record, prefix)
    issue = Issue(
        id=reader.get("id", parse_identifier, required=True),
        severity=reader.get("severity", parse_severity, required=not partial),
        summary=reader.get("summary", parse_text),
        opened_at=reader.get("opened_at", parse_timestamp),
    )
    if reader.errors:
        raise InvalidRecord(reader.errors)
    return issue


def parse_issue_list(value) -> list[Issue]:
    """The `open_issues` field: a list of issue objects (or, in CSV, that list as JSON text)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of issues, got {_short(value)}")
    issues, errors = [], []
    for index, item in enumerate(value):
        try:
            issues.append(parse_issue(item, f"open_issues[{index}]."))
        except InvalidRecord as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicate_issue_errors(issues))
    if errors:
        raise InvalidRecord(errors)
    return issues


def _duplicate_issue_errors(issues: list[Issue]) -> list[str]:
    seen, errors = set(), []
    for issue in issues:
        if issue.id in seen:
            errors.append(f"field 'open_issues': issue {issue.id!r} listed twice")
        seen.add(issue.id)
    return errors


def parse_customer(record: dict, default_region: str) -> Customer:
    """A Customer from a dict keyed like the import file; raises InvalidRecord listing every bad field."""
    reader = _FieldReader(record)
    customer = Customer(
        customer_id=reader.get("customer_id", parse_identifier, required=True),
        phone_e164=reader.get("phone", lambda raw: to_e164(raw, default_region)),
        name=reader.get("name", parse_text),
        products=reader.get("products", parse_products),
        marketing_opt_out=reader.get("marketing_opt_out", parse_bool),
        open_issues=reader.get("open_issues", parse_issue_list),
    )
    if reader.errors:
        raise InvalidRecord(reader.errors)
    return customer


def unknown_fields(record: dict, known) -> list[str]:
    return [name for name in record if name not in known]


# --- storage ------------------------------------------------------------------

def _row(db, table: str, key_column: str, key: str) -> dict | None:
    cursor = db.execute(f"select * from [{table}] where [{key_column}] = ?", [key])
    columns = [description[0] for description in cursor.description]
    found = cursor.fetchone()
    return dict(zip(columns, found)) if found else None


def save_customer(db, customer: Customer, now: str) -> str:
    """Create or update a customer and, when given, their open issues.

    Returns "created", "updated" or "unchanged". Call inside `db.atomic()` so
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


def save_issue(db, customer_id: str, issue: Issue, now: str) -> str:
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
    placeholders = ", ".join("?" for _ in kept_ids)
    cursor = db.execute(
        "update issues set closed_at = ?, updated_at = ? "
        f"where customer_id = ? and closed_at is null and id not in ({placeholders})",
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


# --- reading files ------------------------------------------------------------

class ImportFileError(Exception):
    """The file cannot be read at all; nothing is written."""


@dataclass
class RowError:
    path: Path
    location: str  # CSV line number, or "item N" (JSON list index)
    message: str

    def __str__(self):
        return f"{self.path}:{self.location}: {self.message}"


@dataclass
class SourceRecord:
    """One customer from the file, parsed, or the errors that stop it from being imported."""
    location: str
    customer: Customer | None
    errors: list[RowError] = field(default_factory=list)


def read_records(path: Path, default_region: str) -> tuple[list[SourceRecord], list[str]]:
    """Parse a JSON list or CSV file into records; returns (records, warnings)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel's CSV starts with a BOM
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start}); "
                              "save the file as UTF-8") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if _looks_like_json(path, text):
        return _json_records(path, text, default_region)
    return _csv_records(path, text, default_region)


def _looks_like_json(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix == ".json"
    return text.lstrip()[:1] in ("[", "{")


def _json_records(path: Path, text: str, default_region: str):
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(items, list):
        raise ImportFileError(f"{path}: expected a JSON list of customers, got {type(items).__name__}")
    records, unknown, first_seen = [], {}, {}
    for index, item in enumerate(items):
        location = f"item {index}"
        if not isinstance(item, dict):
            error = RowError(path, location, f"expected an object with customer_id, got {_short(item)}")
            records.append(SourceRecord(location, None, [error]))
            continue
        for name in unknown_fields(item, CUSTOMER_FIELDS):
            unknown.setdefault(name, location)
        record = _parsed(path, location, item, default_region)
        if record.customer is not None:
            customer_id = record.customer.customer_id
            if customer_id in first_seen:
                record = SourceRecord(location, None, [RowError(
                    path, location, f"field 'customer_id': {customer_id!r} "
                                    f"already given at {first_seen[customer_id]}")])
            first_seen.setdefault(customer_id, location)
        records.append(record)
    warnings = [f"{path}:{where}: ignoring unknown field {name!r} (and in any later items)"
                for name, where in unknown.items()]
    return records, warnings


def _parsed(path: Path, location: str, record: dict, default_region: str) -> SourceRecord:
    try:
        return SourceRecord(location, parse_customer(record, default_region))
    except InvalidRecord as exc:
        return SourceRecord(location, None, [RowError(path, location, error) for error in exc.errors])


def _csv_records(path: Path, text: str, default_region: str):
    """CSV: one customer per line, or several lines per customer, one issue each (see --help)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _csv_header(path, reader)
    known = CUSTOMER_FIELDS + CSV_ISSUE_COLUMNS
    warnings = [f"{path}:1: ignoring unknown column {name!r}" for name in header
                if name and name not in known]
    groups: dict[str, list[SourceRecord]] = {}
    loose: list[SourceRecord] = []  # lines that name no customer
    for line_number, cells, error in _csv_lines(reader):
        location = str(line_number)
        if error is None and len(cells) != len(header):
            error = f"has {len(cells)} fields, the header has {len(header)}"
        if error is not None:
            loose.append(SourceRecord(location, None, [RowError(path, location, error)]))
            continue
        line = {name: value for name, value in zip(header, cells) if value.strip()}
        record = _csv_line_record(path, location, line, default_region)
        customer_id = line.get("customer_id", "").strip()
        (groups.setdefault(customer_id, []) if customer_id else loose).append(record)
    has_issues = "open_issues" in header or "issue_id" in header
    records = [_merge_csv_group(path, lines, header, has_issues) for lines in groups.values()]
    records.extend(loose)
    records.sort(key=lambda record: int(record.location))
    return records, warnings


def _csv_header(path: Path, reader) -> list[str]:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"{path}:1: malformed CSV header: {exc}") from None
    if not header:
        raise ImportFileError(f"{path}: empty file (expected a CSV header row with customer_id)")
    header = [name.strip().lower() for name in header]
    if "customer_id" not in header:
        # Excel's "CSV" in many locales separates columns with ';'
        if len(header) == 1 and "customer_id" in [name.strip() for name in header[0].split(";")]:
            raise ImportFileError(f"{path}:1: columns are separated by ';': save it as comma-separated CSV "
                                  "(';' separates the products inside the products column)")
        raise ImportFileError(f"{path}:1: no 'customer_id' column (columns: {', '.join(header)})")
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise ImportFileError(f"{path}:1: column {duplicated[0]!r} appears twice in the header")
    return header


def _csv_lines(reader):
    """Yield (first line number, cells, error) per CSV record after the header, skipping blank lines."""
    while True:
        first_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield first_line, [], f"malformed CSV: {exc}"
            continue
        if cells:
            yield first_line, cells, None


def _csv_line_record(path: Path, location: str, line: dict, default_region: str) -> SourceRecord:
    """Parse one CSV line: customer fields plus at most one issue from the issue_* columns."""
    issue_cells = {column[len("issue_"):]: line.pop(column) for column in CSV_ISSUE_COLUMNS
                   if column in line}
    record = _parsed(path, location, line, default_region)
    if issue_cells:
        try:
            issue = parse_issue(issue_cells, "issue_")
        except InvalidRecord as exc:
            record.customer = None
            record.errors.extend(RowError(path, location, error) for error in exc.errors)
        else:
            if record.customer is not None:
                record.customer.open_issues = (record.customer.open_issues or []) + [issue]
    return record


def _merge_csv_group(path: Path, lines: list[SourceRecord], header: list[str],
                     has_issues: bool) -> SourceRecord:
    """One customer from its lines: the first value of each field wins, a different later one is an error."""
    first = lines[0]
    errors = [error for line in lines for error in line.errors]
    if errors:
        return SourceRecord(first.location, None, errors)
    merged = Customer(first.customer.customer_id)
    given_at: dict[str, str] = {}
    for line in lines:
        for name in ("phone_e164", "name", "products", "marketing_opt_out"):
            value = getattr(line.customer, name)
            if value is None:
                continue
            if name not in given_at:
                setattr(merged, name, value)
                given_at[name] = line.location
            elif value != getattr(merged, name):
                label = "phone" if name == "phone_e164" else name
                message = (f"field '{label}': {value!r} differs from line {given_at[name]} "
                           "for the same customer")
                errors.append(RowError(path, line.location, message))
        merged.open_issues = (merged.open_issues or []) + (line.customer.open_issues or [])
    errors.extend(RowError(path, first.location, error)
                  for error in _duplicate_issue_errors(merged.open_issues))
    if errors:
        return SourceRecord(first.location, None, errors)
    # A column that is in the file but blank for this customer means "none", not "unknown".
    defaults = {"name": "", "products": [], "marketing_opt_out": False}
    for name, default in defaults.items():
        if name in header and getattr(merged, name) is None:
            setattr(merged, name, default)
    if not has_issues:
        merged.open_issues = None
    return SourceRecord(first.location, merged)


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
    now = now or utc_now()
    records, warnings = read_records(path, default_region)
    report = ImportReport(warnings=warnings)
    # disable=None: a bar on a terminal only, never in logs or pipes
    for record in tqdm(records, desc="customers", unit="row", disable=None if progress else True,
                       leave=False):
        if record.customer is None:
            report.errors.extend(record.errors)
            report.rejected += 1
            continue
        try:
            with db.atomic():
                outcome = save_customer(db, record.customer, now)
        except InvalidRecord as exc:
            report.errors.extend(RowError(path, record.location, error) for error in exc.errors)
            report.rejected += 1
            continue
        getattr(report, outcome).append(record.customer.customer_id)
    return report


# --- CLI --------------------------------------------------------------------------

def region_option(function):
    return click.option("--region", envvar="HOLDGUARD_DEFAULT_REGION", default="US", show_default=True,
                        help="Region for phone numbers written without +country code "
                             "(ISO code such as US, GB; env HOLDGUARD_DEFAULT_REGION).")(function)


def open_existing_db(db_path: str):
    """Open an initialised database, or stop with a one-line error saying what to run."""
    from app.db import connect

    try:
        db = connect(db_path, create=False)
        tables = set(db.table_names())
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{db_path}: not a usable SQLite database ({exc})") from None
    if not {"customers", "issues"} <= tables:
        raise click.ClickException(f"{db_path}: no customers table (run `holdguard db init --db {db_path}`)")
    return db


def _check_region(region: str) -> str:
    import phonenumbers

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise click.BadParameter(f"{region!r} is not a region code (e.g. US, GB, DE)", param_hint="--region")
    return region.upper()


@click.group("customers")
def customers_group():
    """Customers, their products and open issues (what the hold policy reads)."""


@customers_group.command("import", short_help="Import customers and open issues from a JSON or CSV file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@region_option
def import_command(file, db_path, region):
    """Import customers from FILE (JSON list or CSV, by extension, else sniffed).

    Rows are keyed by customer_id; a customer already in the database is
    updated in place. Each customer is written in its own transaction, so a
    bad row is reported (FILE:LINE: reason) and skipped while good rows land.
    Exit code 1 if any row was rejected or the file cannot be read.

    \b
    JSON: a list of objects
      [{"customer_id": "C-1001", "phone": "+1 555 555 0100", "name": "Dana Reyes",
        "products": ["Galaxy S7"], "marketing_opt_out": false,
        "open_issues": [{"id": "CASE-1042", "severity": "high",
                         "summary": "Reboots during calls",
                         "opened_at": "2026-11-20T09:12:00Z"}]}]
    Errors name the list index: "FILE:item 3: ...".

    \b
    CSV: header row, UTF-8, columns
      customer_id,phone,name,products,marketing_opt_out,
      issue_id,issue_severity,issue_summary,issue_opened_at
    products: names separated by ';'.  marketing_opt_out: true/false,
    yes/no, 1/0.  One open issue per line: a customer with several issues
    takes several lines with the same customer_id (customer columns may be
    left blank on the extra lines).  An `open_issues` column holding the
    JSON list is accepted too.  Errors name the CSV line: "FILE:7: ...".

    \b
    Rules:
      phone        normalised to E.164; national numbers read in --region
      severity     low | medium | high | critical
      opened_at    ISO 8601 with timezone, e.g. 2026-11-20T09:12:00Z
                   (missing: kept, or now for a new issue)
      open_issues  a snapshot: this customer's open issues missing from it
                   are closed.  A file with no issue field/columns leaves
                   issues untouched; likewise an absent products/name/opt-out
                   field is kept as stored.  Customers not in the file are
                   never touched.

    \b
    Example:
      holdguard customers import crm.csv --region GB
    """
    region = _check_region(region)
    db = open_existing_db(db_path)
    try:
        report = import_customers(db, file, region, progress=True)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"{db_path}: {exc} (customers before the failure are saved; "
                                   "re-running the import is safe)") from None
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for error in report.errors:
        click.echo(str(error), err=True)
    click.echo(report.summary())
    if report.rejected:
        raise SystemExit(1)


@customers_group.command("show", short_help="Show a customer (by phone or id) with products and open issues.")
@click.argument("phone_or_id")
@db_option
@region_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as the API's GET /api/customers/ID).")
def show_command(phone_or_id, db_path, region, as_json):
    """Show the customer(s) with this phone number (any format) or customer_id.

    \b
    Example:
      holdguard customers show "(555) 555-0100"
    """
    region = _check_region(region)
    db = open_existing_db(db_path)
    customers = [customer_view(db, customer_id) for customer_id in find_customer_ids(db, phone_or_id, region)]
    if not customers:
        raise click.ClickException(f"no customer with phone or id {phone_or_id!r}")
    if as_json:
        click.echo(json.dumps(customers if len(customers) > 1 else customers[0], indent=2))
        return
    for customer in customers:
        click.echo(_describe(customer))


def _describe(customer: dict) -> str:
    lines = [
        f"{customer['customer_id']}  {customer['name'] or '(no name)'}  {customer['phone_e164']}",
        f"  products:  {', '.join(customer['products']) or '(none)'}",
        f"  marketing: {'opted out' if customer['marketing_opt_out'] else 'allowed'}"
        f"  (updated {customer['updated_at']})",
    ]
    if not customer["open_issues"]:
        lines.append("  open issues: none")
    else:
        lines.append("  open issues:")
        lines.extend(f"    {issue['id']}  {issue['severity']:<8}  opened {issue['opened_at']}  "
                     f"{issue['summary']}" for issue in customer["open_issues"])
    return "\n".join(lines)

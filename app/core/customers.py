"""Customer records: the rules a CRM file row or API body must meet, and reading CRM files.

The same record rules serve `holdguard customers import` and the CRM JSON API
(app/web/api.py), so a value the API refuses is refused by the importer too,
with the same message. The rules are pydantic models (app.core.models);
this module names each problem's field. app.storage.crm saves what passes.

A field that is absent is left as it is on an existing customer (a phone-book
CSV must not wipe products or close issues); a field that is present is the
new truth. `open_issues`, when present, is a snapshot: issues of that customer
that are open here but missing from it are closed.
"""
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from app.core.models import CustomerFields, CustomerKey, IssueChanges, IssueFields, path, problems
from app.core.models import short as _short

CUSTOMER_FIELDS = tuple(CustomerFields.model_fields)
ISSUE_FIELDS = tuple(IssueFields.model_fields)
CSV_ISSUE_COLUMNS = tuple(f"issue_{name}" for name in ISSUE_FIELDS)


# --- records ----------------------------------------------------------------

class InvalidRecord(ValueError):
    """One or more fields of a record are wrong; each message reads "field 'x': why"."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class IssueOwnerConflict(InvalidRecord):
    """An issue id that already belongs to another customer."""


@dataclass
class IssueRecord:
    id: str
    severity: str | None = None  # None only in partial updates
    summary: str | None = None
    opened_at: str | None = None


@dataclass
class CustomerRecord:
    """A customer as given by a file row or an API call; None = not given, keep what is stored."""
    customer_id: str
    phone_e164: str | None = None
    name: str | None = None
    products: list[str] | None = None
    marketing_opt_out: bool | None = None
    open_issues: list[IssueRecord] | None = None


def checked(model: type[BaseModel], record, prefix: str = "", **context):
    """`record` validated by `model` (app.core.models); InvalidRecord naming every bad field.

    `prefix` names where the record sits in a bigger one ("issue_" for a CSV line's issue
    columns). A field the model does not take is reported alone: a misspelt field also
    makes the one it meant look missing.
    """
    try:
        return model.model_validate(record, context=context)
    except ValidationError as error:
        found = problems(error)
        unknown = [problem for problem in found if problem.kind == "extra_forbidden"]
        allowed = ", ".join(name for name in model.model_fields)
        messages = []
        for problem in unknown or found:
            where = prefix + path(problem.loc)
            if problem.kind == "extra_forbidden":
                messages.append(f"field '{where}': unknown field (allowed: {allowed})")
            elif problem.kind == "model_type":  # an issue that is no object
                messages.append(f"field '{where.rstrip('._') or 'issue'}': expected an object with id and "
                                f"severity, got {_short(problem.value)}")
            else:
                messages.append(f"field '{where}': {problem.text}")
        raise InvalidRecord(messages) from None


def issue_record(fields: IssueFields | IssueChanges) -> IssueRecord:
    return IssueRecord(fields.id, fields.severity, fields.summary, fields.opened_at)


def parse_issue(record, prefix: str = "", *, partial: bool = False) -> IssueRecord:
    """An issue from {id, severity, summary, opened_at}; partial=True makes severity optional."""
    return issue_record(checked(IssueChanges if partial else IssueFields, record, prefix))


def customer_record(customer_id: str, fields) -> CustomerRecord:
    """A CustomerRecord from validated fields (CustomerFields, or an API body without the id)."""
    issues = getattr(fields, "open_issues", None)
    return CustomerRecord(customer_id, phone_e164=fields.phone, name=fields.name, products=fields.products,
                          marketing_opt_out=fields.marketing_opt_out,
                          open_issues=None if issues is None else [issue_record(issue) for issue in issues])


def parse_customer(record: dict, default_region: str) -> CustomerRecord:
    """A CustomerRecord from a dict keyed like the import file; raises InvalidRecord listing every bad field."""
    fields = checked(CustomerFields, record, region=default_region)
    return customer_record(fields.customer_id, fields)


def parse_customer_id(value) -> str:
    """A customer id given apart from the record (the API's URL), by the same rule."""
    return checked(CustomerKey, {"customer_id": value}).customer_id


def _duplicate_issue_errors(issues: list[IssueRecord]) -> list[str]:
    seen, errors = set(), []
    for issue in issues:
        if issue.id in seen:
            errors.append(f"field 'open_issues': issue {issue.id!r} listed twice")
        seen.add(issue.id)
    return errors


def unknown_fields(record: dict, known) -> list[str]:
    return [name for name in record if name not in known]


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
    customer: CustomerRecord | None
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
    merged = CustomerRecord(first.customer.customer_id)
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


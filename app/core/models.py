"""What valid input looks like, as pydantic models: hold flow tables, customer and issue
records, audit context files and the CRM API's bodies.

pydantic checks the shapes (objects, lists, required and unknown keys), the types and
the bounds, and collects every problem of a document in one pass, each at its location.
The wording stays holdguard's own: a type that has a rule a person must read (a
severity, a phone number, a URL Twilio can fetch) says it with `worded()` or raises
`invalid()`, and each reader (app.core.flows, app.core.customers, audits.context)
turns a location into the place its users know: `segment 'galaxy-upgrade': ...`,
`field 'open_issues[2].severity': ...`, `open_issues[0].severity: ...`.
"""
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MaxLen
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError,
                      ValidationInfo, WrapValidator)
from pydantic_core import PydanticCustomError

from app.core.phones import to_e164
from app.core.policy import ANNOUNCEMENT_ID, FALLBACK_MUSIC_ID, KINDS, SEVERITIES
from app.core.times import EXAMPLE, format_utc

# Longest values a customer record may hold: one caller's row is read on every wait request.
MAX_ID_CHARS = 100
MAX_NAME_CHARS = 200
MAX_SUMMARY_CHARS = 2000
MAX_PHONE_CHARS = 50
MAX_PRODUCTS = 100
MAX_PRODUCT_CHARS = 200


# --- errors: holdguard's words, pydantic's locations ------------------------------------------

def invalid(text: str) -> PydanticCustomError:
    """A validation error whose message is `text`, exactly (pydantic would otherwise word it)."""
    return PydanticCustomError("invalid", "{text}", {"text": text})


def worded(message):
    """Let pydantic check the value; if it fails, say `message(value)` instead of pydantic's words."""
    def reword(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise invalid(message(value)) from None
    return WrapValidator(reword)


def optional(value, handler):
    """An explicit null means "not given" (as leaving the key out does)."""
    return None if value is None else handler(value)


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (pydantic's location), what kind, and the words for it."""
    loc: tuple
    kind: str  # "invalid" (worded by holdguard), or pydantic's error type: missing, extra_forbidden, ...
    text: str
    value: Any


def problems(error: ValidationError) -> list[Problem]:
    """Every problem of a failed validation, in document order, worded for people."""
    found = []
    for detail in error.errors():
        kind, ctx = detail["type"], detail.get("ctx", {})
        if kind in ("string_too_long", "too_long"):
            unit = "characters" if isinstance(detail["input"], str) else "items"
            text = f"too long: at most {ctx['max_length']} {unit}, got {len(detail['input'])}"
        elif kind == "missing":
            text = "missing"
        else:
            text = detail["msg"]
        found.append(Problem(tuple(detail["loc"]), kind, text, detail.get("input")))
    return found


def path(loc: tuple) -> str:
    """A location as people write it: ('open_issues', 2, 'severity') -> open_issues[2].severity."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def storable(text: str) -> str:
    """Text every database can store. JSON can carry a lone surrogate ("\\ud800"), which has no
    UTF-8 form, and NUL, which PostgreSQL's text type refuses; neither means anything in a name."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(f"contains {text[error.start]!r}, a lone surrogate (not valid Unicode text)") from None
    if "\x00" in text:
        raise invalid("contains '\\x00', a NUL character (not storable text)")
    return text


# --- hold flows (app.core.flows) ------------------------------------------------------------------

RESERVED_ID = re.compile(rf"^(music-\d+|{ANNOUNCEMENT_ID}|{FALLBACK_MUSIC_ID})$")
URL = r"^https?://\S+$"


def describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def number(minimum: float, *, above: bool = False, maximum: float | None = None, integer: bool = False):
    """A TOML number within bounds (strict: "14" and true are not numbers)."""
    kind = "a whole number" if integer else "a number"
    limits = (f"from {minimum:g} to {maximum:g}" if maximum is not None
              else f"{'above' if above else 'at least'} {minimum:g}")
    bounds = [Gt(minimum) if above else Ge(minimum)] + ([Le(maximum)] if maximum is not None else [])
    return Annotated[int if integer else float, Strict(), *bounds,
                     worded(lambda value: f"must be {kind} {limits}, got {describe(value)}")]


def one_of(choices: tuple[str, ...]):
    """One of `choices`, in any case and spacing ("Promo " is promo)."""
    def shown(value):
        return repr(value) if isinstance(value, str) else describe(value)
    return Annotated[Literal[choices], BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str)
                                                       else value),
                     worded(lambda value: f"{shown(value)} is not one of {'|'.join(choices)}")]


def list_of(item):
    """A list of `item`s; a bad item is named by its position from 1 ("item 2 must be ...")."""
    def check(value, handler):
        try:
            return tuple(handler(value))
        except ValidationError as error:
            first = error.errors()[0]
            if first["loc"]:
                raise invalid(f"item {first['loc'][0] + 1} {first['msg']}") from None
            raise invalid(f"must be a list, got {describe(value)}") from None
    return Annotated[list[item], WrapValidator(check)]


def _moment(value) -> datetime:
    """TOML datetimes (quoted or not) with an explicit offset: a window must not depend on the server's zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid(f"must be a date-time like 2026-11-01T00:00:00Z, got {value!r}") from None
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else describe(value)
        raise invalid(f"must be a date-time like 2026-11-01T00:00:00Z, got {kind}")
    if value.tzinfo is None:
        raise invalid(f"{value.isoformat()} needs a time zone offset, e.g. 2026-11-01T00:00:00Z")
    return value


def _not_reserved(segment_id: str) -> str:
    if RESERVED_ID.match(segment_id):
        raise invalid(f"'{segment_id}' is reserved for what holdguard plays itself")
    return segment_id


def _known_queues(names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    known = (info.context or {}).get("queues", ())
    for name in names:
        if name not in known:
            raise invalid(f"names '{name}', which has no [queue.{name}] table")
    return names


def _some_music(urls: tuple[str, ...]) -> tuple[str, ...]:
    if not urls:
        raise invalid("must list at least one URL")
    return urls


def _flow_text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"must be non-empty text, got {describe(value)}")
    return storable(value.strip())


def _url(value) -> str:
    if not isinstance(value, str) or not re.match(URL, value.strip()):
        raise invalid(f"must be an http(s) URL Twilio can fetch, got {describe(value)}")
    return value.strip()


FlowText = Annotated[str, BeforeValidator(_flow_text)]
Url = Annotated[str, BeforeValidator(_url)]
Moment = Annotated[datetime, BeforeValidator(_moment)]


class FlowTable(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlowDocument(FlowTable):
    """The file's top level: which keys it may have. Each table in it is checked on its own
    (app.core.flows), so that one bad table does not hide the problems of the others."""
    queue: Any = None
    segment: Any = None
    product: Any = None


class QueueTable(FlowTable):
    """`[queue.NAME]`: a queue's settings (app.core.policy.QueueSettings)."""
    music: Annotated[list_of(Url), AfterValidator(_some_music)]
    music_chunk_s: number(0, above=True) = 45.0
    promos_per_call_max: number(0, integer=True) = 1
    promo_share_max: number(0, maximum=1) = 0.10
    promo_repeat_days: number(0) = 7.0
    reassurance_every_s: number(0, above=True) = 300.0
    reassurance_per_call_max: number(0, integer=True) = 2
    wait_announce_every_s: number(0) = 180.0
    suppress_min_severity: one_of(SEVERITIES) = "low"
    agent_whisper: Annotated[bool, Strict(),
                             worded(lambda value: f"must be true or false, got {describe(value)}")] = False


class SegmentTable(FlowTable):
    """`[[segment]]`: something that may be played (app.core.policy.Segment).

    Validate with context={"queues": the flow's queue names}, so `queues` can name only those.
    """
    id: Annotated[FlowText, AfterValidator(_not_reserved)]
    kind: one_of(KINDS)
    duration_s: number(0, above=True)
    play: Url = None
    say: FlowText = None
    products: list_of(FlowText) = ()
    queues: Annotated[list_of(FlowText), AfterValidator(_known_queues)] = ()
    active_from: Moment = None
    active_until: Moment = None


class ProductTable(FlowTable):
    """`[product."NAME"]`: other names of one product."""
    aliases: list_of(FlowText) = ()


# --- customer records: CRM files and the API (app.core.customers) -------------------------------------

TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0"}


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _identifier(value) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise invalid("missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise invalid(f"{short(value)} is not an id (text or a whole number)")
    return storable(str(value).strip())


def _no_slash(issue_id: str) -> str:
    if "/" in issue_id:
        # /api/issues/<id> could never name it: refuse it rather than store an issue no one can close.
        raise invalid(f"{short(issue_id)} contains '/', which an issue id cannot")
    return issue_id


def _severity(value) -> str:
    severity = value.strip().lower() if isinstance(value, str) else value
    if severity not in SEVERITIES:
        raise invalid(f"{short(value)} is not one of {'|'.join(SEVERITIES)}")
    return severity


def _bool(value) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise invalid(f"{short(value)} is not a boolean (true/false, yes/no, 1/0)")


def _products(value) -> list[str]:
    """A list of product names, or one string with names separated by ';' (CSV)."""
    if value is None:
        return []
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise invalid(f"{short(value)} is not a list of product names")
    return [storable(item.strip()) for item in items if item.strip()]


def _text(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"{short(value)} is not text")
    return storable(value.strip())


def parse_timestamp(value) -> str:
    """An ISO 8601 timestamp with a timezone ("...Z" or "+02:00") in the stored form (app.core.times)."""
    example = f"e.g. {EXAMPLE}"
    if not isinstance(value, str):
        raise ValueError(f"{short(value)} is not an ISO 8601 timestamp ({example})")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{short(value)} is not an ISO 8601 timestamp ({example})") from None
    if moment.tzinfo is None:
        # Guessing a zone could move suppress_from by hours: ask for it instead.
        raise ValueError(f"{short(value)} has no timezone (add Z for UTC, {example})")
    try:
        return format_utc(moment)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"{short(value)} is out of range (years 1 to 9999, in UTC)") from None


def _timestamp(value) -> str:
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise invalid(str(error)) from None


def _phone(value, info: ValidationInfo) -> str:
    if isinstance(value, str) and len(value) > MAX_PHONE_CHARS:
        raise invalid(f"too long: at most {MAX_PHONE_CHARS} characters, got {len(value)}")
    try:
        return to_e164(value, (info.context or {}).get("region", "US"))
    except ValueError as error:
        raise invalid(str(error)) from None


def _issue_list(value):
    """The `open_issues` field: a list of issue objects (or, in CSV, that list as JSON text)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as error:
            raise invalid(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, list):
        raise invalid(f"expected a list of issues, got {short(value)}")
    return value


def _distinct_issues(issues: list) -> list:
    seen = set()
    for issue in issues:
        if issue.id in seen:
            raise invalid(f"issue {issue.id!r} listed twice")
        seen.add(issue.id)
    return issues


CustomerId = Annotated[str, BeforeValidator(_identifier), MaxLen(MAX_ID_CHARS)]
IssueId = Annotated[str, BeforeValidator(_identifier), MaxLen(MAX_ID_CHARS), AfterValidator(_no_slash)]
Severity = Annotated[str, BeforeValidator(_severity)]
Name = Annotated[str, BeforeValidator(_text), MaxLen(MAX_NAME_CHARS)]
Summary = Annotated[str, BeforeValidator(_text), MaxLen(MAX_SUMMARY_CHARS)]
Products = Annotated[list[Annotated[str, MaxLen(MAX_PRODUCT_CHARS)]], BeforeValidator(_products), MaxLen(MAX_PRODUCTS)]
OptOut = Annotated[bool, BeforeValidator(_bool)]
Timestamp = Annotated[str, BeforeValidator(_timestamp)]
Phone = Annotated[str, BeforeValidator(_phone)]


class IssueFields(BaseModel):
    """An issue as a CRM file row or an API body gives it; unknown keys are the reader's business."""
    id: IssueId
    severity: Severity
    summary: Summary = None  # None: not given (keep what is stored)
    opened_at: Timestamp = None


class IssueChanges(IssueFields):
    """A partial update: only the id is required."""
    severity: Severity = None


class CustomerKey(BaseModel):
    customer_id: CustomerId


class CustomerFields(BaseModel):
    """A customer as a CRM file row gives it; None = not given. Validate with context={"region": "US"}."""
    customer_id: CustomerId
    phone: Phone = None
    name: Name = None
    products: Products = None
    marketing_opt_out: OptOut = None
    open_issues: Annotated[list[IssueFields], BeforeValidator(_issue_list), AfterValidator(_distinct_issues)] = None


# --- the CRM API's bodies (app.web.api): the same fields, and nothing else -------------------------

class ApiBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerBody(ApiBody):
    """PUT /api/customers/<customer_id>"""
    phone: Phone = None
    name: Name = None
    products: Products = None
    marketing_opt_out: OptOut = None


def _a_list_of_products(value):
    if not isinstance(value, list):
        raise invalid(f"expected a list of product names, got {short(value)}")
    return value


class ProductsBody(ApiBody):
    """PUT /api/customers/<customer_id>/products: a JSON list (the ';'-separated string is for CSV files)."""
    products: Annotated[Products, BeforeValidator(_a_list_of_products)]


class IssueBody(ApiBody, IssueFields):
    """POST /api/customers/<customer_id>/issues"""


class IssuePatch(ApiBody):
    """PATCH /api/issues/<issue_id>"""
    severity: Severity = None
    summary: Summary = None


# --- audit context files (audits.context) ------------------------------------------------------------

def json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _context_text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"expected a non-empty string, got {json.dumps(value)}")
    return storable(value.strip())


ContextText = Annotated[str, BeforeValidator(_context_text)]
OptionalContextText = Annotated[ContextText, WrapValidator(optional)]


class ContextTable(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContextIssue(ContextTable):
    id: ContextText
    severity: Annotated[Literal[SEVERITIES], worded(
        lambda value: f"expected one of {', '.join(SEVERITIES)}, got {json.dumps(value)}")] = "medium"
    summary: Annotated[str, Strict(), worded(lambda value: f"expected a string, got {json_type(value)}"),
                       AfterValidator(lambda text: storable(text.strip()))] = ""


class ContextFile(ContextTable):
    """A `--context` file or `<stem>.context.json` sidecar; every key optional."""
    open_issues: list[ContextIssue] = []
    owned_products: list[ContextText] = []
    queue: OptionalContextText = None
    call_sid: OptionalContextText = None
    phone: OptionalContextText = None

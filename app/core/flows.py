"""Hold flows: the TOML file of queues, segments and product aliases, and its validation.

A flow file is the whole catalog: `[queue.NAME]` tables (settings per Twilio
queue), `[[segment]]`s (what may be played) and optional `[product."NAME"]`
tables (`aliases = ["S7", "Galaxy S seven"]`: other names of one product, for
the webhook and the audit alike). `parse_flow` names every problem at once;
app.storage.catalog saves a valid flow.
"""
import difflib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from app.core.policy import ANNOUNCEMENT_ID, FALLBACK_MUSIC_ID, KINDS, SEVERITIES, QueueSettings, Segment
from app.core.products import ProductNames, product_key

SEGMENT_KEYS = ("id", "kind", "play", "say", "duration_s", "products", "queues", "active_from",
                "active_until")
# Ids the policy gives to what it makes up itself (queue music chunks, announcements).
RESERVED_ID = re.compile(rf"^(music-\d+|{ANNOUNCEMENT_ID}|{FALLBACK_MUSIC_ID})$")
URL = re.compile(r"^https?://\S+$")


class FlowError(Exception):
    """A flow file that cannot be used; `errors` lists every problem found."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Flow:
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # product -> its other names

    def product_names(self) -> ProductNames:
        return ProductNames.from_pairs((product, alias) for product, names in self.aliases.items()
                                       for alias in names)


# --- checking single values: each returns (value, problem); problem "" when fine ---

def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _number(minimum: float, *, above: bool = False, maximum: float | None = None, integer: bool = False):
    kind = "a whole number" if integer else "a number"
    limits = (f"from {minimum:g} to {maximum:g}" if maximum is not None
              else f"{'above' if above else 'at least'} {minimum:g}")

    def check(value):
        fits_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if (isinstance(value, bool) or not fits_type or value < minimum or (above and value == minimum)
                or (maximum is not None and value > maximum)):
            return None, f"must be {kind} {limits}, got {_describe(value)}"
        return (int(value) if integer else float(value)), ""
    return check


def _one_of(choices):
    def check(value):
        if not isinstance(value, str) or value.strip().lower() not in choices:
            return None, f"{_describe(value) if not isinstance(value, str) else repr(value)} is not one of {'|'.join(choices)}"
        return value.strip().lower(), ""
    return check


def _true_or_false(value):
    if not isinstance(value, bool):
        return None, f"must be true or false, got {_describe(value)}"
    return value, ""


def _text(value):
    if not isinstance(value, str) or not value.strip():
        return None, f"must be non-empty text, got {_describe(value)}"
    return value.strip(), ""


def _url(value):
    if not isinstance(value, str) or not URL.match(value.strip()):
        return None, f"must be an http(s) URL Twilio can fetch, got {_describe(value)}"
    return value.strip(), ""


def _list_of(check_item):
    def check(value):
        if not isinstance(value, list):
            return None, f"must be a list, got {_describe(value)}"
        items = []
        for position, item in enumerate(value, 1):
            checked, problem = check_item(item)
            if problem:
                return None, f"item {position} {problem}"
            items.append(checked)
        return tuple(items), ""
    return check


def _moment(value):
    """TOML datetimes (quoted or not) with an explicit offset: a window must not depend on the server's zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, f"must be a date-time like 2026-11-01T00:00:00Z, got {value!r}"
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else _describe(value)
        return None, f"must be a date-time like 2026-11-01T00:00:00Z, got {kind}"
    if value.tzinfo is None:
        return None, f"{value.isoformat()} needs a time zone offset, e.g. 2026-11-01T00:00:00Z"
    return value, ""


QUEUE_CHECKS = {
    "music": _list_of(_url),
    "music_chunk_s": _number(0, above=True),
    "promos_per_call_max": _number(0, integer=True),
    "promo_share_max": _number(0, maximum=1),
    "promo_repeat_days": _number(0),
    "reassurance_every_s": _number(0, above=True),
    "reassurance_per_call_max": _number(0, integer=True),
    "wait_announce_every_s": _number(0),
    "suppress_min_severity": _one_of(SEVERITIES),
    "agent_whisper": _true_or_false,
}
SEGMENT_CHECKS = {
    "id": _text,
    "kind": _one_of(KINDS),
    "play": _url,
    "say": _text,
    "duration_s": _number(0, above=True),
    "products": _list_of(_text),
    "queues": _list_of(_text),
    "active_from": _moment,
    "active_until": _moment,
}


def _unknown_keys(table: dict, known, label: str) -> list[str]:
    errors = []
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
            errors.append(f"{label}: unknown key '{key}'{hint}")
    return errors


def _checked_values(table: dict, checks: dict, label: str, errors: list[str]) -> dict:
    """Check each present key; problems go to `errors` as "LABEL: KEY PROBLEM"."""
    values = {}
    for key, check in checks.items():
        if key in table:
            value, problem = check(table[key])
            if problem:
                errors.append(f"{label}: {key} {problem}")
            else:
                values[key] = value
    return values


def _parse_queue(name: str, table, errors: list[str]) -> QueueSettings | None:
    label = f"queue '{name}'"
    if not isinstance(table, dict):
        errors.append(f"{label}: must be a table ([queue.{name}]), got {_describe(table)}")
        return None
    count_before = len(errors)
    errors += _unknown_keys(table, list(QUEUE_CHECKS), label)
    values = _checked_values(table, QUEUE_CHECKS, label, errors)
    if "music" not in table:
        errors.append(f"{label}: music is missing (a list of music URLs played in rotation)")
    elif "music" in values and not values["music"]:
        errors.append(f"{label}: music must list at least one URL")
    if len(errors) > count_before:
        return None
    return QueueSettings(name=name, **values)


def _parse_segment(position: int, table, queue_names, errors: list[str]) -> Segment | None:
    if not isinstance(table, dict):
        errors.append(f"segment #{position}: must be a table ([[segment]]), got {_describe(table)}")
        return None
    label = (f"segment '{table['id'].strip()}'" if isinstance(table.get("id"), str) and table["id"].strip()
             else f"segment #{position}")
    count_before = len(errors)
    errors += _unknown_keys(table, list(SEGMENT_KEYS), label)
    values = _checked_values(table, SEGMENT_CHECKS, label, errors)
    for key in ("id", "kind", "duration_s"):
        if key not in table:
            errors.append(f"{label}: {key} is missing")
    if "id" in values and RESERVED_ID.match(values["id"]):
        errors.append(f"{label}: id '{values['id']}' is reserved for what holdguard plays itself")
    if ("play" in table) == ("say" in table):
        errors.append(f"{label}: needs exactly one of play (an audio URL) or say (text to speak)")
    if values.get("kind") == "music" and "say" in table:
        errors.append(f"{label}: a music segment needs play = URL, not say")
    for queue_name in values.get("queues", ()):
        if queue_name not in queue_names:
            errors.append(f"{label}: queues names '{queue_name}', which has no [queue.{queue_name}] table")
    start, end = values.get("active_from"), values.get("active_until")
    if start and end and start >= end:
        errors.append(f"{label}: active_from {start.isoformat()} is not before active_until {end.isoformat()}")
    if len(errors) > count_before:
        return None
    return Segment(**values)


def parse_flow(text: str) -> Flow:
    """Parse and validate a flow's TOML text; raise FlowError listing every problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FlowError([f"not valid TOML: {error}"]) from None

    errors = _unknown_keys(document, ["queue", "segment", "product"], "flow")
    queue_tables = document.get("queue", {})
    if not isinstance(queue_tables, dict) or not queue_tables:
        errors.append("flow: no [queue.NAME] table (a flow needs at least one queue)")
        queue_tables = {}
    flow = Flow()
    for name, table in queue_tables.items():
        queue = _parse_queue(name, table, errors)
        if queue is not None:
            flow.queues[name] = queue

    segment_tables = document.get("segment", [])
    if not isinstance(segment_tables, list):
        errors.append(f"flow: segment must be an array of tables ([[segment]]), got {_describe(segment_tables)}")
        segment_tables = []
    seen_ids = set()
    for position, table in enumerate(segment_tables, 1):
        segment = _parse_segment(position, table, set(queue_tables), errors)
        if segment is None:
            continue
        if segment.id in seen_ids:
            errors.append(f"segment '{segment.id}': id is used by more than one segment")
        seen_ids.add(segment.id)
        flow.segments.append(segment)
    flow.aliases = _parse_products(document.get("product", {}), errors)
    if errors:
        raise FlowError(errors)
    return flow


def _parse_products(tables, errors: list[str]) -> dict[str, tuple[str, ...]]:
    """`[product."Galaxy S7"] aliases = [...]`: each alias names one product only."""
    if not isinstance(tables, dict):
        errors.append(f"flow: product must be tables ([product.\"NAME\"]), got {_describe(tables)}")
        return {}
    aliases, owner = {}, {}
    for product, table in tables.items():
        label = f"product '{product}'"
        if not isinstance(table, dict):
            errors.append(f"{label}: must be a table with aliases = [...], got {_describe(table)}")
            continue
        errors += _unknown_keys(table, ["aliases"], label)
        names, problem = _list_of(_text)(table.get("aliases", []))
        if problem:
            errors.append(f"{label}: aliases {problem}")
            continue
        for name in (product, *names):
            other = owner.setdefault(product_key(name), product)
            if other != product:
                errors.append(f"{label}: alias '{name}' already names product '{other}'")
        aliases[product] = names
    return aliases


def read_flow_file(path: str | Path) -> Flow:
    """Read and validate a flow file; FlowError (with the reason) if it cannot be read or is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FlowError([f"cannot read: {error.strerror if isinstance(error, OSError) else error}"]) from None
    return parse_flow(text)

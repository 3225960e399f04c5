"""Hold flows: the TOML file of queues, segments and product aliases, and its validation.

A flow file is the whole catalog: `[queue.NAME]` tables (settings per Twilio
queue), `[[segment]]`s (what may be played) and optional `[product."NAME"]`
tables (`aliases = ["S7", "Galaxy S seven"]`: other names of one product, for
the webhook and the audit alike). `parse_flow` names every problem at once;
app.storage.catalog saves a valid flow.

Each table is checked by its pydantic model (app.core.models) on its own, so
one bad table hides nothing in the others; this module names the place
(`queue 'support'`, `segment 'galaxy-upgrade'`, `segment #3` before an id is
known) and checks the rules that span keys or tables.
"""
import difflib
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from app.core.models import FlowDocument, Moment, ProductTable, QueueTable, SegmentTable, describe, problems
from app.core.policy import QueueSettings, Segment
from app.core.products import ProductNames, product_key


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


# What a missing required key is for, when the key alone does not say it.
MISSING_HINTS = {"music": " (a list of music URLs played in rotation)"}
MOMENT = TypeAdapter(Moment)


def _checked(model: type[BaseModel], table, label: str, not_a_table: str, errors: list[str], **context):
    """`table` validated by `model`, or None with each problem in `errors` as "LABEL: KEY PROBLEM"."""
    try:
        return model.model_validate(table, context=context)
    except ValidationError as error:
        for problem in problems(error):
            key = problem.loc[0] if problem.loc else ""
            if problem.kind == "extra_forbidden":
                errors.append(f"{label}: unknown key '{key}'{_did_you_mean(key, list(model.model_fields))}")
            elif problem.kind == "missing":
                errors.append(f"{label}: {key} is missing{MISSING_HINTS.get(key, '')}")
            elif problem.kind == "model_type":
                errors.append(f"{label}: must be {not_a_table}, got {describe(table)}")
            else:
                errors.append(f"{label}: {key} {problem.text}")
        return None


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"


def _moment_or_none(value) -> datetime | None:
    """A window's end as the segment model reads it, or None (absent, or invalid and reported already)."""
    try:
        return MOMENT.validate_python(value) if value is not None else None
    except ValidationError:
        return None


def _parse_queue(name: str, table, errors: list[str]) -> QueueSettings | None:
    checked = _checked(QueueTable, table, f"queue '{name}'", f"a table ([queue.{name}])", errors)
    return QueueSettings(name=name, **dict(checked)) if checked else None


def _parse_segment(position: int, table, queue_names, errors: list[str]) -> Segment | None:
    named = isinstance(table, dict) and isinstance(table.get("id"), str) and table["id"].strip()
    label = f"segment '{table['id'].strip()}'" if named else f"segment #{position}"
    count_before = len(errors)
    checked = _checked(SegmentTable, table, label, "a table ([[segment]])", errors, queues=queue_names)
    if not isinstance(table, dict):
        return None
    # Rules across keys, checked on what the file says so that they are reported with the others.
    if ("play" in table) == ("say" in table):
        errors.append(f"{label}: needs exactly one of play (an audio URL) or say (text to speak)")
    if str(table.get("kind", "")).strip().lower() == "music" and "say" in table:
        errors.append(f"{label}: a music segment needs play = URL, not say")
    start, end = _moment_or_none(table.get("active_from")), _moment_or_none(table.get("active_until"))
    if start and end and start >= end:
        errors.append(f"{label}: active_from {start.isoformat()} is not before active_until {end.isoformat()}")
    if len(errors) > count_before:
        return None
    return Segment(**dict(checked))


def parse_flow(text: str) -> Flow:
    """Parse and validate a flow's TOML text; raise FlowError listing every problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FlowError([f"not valid TOML: {error}"]) from None

    errors = []
    _checked(FlowDocument, document, "flow", "a TOML document", errors)
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
        errors.append(f"flow: segment must be an array of tables ([[segment]]), got {describe(segment_tables)}")
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
        errors.append(f"flow: product must be tables ([product.\"NAME\"]), got {describe(tables)}")
        return {}
    aliases, owner = {}, {}
    for product, table in tables.items():
        label = f"product '{product}'"
        checked = _checked(ProductTable, table, label, "a table with aliases = [...]", errors)
        if checked is None:
            continue
        for name in (product, *checked.aliases):
            other = owner.setdefault(product_key(name), product)
            if other != product:
                errors.append(f"{label}: alias '{name}' already names product '{other}'")
        aliases[product] = checked.aliases
    return aliases


def read_flow_file(path: str | Path) -> Flow:
    """Read and validate a flow file; FlowError (with the reason) if it cannot be read or is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FlowError([f"cannot read: {error.strerror if isinstance(error, OSError) else error}"]) from None
    return parse_flow(text)

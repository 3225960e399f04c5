"""Who was on hold: the caller context the rules judge a recording against.

Where it comes from, first match wins for the file part:
1. `--context FILE` (the same file for every recording of a batch);
2. else a sidecar `<stem>.context.json` next to the audio (`hold.wav` -> `hold.context.json`);
3. else nothing (an unknown caller: only the caller-independent rules apply).

The file has exactly this shape, every key optional (issue #4), plus two keys
that link the recording to the webhook's database:

    {"open_issues": [{"id": "CASE-1", "severity": "high", "summary": "..."}],
     "owned_products": ["Galaxy S7"], "queue": "support",
     "call_sid": "CA...", "phone": "+15555550100"}

When the database knows the call (by `call_sid`, or a Twilio CallSid `CA` + 32 hex
in the file name, or a RecordingSid the `recordings` table links to its call) or
the phone, that caller's issues and products are merged in: what the CRM knows
counts even when the file forgot it. The issues are those open at the time of the
call when the call is known (its `calls` row has a `started_at`): opened by then (an
issue without `opened_at` always was) and not closed by then; a CX lead auditing
last week's call judges it by last week's cases. With only a phone (no calls row,
or one without a start time) they are the issues open now. Products are those
owned now: the CRM keeps no ownership dates.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from app.core.audit import Context, Issue
from app.core.models import ContextFile, ContextIssue, Problem, json_type, problems
from app.core.models import path as place
from app.core.phones import to_e164
from app.core.products import same_product
from app.storage import catalog, crm, playlog, recordings
from audits.classify import CatalogMessage

# Twilio SIDs in file names: a CallSid, or a RecordingSid that the `recordings` table links to its call.
SID_PATTERN = re.compile(r"(?<![0-9A-Za-z])(CA|RE)[0-9a-f]{32}(?![0-9A-Za-z])")
SIDECAR_SUFFIX = ".context.json"


class ContextError(ValueError):
    """A context file that cannot be used; the message is one line naming the file and the field."""


@dataclass
class ResolvedContext:
    context: Context = field(default_factory=Context)
    call_sid: str | None = None
    phone: str | None = None
    sources: list[str] = field(default_factory=list)  # where the context came from, for the report


def sidecar_path(audio_path: str | Path) -> Path:
    """`<stem>.context.json` next to the audio file."""
    audio_path = Path(audio_path)
    return audio_path.with_name(audio_path.stem + SIDECAR_SUFFIX)


def resolve(audio_path: str | Path, context_file: str | Path | None = None, db=None) -> ResolvedContext:
    """The context for one recording: --context file, else its sidecar, then the database's knowledge."""
    resolved = ResolvedContext()
    path = Path(context_file) if context_file else sidecar_path(audio_path)
    if context_file or path.is_file():
        resolved = read_context_file(path)
    resolved.call_sid = resolved.call_sid or call_sid_from_name(audio_path, db)
    if db is not None and (resolved.call_sid or resolved.phone):
        known = from_database(db, call_sid=resolved.call_sid, phone=resolved.phone)
        if known is not None:
            resolved.context = merge(resolved.context, known)
            resolved.sources.append(f"database ({resolved.call_sid or resolved.phone})")
    return resolved


def call_sid_from_name(audio_path: str | Path, db=None) -> str | None:
    """The CallSid a file name gives: `CA` + 32 hex itself, or a RecordingSid (`RE`...) the database
    links to its call (`holdguard recordings fetch` names files by RecordingSid)."""
    match = SID_PATTERN.search(Path(audio_path).name)
    if not match:
        return None
    if match.group(1) == "CA":
        return match.group(0)
    return recordings.call_sid_of(db, match.group(0)) if db is not None else None


def read_context_file(path: str | Path) -> ResolvedContext:
    """Read and check one context file; raises ContextError naming the file and the bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContextError(f"{path}: context file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContextError(f"{path}: cannot read context file ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ContextError(f"{path}: not valid JSON ({error})") from None
    try:
        return parse_context(data, source=str(path))
    except ContextError as error:
        raise ContextError(f"{path}: {error}") from None


def parse_context(data, source: str = "") -> ResolvedContext:
    """Check a decoded context object; raises ContextError("field: what is wrong; ...") naming every problem."""
    try:
        checked = ContextFile.model_validate(data)
    except ValidationError as error:
        raise ContextError("; ".join(_context_problem(problem) for problem in problems(error))) from None
    issues = [Issue(id=issue.id, severity=issue.severity, summary=issue.summary) for issue in checked.open_issues]
    context = Context(open_issues=issues, owned_products=list(checked.owned_products), queue=checked.queue)
    return ResolvedContext(context, call_sid=checked.call_sid, phone=checked.phone, sources=[source] if source else [])


def _context_problem(problem: Problem) -> str:
    """One problem as "where: what", the place written as in the file (open_issues[0].severity)."""
    where = place(problem.loc)
    if problem.kind == "extra_forbidden":
        parent, key = problem.loc[:-1], problem.loc[-1]
        model = ContextIssue if parent else ContextFile
        unknown = f"unknown key {key!r} (expected {', '.join(model.model_fields)})"
        return f"{place(parent)}: {unknown}" if parent else unknown
    if problem.kind == "model_type":
        expected = "an object with id, severity, summary" if problem.loc else "a JSON object"
        return f"{where + ': ' if where else ''}expected {expected}, got {json_type(problem.value)}"
    if problem.kind == "list_type":
        return f"{where}: expected a list, got {json_type(problem.value)}"
    if problem.kind == "missing":
        return f"{where}: missing (every open issue needs an id)"
    return f"{where}: {problem.text}"


def from_database(db, call_sid: str | None = None, phone: str | None = None) -> Context | None:
    """What the webhook's database knows about the caller of `call_sid` or `phone`; None if nothing.

    Open issues: those open when the call started if the call's start is known, else those open now.
    """
    call = playlog.call_link(db, call_sid)
    caller_phone = call["caller"] if call else None
    queue = call["queue"] if call else None
    started_at = call["started_at"] if call and call["started_at"] else None
    if caller_phone is None and phone:
        try:
            caller_phone = to_e164(phone)
        except ValueError:
            return None
    caller = crm.load_caller(db, caller_phone) if caller_phone else None
    if caller is None:
        return Context(queue=queue) if queue else None
    if started_at is None:
        issues = [Issue(i.id, i.severity or "medium", i.summary) for i in caller.open_issues]
    else:
        issues = crm.issues_open_at(db, caller_phone, started_at)
    names = catalog.load_product_names(db)  # the flow's aliases: "S7" owned is the "Galaxy S7" sold
    owned = [names.canonical(product) for product in caller.products]
    return Context(open_issues=issues, owned_products=owned, queue=queue, issues_as_of=started_at)


def merge(first: Context, second: Context) -> Context:
    """Both contexts' open issues (by id) and products (by name); `first` wins on the queue and on ties."""
    issues = list(first.open_issues)
    issues += [issue for issue in second.open_issues if issue.id not in {i.id for i in issues}]
    products = list(first.owned_products)
    products += [p for p in second.owned_products if not any(same_product(p, mine) for mine in products)]
    return Context(open_issues=issues, owned_products=products, queue=first.queue or second.queue,
                   issues_as_of=first.issues_as_of or second.issues_as_of)


def load_catalog(db) -> list[CatalogMessage]:
    """The hold flow's spoken messages and their products (`holdguard flows load`), to name what promos sell."""
    return [CatalogMessage(segment.say or "", tuple(segment.products)) for segment in catalog.load_catalog(db).segments
            if segment.say or segment.products]

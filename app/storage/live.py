"""Calls as they happen, from the play log: who is on hold now, one call's whole record, and what
the agent whisper needs about the caller being put through.

A call is on hold from its first wait answer until its queue result, or until
no wait request has come for `silence_s` (a caller whose queue result never
arrived). Simulated calls are left out: they run on a simulated clock.
Each read uses an index: plays(at) for the recent answers, plays(call_sid) and
the calls / play_skips primary keys for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.policy import Caller, Play, QueueSettings, Segment
from app.core.products import NO_ALIASES, ProductNames
from app.core.times import format_utc
from app.storage import catalog, crm, playlog

# A wait answer is at most a music chunk (45 s by default; a long track only delays the next
# request): a call with no wait request for this long has left the queue without a result.
ON_HOLD_SILENCE_S = 600.0


@dataclass(frozen=True)
class CallRecord:
    """One call as the database knows it: the calls row, the caller, every answer, the queue's flow."""
    call_sid: str
    row: dict | None  # the calls row (None: the webhook never saw this call)
    caller: Caller | None  # None: no customer on the number
    plays: tuple[Play, ...]
    queue: QueueSettings | None  # None: the queue has no hold flow loaded
    segments: tuple[Segment, ...] = ()
    products: ProductNames = NO_ALIASES


def load_call_record(db, call_sid: str, queue_name: str | None = None, cache: dict | None = None) -> CallRecord:
    """Everything stored about `call_sid`; `queue_name` is the queue to assume when the call is unknown.

    `cache` is the webhook's catalog cache (playlog.catalog_cache).
    """
    call, _, _ = playlog.load_call(db, call_sid)
    row = call_row(db, call_sid)
    caller = crm.load_caller(db, row["caller"]) if row and row["caller"] else None
    name = (row["queue"] if row and row["queue"] else None) or queue_name
    queue_catalog = None
    if name:
        try:
            queue_catalog = catalog.load_queue_catalog(db, name, cache)
        except catalog.NoHoldFlow:
            pass
    if queue_catalog is None:
        return CallRecord(call_sid, row, caller, call.plays, None)
    return CallRecord(call_sid, row, caller, call.plays, queue_catalog.queue, queue_catalog.segments,
                      queue_catalog.products)


def call_row(db, call_sid: str) -> dict | None:
    """The calls row: caller, customer, queue, started / ended, queue result, simulated."""
    rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [call_sid]))
    return rows[0] if rows else None


def calls_on_hold(db, now: datetime, silence_s: float = ON_HOLD_SILENCE_S) -> list[dict]:
    """Real calls on hold at `now`, by queue then longest wait: the calls row and its latest answer
    (last_id, last_at, last_at_s, last_segment_id, last_kind, last_reason)."""
    since = format_utc(now - timedelta(seconds=silence_s))
    return list(db.query(
        """WITH recent AS (SELECT DISTINCT call_sid FROM plays WHERE at >= ?)
           SELECT c.call_sid, c.caller, c.customer_id, c.queue, c.started_at,
                  last.id AS last_id, last.at AS last_at, last.at_s AS last_at_s,
                  last.segment_id AS last_segment_id, last.kind AS last_kind, last.reason AS last_reason
           FROM recent
           JOIN calls c ON c.call_sid = recent.call_sid
           JOIN plays last ON last.id = (SELECT max(p.id) FROM plays p WHERE p.call_sid = c.call_sid)
           WHERE c.queue_result IS NULL AND c.simulated = 0 AND last.at >= ?
           ORDER BY c.queue, c.started_at, c.call_sid""", [since, since]))


def skips_of_call(db, call_sid: str) -> list[dict]:
    """Why no promo played, per cause, over one call: answers, the latest reason, the promos passed over."""
    causes = list(db.query(
        """SELECT cause, count(*) AS answers,
                  (SELECT p2.reason FROM plays p2 WHERE p2.call_sid = plays.call_sid AND p2.cause = plays.cause
                   ORDER BY p2.id DESC LIMIT 1) AS reason
           FROM plays WHERE call_sid = ? AND cause IS NOT NULL
           GROUP BY call_sid, cause ORDER BY max(id) DESC""", [call_sid]))
    promos: dict[str, list[str]] = {}
    for row in db.query("""SELECT DISTINCT s.cause, s.segment_id FROM play_skips s
                           JOIN plays p ON p.id = s.play_id WHERE p.call_sid = ? ORDER BY s.segment_id""",
                        [call_sid]):
        promos.setdefault(row["cause"], []).append(row["segment_id"])
    known = {row["cause"] for row in causes}
    for cause in promos:  # a promo passed over for a reason no answer's cause names (not its first skip)
        if cause not in known:
            causes.append({"cause": cause, "answers": 0, "reason": None})
    return [row | {"promos": promos.get(row["cause"], [])} for row in causes]


def call_timeline(db, call_sid: str) -> list[dict]:
    """Every answer to one call, in order, with its reason, cause and the promos it passed over
    (`skipped`: [{"segment_id", "cause"}])."""
    plays = list(db.query("SELECT id, at, at_s, segment_id, kind, duration_s, reason, cause, say_text, play_url "
                          "FROM plays WHERE call_sid = ? ORDER BY id", [call_sid]))
    skipped: dict[int, list[dict]] = {}
    for row in db.query("""SELECT s.play_id, s.segment_id, s.cause FROM play_skips s
                           JOIN plays p ON p.id = s.play_id WHERE p.call_sid = ? ORDER BY s.play_id, s.segment_id""",
                        [call_sid]):
        skipped.setdefault(row["play_id"], []).append({"segment_id": row["segment_id"], "cause": row["cause"]})
    return [play | {"skipped": skipped.get(play["id"], [])} for play in plays]


def audits_of_call(db, call_sid: str) -> list[dict]:
    """The audits of this call's recordings: id and recording, newest first."""
    return list(db.query("SELECT id, recording, audited_at FROM audits WHERE call_sid = ? ORDER BY id DESC",
                         [call_sid]))

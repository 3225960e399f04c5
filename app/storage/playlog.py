"""The play log: calls, every answer the webhook gave with its reason and cause, and the policy's
inputs read back from it (what this call heard, the caller's earlier promos).

Each wait request is a few indexed queries (plays.call_sid, plays.caller+kind+at,
the catalog at most once a second), so a wait request stays fast.

One row per wait request: Twilio's (CallSid, QueueTime) is unique in `plays`
(index plays_request), so a retried request finds the answer it was already
given instead of logging a second, different one.

Simulated calls (`holdguard simulate`, the /flows form) are logged like real ones
with calls.simulated = 1: a real call's history leaves their plays out; a
simulated call's history keeps them, so consecutive simulations are consecutive
calls on top of the caller's real history.
"""
import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlite_utils

from app.core.policy import WAIT_KIND, Caller, CallSoFar, Decision, Play, QueueSettings, Segment, promo_block
from app.core.products import ProductNames
from app.core.times import format_utc
from app.storage import catalog, crm
from app.storage.checkpoint import keep_checkpointed
from app.storage.connect import DATABASE_ERRORS, connect, is_postgres, sqlite_path, transaction
from app.storage.schema import migrate, pending

# Twilio waits ~15 s for a webhook; a locked database must turn into fallback music long before.
WEBHOOK_BUSY_TIMEOUT_S = 0.5

# A condition on `plays` (unaliased): the play belongs to a real call, not a simulated one. A play
# without a calls row counts as real. One primary-key lookup per play row.
REAL_PLAY = ("NOT EXISTS (SELECT 1 FROM calls WHERE calls.call_sid = plays.call_sid "
             "AND calls.simulated = 1)")


# ---- the webhook's connection -------------------------------------------------------------------

_per_thread = threading.local()


def webhook_db(url) -> sqlite_utils.Database:
    """This thread's webhook connection to `url`, kept between requests; never creates the database.

    A connection is kept per worker thread (opening one per request costs more
    than the request). A database older than this version is migrated first; if
    that fails (another process holds the lock) this request fails (music) and
    the next one tries again.
    """
    path = _sqlite_file(str(url))  # None for PostgreSQL
    identity = (str(url), _file_identity(path))
    cached = getattr(_per_thread, "db", None)
    if cached is None or cached[0] != identity:
        discard_webhook_db()
        db = connect(url, create=False, busy_timeout_s=WEBHOOK_BUSY_TIMEOUT_S,
                     statement_timeout_s=WEBHOOK_BUSY_TIMEOUT_S, pooled=True)
        try:
            if pending(db):
                migrate(db)
            if db.dialect == "sqlite":
                db.execute("PRAGMA wal_autocheckpoint = 0")  # app.storage.checkpoint does it, not a request
        except BaseException:
            db.close()
            raise
        cached = _per_thread.db = (identity, db, {})
    if path is not None:
        keep_checkpointed(path)
    return cached[1]


def _file_identity(path: str | None) -> tuple[int, int] | None:
    """Which file a SQLite path names now: a replaced or deleted database is reopened, not served
    from the old file's open handle. None for PostgreSQL (and for a missing file)."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


@functools.lru_cache(maxsize=16)
def _sqlite_file(url: str) -> str | None:
    """The SQLite file of a database URL, worked out once per URL (each wait request asks)."""
    return None if is_postgres(url) else str(sqlite_path(url))


def catalog_cache() -> dict:
    """The catalog cache that goes with this thread's webhook connection."""
    cached = getattr(_per_thread, "db", None)
    return cached[2] if cached is not None else {}


def discard_webhook_db() -> None:
    """Close this thread's cached connection (after a fault: the next request starts afresh)."""
    cached = getattr(_per_thread, "db", None)
    _per_thread.db = None
    if cached is not None:
        try:
            cached[1].close()
        except DATABASE_ERRORS:
            pass


def decision_lock(db, caller_key: str | None):
    """One decision at a time per caller across every webhook host (PostgreSQL): a transaction with
    an advisory lock on the caller, so two calls of one caller on two hosts cannot both take the
    promo the 7-day repeat window allows once. SQLite serves one host: there each write is its own
    transaction and the play log's unique request key is enough."""
    if db.dialect != "postgresql" or not caller_key:
        return contextlib.nullcontext()
    return _caller_locked(db, caller_key)


@contextlib.contextmanager
def _caller_locked(db, caller_key: str):
    with transaction(db):
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [caller_key])
        yield


# ---- the policy's inputs ------------------------------------------------------------------------

class LoggedAnswer(NamedTuple):
    """An answer as the play log holds it: enough to give it again."""
    segment_id: str
    kind: str
    play_url: str | None
    say_text: str | None
    reason: str


@dataclass(frozen=True)
class PolicyInputs:
    caller: Caller | None
    call: CallSoFar
    history: tuple[Play, ...]
    queue: QueueSettings
    catalog: tuple[Segment, ...]
    products: ProductNames
    call_row: dict | None = None  # the stored calls row, so an unchanged one is not rewritten
    logged: LoggedAnswer | None = None  # this wait request was answered before: a retry gets that again


PLAY_COLUMNS = "segment_id, kind, at, at_s, duration_s"
CALL_COLUMNS = ("caller", "customer_id", "queue", "last_position_told")


# Kinds older releases wrote: migration 10 renames stored rows, and this reads the rows a host not
# yet upgraded may still write while a fleet upgrades one host at a time.
OLD_KINDS = {"announcement": WAIT_KIND}


def _plays(rows) -> tuple[Play, ...]:
    """Plays from rows of PLAY_COLUMNS. Times are in the stored form, which fromisoformat reads as
    it is (a call's every play is read on each of its wait requests: parse_utc's checks add up)."""
    return tuple(Play(segment_id, OLD_KINDS.get(kind, kind), datetime.fromisoformat(at), at_s or 0.0,
                      duration_s or 0.0)
                 for segment_id, kind, at, at_s, duration_s in rows)


def load_call(db, call_sid: str, queue_time: str | None = None) -> tuple[CallSoFar, dict | None, LoggedAnswer | None]:
    """What this call heard so far, in order, and the last queue position it was told; its calls
    row; and the answer already logged for the wait request at `queue_time`, if it is a retry."""
    rows = db.execute(f"SELECT {PLAY_COLUMNS}, queue_time FROM plays WHERE call_sid = ? ORDER BY id",
                      [call_sid]).fetchall()
    retried = queue_time is not None and any(row[5] == queue_time for row in rows)
    logged = logged_answer(db, call_sid, queue_time) if retried else None
    call_rows = list(db.query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE call_sid = ?", [call_sid]))
    call_row = call_rows[0] if call_rows else None
    return CallSoFar(_plays(row[:5] for row in rows), call_row["last_position_told"] if call_row else None), \
        call_row, logged


def load_history(db, caller_key: str | None, call_sid: str, since: datetime,
                 simulated: bool = False) -> tuple[Play, ...]:
    """Promos this caller heard in earlier calls since `since` (for promo_repeat_days).

    A real call's history leaves simulated calls out (a primary-key lookup per
    promo found); a simulated call's history is every earlier call.
    """
    if not caller_key:
        return ()
    real_only = "" if simulated else f"AND {REAL_PLAY} "
    return _plays(db.execute(f"SELECT {PLAY_COLUMNS} FROM plays WHERE caller = ? AND kind = 'promo' AND at >= ? "
                             f"AND call_sid != ? {real_only}ORDER BY at",
                             [caller_key, format_utc(since), call_sid]))


def load_inputs(db, call_sid: str, caller_key: str | None, queue_name: str, now: datetime,
                cache: dict | None = None, simulated: bool = False, queue_time: str | None = None) -> PolicyInputs:
    """Everything decide() needs for one wait request, and the answer logged for it if it is a retry
    (same CallSid and `queue_time`). Raises NoHoldFlow for an unconfigured queue.

    With `cache` (the webhook's, see catalog_cache) the catalog is read at most
    once per second; customers, issues and plays are always read fresh.
    `simulated`: this is a simulated call (see load_history).
    """
    queue_catalog = catalog.load_queue_catalog(db, queue_name, cache)
    queue = queue_catalog.queue
    call, call_row, logged = load_call(db, call_sid, queue_time)
    caller = crm.load_caller(db, caller_key)
    since = now - timedelta(days=queue.promo_repeat_days)
    return PolicyInputs(
        caller=caller,
        call=call,
        # Earlier calls matter only for promos: not read when no promo can play anyway.
        history=() if promo_block(caller, call, queue) else load_history(db, caller_key, call_sid, since,
                                                                         simulated),
        queue=queue,
        catalog=queue_catalog.segments,
        products=queue_catalog.products,
        call_row=call_row,
        logged=logged,
    )


# ---- writing answers ----------------------------------------------------------------------------

def logged_answer(db, call_sid: str, queue_time: str | None) -> LoggedAnswer | None:
    """The answer already given to this wait request (same CallSid and QueueTime), if any."""
    if not call_sid or queue_time is None:
        return None
    row = db.execute("SELECT segment_id, kind, play_url, say_text, reason FROM plays "
                     "WHERE call_sid = ? AND queue_time = ?", [call_sid, queue_time]).fetchone()
    return LoggedAnswer(*row) if row else None


def _upsert_call(db, call_sid: str, at: datetime, simulated: bool, latest: dict) -> None:
    """Create the calls row (started at `at`, flagged `simulated`), or update only the `latest` values.

    Whichever webhook request comes first creates the row, so each passes the flag.
    """
    columns = {"call_sid": call_sid, "started_at": format_utc(at), "simulated": int(simulated), **latest}
    updates = ", ".join(f"{name} = excluded.{name}" for name in latest) or "call_sid = call_sid"
    db.execute(f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
               f"ON CONFLICT(call_sid) DO UPDATE SET {updates}", list(columns.values()))


def record_call_start(db, call_sid: str, caller_key: str, customer_id: str | None, queue_name: str,
                      at: datetime, simulated: bool = False) -> None:
    """The calls row for an incoming call (from /twilio/voice)."""
    _upsert_call(db, call_sid, at, simulated, {"caller": caller_key, "customer_id": customer_id, "queue": queue_name})


def record_play(db, call_sid: str, caller_key: str, customer_id: str | None, queue_name: str,
                decision: Decision, at: datetime, at_s: float, queue_time: str | None = None,
                call_row: dict | None = None, simulated: bool = False) -> LoggedAnswer:
    """Log one answer, its skipped promos and the call's latest state in one transaction; returns
    the answer logged for this request: this one, or the one another worker or host logged first
    for the same (CallSid, QueueTime).

    `call_row` is the calls row as read for this request (see load_call): when
    nothing in it changes, it is not rewritten.
    """
    segment = decision.segment
    latest = {"caller": caller_key, "customer_id": customer_id, "queue": queue_name}
    if decision.position_told is not None:
        latest["last_position_told"] = decision.position_told
    unchanged = call_row is not None and all(call_row[name] == value for name, value in latest.items())
    # One statement commits alone: most answers (no skipped promo, call row as it was) need no BEGIN/COMMIT.
    with contextlib.nullcontext() if unchanged and not decision.skipped else transaction(db):
        inserted = db.execute(
            "INSERT INTO plays (call_sid, caller, customer_id, queue, segment_id, kind, at, at_s, duration_s, "
            "reason, cause, queue_time, play_url, say_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (call_sid, queue_time) DO NOTHING RETURNING id",
            [call_sid, caller_key, customer_id, queue_name, segment.id, segment.kind, format_utc(at), at_s,
             segment.duration_s, decision.reason, decision.cause, queue_time, segment.play, segment.say]).fetchone()
        if inserted is None:  # another worker or host answered this request first
            return logged_answer(db, call_sid, queue_time)
        play_id = inserted[0]
        if decision.skipped:
            db.executemany("INSERT INTO play_skips (play_id, segment_id, cause) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           [(play_id, skip.promo_id, skip.cause) for skip in decision.skipped])
        if not unchanged:
            _upsert_call(db, call_sid, at, simulated, latest)
    return LoggedAnswer(segment.id, segment.kind, segment.play, segment.say, decision.reason)


def record_queue_result(db, call_sid: str, queue_result: str, queue_time_s: float | None,
                        at: datetime, simulated: bool = False) -> None:
    """How the wait ended (from the Enqueue action URL)."""
    _upsert_call(db, call_sid, at, simulated,
                 {"queue_result": queue_result, "queue_time_s": queue_time_s, "ended_at": format_utc(at)})


# ---- reading the log back -----------------------------------------------------------------------

def plays_after(db, call_sid: str, after_id: int) -> list[dict]:
    """The plays of one call logged after play `after_id`, in order (what a simulation heard)."""
    return list(db.query("SELECT id, customer_id, at_s, segment_id, kind, duration_s, reason, cause FROM plays "
                         "WHERE call_sid = ? AND id > ? ORDER BY id", [call_sid, after_id]))


def last_play_of(db, caller_key: str) -> dict | None:
    """The caller's latest answer: when it started and how long it was."""
    rows = list(db.query("SELECT at, duration_s FROM plays WHERE caller = ? ORDER BY at DESC, id DESC LIMIT 1",
                         [caller_key]))
    return rows[0] if rows else None


def call_plays(db, call_sid: str | None) -> list[dict]:
    """What the webhook decided for one call, answer by answer, with its reasons."""
    if not call_sid:
        return []
    return list(db.query("select at_s, segment_id, kind, duration_s, reason, cause from plays "
                         "where call_sid = ? order by id", [call_sid]))


def call_link(db, call_sid: str | None) -> dict | None:
    """The webhook's knowledge of a call: caller, customer, queue, start and how many answers it logged."""
    if not call_sid:
        return None
    rows = list(db.query(
        """select c.caller, c.customer_id, c.queue, c.started_at, c.queue_result,
                  (select count(*) from plays p where p.call_sid = c.call_sid) as plays
           from calls c where c.call_sid = ?""", [call_sid]))
    return rows[0] if rows else None


# Every count below is of real callers' plays: simulated calls are left out.

def promo_played(db, promo_id: str, since: str) -> dict:
    """How often a promo played since `since`: answers, calls, callers and the latest."""
    return next(iter(db.query(
        f"""select count(*) as answers, count(distinct call_sid) as calls,
                   count(distinct caller) as callers, max(at) as last_at
            from plays where segment_id = ? and at >= ? and {REAL_PLAY}""", [promo_id, since])))


def promo_skipped(db, promo_id: str, since: str) -> dict:
    """How often a promo was passed over for a caller (owned, repeat, share) since `since`."""
    return next(iter(db.query(
        f"""select count(*) as answers, count(distinct plays.call_sid) as calls
            from play_skips join plays on plays.id = play_skips.play_id
            where play_skips.segment_id = ? and plays.at >= ? and {REAL_PLAY}""", [promo_id, since])))


# The causes that keep every promo from a caller for the whole answer (not one promo's own rule).
CALLER_BLOCK_CAUSES = ("open_issue", "opt_out", "unknown_caller")


def caller_blocks(db, since: str) -> list[dict]:
    """Answers where no promo could play for the caller at all, by queue and cause."""
    placeholders = ", ".join("?" for _ in CALLER_BLOCK_CAUSES)
    return list(db.query(
        f"""select queue, cause, count(*) as answers, count(distinct call_sid) as calls from plays
            where cause in ({placeholders}) and at >= ? and {REAL_PLAY}
            group by queue, cause order by queue, cause""", [*CALLER_BLOCK_CAUSES, since]))


def recent_promo_plays(db, caller: str | None, limit: int) -> list[dict]:
    """The latest promo plays (optionally for one caller): what a caller just heard."""
    where, params = f"kind = 'promo' and {REAL_PLAY}", []
    if caller:
        where += " and caller = ?"
        params.append(caller)
    return list(db.query(f"select at, caller, queue, call_sid, segment_id, at_s from plays where {where} "
                         # newest first by id: it grows as answers are logged, and the table is kept
                         # in its order, so the latest promos are found without an index on `at`
                         f"order by id desc limit ?", params + [limit]))

"""The policy's inputs and outputs in SQLite: who is calling, what this call and earlier calls
heard, the queue's settings and catalog; and the play log every answer writes.

Everything here is a few indexed queries (customers.phone_e164, issues.customer_id,
plays.call_sid, plays.caller+at, primary keys), so a wait request stays fast.

Simulated calls (`holdguard simulate`, the /flows form) are logged like real ones
with calls.simulated = 1: a real call's history leaves their plays out; a
simulated call's history keeps them, so consecutive simulations are consecutive
calls on top of the caller's real history.
"""
import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils

from app.flows import queue_from_row, segment_from_row
from app.phones import to_e164
from app.policy import (Caller, CallSoFar, Decision, Issue, Play, QueueSettings, Segment,
                        format_utc, parse_utc, promos_blocked)
from app.schema import REAL_PLAY, add_missing_columns, missing_columns

# Twilio waits ~15 s for a webhook; a locked database must turn into fallback music long before.
WEBHOOK_BUSY_TIMEOUT_S = 0.5
E164 = re.compile(r"\+[1-9]\d{6,14}")
# The catalog changes only with `holdguard flows load`; webhooks see a new one within this long.
CATALOG_CACHE_S = 1.0
CALLS_REMEMBERED = 4096  # calls on hold at once, per webhook connection, with room to spare
CHECKPOINT_EVERY_S = 1.0
CHECKPOINT_IDLE_S = 60.0
WAL_TRUNCATE_FRAMES = 4000  # about 16 MB of 4 KiB pages


class NoHoldFlow(LookupError):
    """The queue has no settings in the catalog: `holdguard flows load` was not run for it."""


@dataclass
class WebhookMemory:
    """What one webhook connection remembers between requests (see webhook_memory).

    catalog: queue name -> (expiry, settings, segments), re-read after CATALOG_CACHE_S.
    calls: CallSid -> (last play id, plays), for the most recent calls: a request
    then reads only the plays logged since (by any worker), not the whole call.
    """
    catalog: dict = field(default_factory=dict)
    calls: OrderedDict = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class PolicyInputs:
    caller: Caller | None
    call: CallSoFar
    history: tuple[Play, ...]
    queue: QueueSettings
    catalog: tuple[Segment, ...]
    call_row: dict | None = None  # the stored calls row, so an unchanged one is not rewritten


def open_webhook_db(path: str | Path) -> sqlite_utils.Database:
    """Open an existing database for the webhooks: never creates it, waits little for locks.

    synchronous=NORMAL is safe in WAL mode (a power cut may lose the last few log
    rows, never corrupt the file) and spares an fsync per answer.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: database file does not exist (run `holdguard db init`)")
    # isolation_level=None: a lone INSERT is its own transaction, without BEGIN/COMMIT round trips.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                           timeout=WEBHOOK_BUSY_TIMEOUT_S, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(WEBHOOK_BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA synchronous = NORMAL")
    # A WAL checkpoint fsyncs (milliseconds): it runs in a background thread, not in a request.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return sqlite_utils.Database(conn)


_per_thread = threading.local()


def webhook_db(path: str | Path) -> sqlite_utils.Database:
    """This thread's webhook connection to `path`, kept between requests.

    Closing the last connection to a WAL database checkpoints it (milliseconds
    of disk work), so each worker thread keeps one open. It is reopened when the
    file at `path` is replaced, and dropped by `discard_webhook_db` after a fault.
    """
    identity = (str(path), _file_identity(path))
    cached = getattr(_per_thread, "db", None)
    if cached is not None and cached[0] == identity:
        _keep_checkpointed(identity[0])
        return cached[1]
    discard_webhook_db()
    db = open_webhook_db(path)
    _add_missing_columns(db)
    _per_thread.db = (identity, db, WebhookMemory())
    _keep_checkpointed(str(path))
    return db


def _add_missing_columns(db: sqlite_utils.Database) -> None:
    """Columns this version's queries need, added before the first of them runs. App start adds them
    too (app.db.upgrade_existing), but a database locked at that moment (an import running) would
    otherwise fail every call until a restart; here a failure fails this request only (music), the
    connection is not kept, and the next request tries again."""
    if missing_columns(db):
        try:
            add_missing_columns(db)
        except sqlite3.Error:
            db.close()
            raise


def webhook_memory() -> WebhookMemory:
    """The memory that goes with this thread's webhook connection (see load_inputs)."""
    cached = getattr(_per_thread, "db", None)
    return cached[2] if cached is not None else WebhookMemory()


def discard_webhook_db() -> None:
    """Close this thread's cached connection (after a fault: the next request starts afresh)."""
    cached = getattr(_per_thread, "db", None)
    _per_thread.db = None
    if cached is not None:
        try:
            cached[1].close()
        except sqlite3.Error:
            pass


# (process id, database path) -> when a webhook last used it; one checkpoint thread per key.
_checkpointed: dict[tuple[int, str], float] = {}
_checkpointed_lock = threading.Lock()


def _keep_checkpointed(path: str) -> None:
    """Note a webhook's use of `path`; start its checkpoint thread in this process if none runs."""
    key = (os.getpid(), path)  # by process: a forked gunicorn worker has no threads of its parent
    if key in _checkpointed:
        _checkpointed[key] = time.monotonic()
        return
    with _checkpointed_lock:
        if key not in _checkpointed:
            _checkpointed[key] = time.monotonic()
            threading.Thread(target=_checkpoint_while_used, args=(key,), daemon=True,
                             name=f"holdguard-checkpoint {path}").start()


def _checkpoint_while_used(key: tuple[int, str]) -> None:
    """Checkpoint the WAL every CHECKPOINT_EVERY_S until webhooks stop using the database.

    PASSIVE never blocks readers or writers; when it cannot finish (a lock, a
    long reader) the next round goes on. A WAL past WAL_TRUNCATE_FRAMES is
    finished and truncated (writers wait for that moment, a few milliseconds). Ends after CHECKPOINT_IDLE_S without
    webhook use, so idle databases (and tests' temporary ones) hold no thread.
    """
    path, conn, identity = key[1], None, None
    try:
        while time.monotonic() - _checkpointed[key] < CHECKPOINT_IDLE_S:
            time.sleep(CHECKPOINT_EVERY_S)
            try:
                if conn is None or _file_identity(path) != identity:
                    if conn is not None:
                        conn.close()
                    conn, identity = None, _file_identity(path)
                    conn = open_webhook_db(path).conn
                _busy, wal_frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if wal_frames >= WAL_TRUNCATE_FRAMES:
                    # Under steady writes PASSIVE never catches up enough for the WAL to start over:
                    # now and then, briefly hold writers back to finish and shrink it.
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (sqlite3.Error, OSError):
                pass  # the database is missing, locked or broken: the webhooks report that
    finally:
        with _checkpointed_lock:
            _checkpointed.pop(key, None)
        if conn is not None:
            conn.close()


def _file_identity(path: str | Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def normalize_phone(raw: str | None, default_region: str = "US") -> str | None:
    """E.164 form of a caller id ("(555) 555-0102" -> "+15555550102"), as the CRM import stores
    numbers; None when it is no phone number ("anonymous", empty)."""
    if raw and E164.fullmatch(raw):
        return raw  # what Twilio sends; to_e164 would return it unchanged (or no customer has it)
    try:
        return to_e164(raw, default_region)
    except ValueError:
        return None


def _dicts(cursor) -> list[dict]:
    keys = [column[0] for column in cursor.description]
    return [dict(zip(keys, row)) for row in cursor.fetchall()]


def _query(db, sql: str, params=()) -> list[dict]:
    return _dicts(db.execute(sql, params))


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
    rows = _query(db, "SELECT c.customer_id, c.name, c.products, c.marketing_opt_out, "
                      "i.id AS issue_id, i.severity, i.summary FROM customers c "
                      "LEFT JOIN issues i ON i.customer_id = c.customer_id "
                      "AND (i.closed_at IS NULL OR i.closed_at = '') "
                      "WHERE c.phone_e164 = ? ORDER BY c.customer_id, i.opened_at, i.id", [phone_e164])
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


PLAY_COLUMNS = "segment_id, kind, at, at_s, duration_s"


def _plays(rows) -> tuple[Play, ...]:
    """Plays from rows of PLAY_COLUMNS."""
    return tuple(Play(segment_id, kind, parse_utc(at), at_s or 0.0, duration_s or 0.0)
                 for segment_id, kind, at, at_s, duration_s in rows)


CALL_COLUMNS = ("caller", "customer_id", "queue", "last_position_told")


def load_call(db, call_sid: str, memory: WebhookMemory | None = None) -> tuple[CallSoFar, dict | None]:
    """What this call heard so far, in order, and the last queue position it was told; and its calls row.

    With `memory`, only plays logged since this connection last read the call are
    fetched (play ids only grow, whichever worker wrote them).
    """
    last_id, known = memory.calls.get(call_sid, (0, ())) if memory else (0, ())
    rows = db.execute(f"SELECT id, {PLAY_COLUMNS} FROM plays WHERE call_sid = ? AND id > ? ORDER BY id",
                      [call_sid, last_id]).fetchall()
    plays = known + _plays(row[1:] for row in rows)
    if memory is not None:
        memory.calls[call_sid] = (rows[-1][0] if rows else last_id, plays)
        memory.calls.move_to_end(call_sid)
        if len(memory.calls) > CALLS_REMEMBERED:
            memory.calls.popitem(last=False)
    call_rows = _query(db, f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE call_sid = ?", [call_sid])
    call_row = call_rows[0] if call_rows else None
    return CallSoFar(plays, call_row["last_position_told"] if call_row else None), call_row


def load_history(db, caller_key: str | None, call_sid: str, since: datetime,
                 simulated: bool = False) -> tuple[Play, ...]:
    """Promos this caller heard in earlier calls since `since` (for promo_repeat_days).

    A real call's history leaves simulated calls out (a primary-key lookup per
    promo found); a simulated call's history is every earlier call.
    """
    if not caller_key:
        return ()
    real_only = "" if simulated else f"AND {REAL_PLAY} "
    return _plays(db.execute(f"SELECT {PLAY_COLUMNS} FROM plays WHERE caller = ? AND at >= ? AND call_sid != ? "
                             f"AND kind = 'promo' {real_only}ORDER BY at", [caller_key, format_utc(since), call_sid]))


def load_queue(db, queue_name: str) -> QueueSettings:
    rows = _query(db, "SELECT * FROM queues WHERE name = ?", [queue_name])
    if not rows:
        raise NoHoldFlow(f"no hold flow for queue '{queue_name}' (run `holdguard flows load FILE`)")
    return queue_from_row(rows[0])


def load_segments(db, queue_name: str) -> tuple[Segment, ...]:
    """The catalog segments that may play in this queue (the policy checks their time windows)."""
    segments = (segment_from_row(row) for row in _query(db, "SELECT * FROM segments ORDER BY rowid"))
    return tuple(s for s in segments if s.applies_to(queue_name))


def load_queue_catalog(db, queue_name: str, cache: dict | None = None) -> tuple[QueueSettings, tuple[Segment, ...]]:
    """The queue's settings and segments, from `cache` if read there less than CATALOG_CACHE_S ago."""
    if cache is not None:
        expires, queue, segments = cache.get(queue_name, (0.0, None, ()))
        if time.monotonic() < expires:
            return queue, segments
    queue, segments = load_queue(db, queue_name), load_segments(db, queue_name)
    if cache is not None:
        cache[queue_name] = (time.monotonic() + CATALOG_CACHE_S, queue, segments)
    return queue, segments


def load_inputs(db, call_sid: str, caller_key: str | None, queue_name: str, now: datetime,
                memory: WebhookMemory | None = None, simulated: bool = False) -> PolicyInputs:
    """Everything decide() needs for one wait request. Raises NoHoldFlow for an unconfigured queue.

    With `memory` (the webhook's, see webhook_memory) the catalog is read at most
    once per CATALOG_CACHE_S and a call's plays incrementally; customers and
    their issues are always read fresh. `simulated`: this is a simulated call
    (see load_history).
    """
    queue, segments = load_queue_catalog(db, queue_name, memory.catalog if memory else None)
    since = now - timedelta(days=queue.promo_repeat_days)
    call, call_row = load_call(db, call_sid, memory)
    caller = load_caller(db, caller_key)
    return PolicyInputs(
        caller=caller,
        call=call,
        # Earlier calls matter only for promos: not read when no promo can play anyway.
        history=() if promos_blocked(caller, call, queue) else load_history(db, caller_key, call_sid, since,
                                                                            simulated),
        queue=queue,
        catalog=segments,
        call_row=call_row,
    )


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
                decision: Decision, at: datetime, at_s: float, call_row: dict | None = None,
                simulated: bool = False) -> None:
    """Log one answer and keep the call's row current, in one transaction.

    `call_row` is the calls row as read for this request (see load_call): when
    nothing in it changes, only the play is written (less work per answer).
    """
    segment = decision.segment
    latest = {"caller": caller_key, "customer_id": customer_id, "queue": queue_name}
    if decision.position_told is not None:
        latest["last_position_told"] = decision.position_told
    unchanged = call_row is not None and all(call_row[name] == value for name, value in latest.items())
    with contextlib.nullcontext() if unchanged else db.atomic():  # one statement needs no BEGIN/COMMIT
        db.execute("INSERT INTO plays (call_sid, caller, customer_id, queue, segment_id, kind, at, at_s, "
                   "duration_s, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [call_sid, caller_key, customer_id, queue_name, segment.id, segment.kind,
                    format_utc(at), at_s, segment.duration_s, decision.reason])
        if not unchanged:
            _upsert_call(db, call_sid, at, simulated, latest)


def record_queue_result(db, call_sid: str, queue_result: str, queue_time_s: float | None,
                        at: datetime, simulated: bool = False) -> None:
    """How the wait ended (from the Enqueue action URL)."""
    _upsert_call(db, call_sid, at, simulated,
                 {"queue_result": queue_result, "queue_time_s": queue_time_s, "ended_at": format_utc(at)})


def save_caller(db, caller: Caller, opened_at: datetime) -> None:
    """Write a customer and their open issues (the shape the CRM import writes); replaces both."""
    with db.atomic():
        db["customers"].upsert({
            "customer_id": caller.customer_id, "phone_e164": caller.phone_e164, "name": caller.name,
            "products": json.dumps(list(caller.products)),
            "marketing_opt_out": int(caller.marketing_opt_out), "updated_at": format_utc(opened_at),
        }, pk="customer_id")
        db.execute("DELETE FROM issues WHERE customer_id = ?", [caller.customer_id])
        db["issues"].insert_all([{
            "id": issue.id, "customer_id": caller.customer_id, "severity": issue.severity,
            "summary": issue.summary, "opened_at": format_utc(opened_at), "closed_at": None,
            "updated_at": format_utc(opened_at),
        } for issue in caller.open_issues], pk="id")

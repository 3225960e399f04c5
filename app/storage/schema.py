"""Every table holdguard keeps, and the ordered migrations that bring an older database up to date.

Written to be read by a person in Datasette:

customers         one row per CRM customer, keyed by customer_id; phone in E.164
issues            open and closed issues; closed_at IS NULL means open
queues            hold-flow settings per Twilio queue name (from `flows load`); agent_whisper = 1:
                  /twilio/agent-whisper speaks the caller's hold to the agent
segments          what may be played: music, promo, reassurance, notice, tip
product_aliases   other names of a catalog product (`[product."Galaxy S7"] aliases = [...]`)
calls             one row per CallSid: who, which queue, how the wait ended; simulated = 1
                  for a call `holdguard simulate` (or the /flows form) made, not a caller
plays             the decision log: every answer to /twilio/wait, what it played, why
                  (`cause`, one of app.core.policy.CAUSES, beside the readable `reason`);
                  one row per (call_sid, queue_time): a retried request gets the same answer
play_skips        each promo an answer passed over, with its cause
recordings        Twilio recordings fetched for audit
audits, audit_*   audit results; audit_messages_fts indexes the transcripts
schema_migrations the migrations applied to this database, in order

Times are stored in one form (app.core.times): "2026-11-20T09:12:00Z".
"""
from datetime import datetime, timezone

import sqlite_utils

from app.core.times import format_utc, stored_or_none
from app.storage.connect import connect, transaction

TABLES = {
    "customers": (
        {"customer_id": str, "phone_e164": str, "name": str, "products": str,
         "marketing_opt_out": int, "opted_out_at": str, "updated_at": str},
        {"pk": "customer_id"},
    ),
    "issues": (
        {"id": str, "customer_id": str, "severity": str, "summary": str,
         "opened_at": str, "closed_at": str, "updated_at": str},
        {"pk": "id", "foreign_keys": [("customer_id", "customers", "customer_id")]},
    ),
    "queues": (
        {"name": str, "music": str, "music_chunk_s": float, "promos_per_call_max": int,
         "promo_share_max": float, "promo_repeat_days": float, "reassurance_every_s": float,
         "reassurance_per_call_max": int, "wait_announce_every_s": float,
         "suppress_min_severity": str, "agent_whisper": int},
        {"pk": "name"},
    ),
    "segments": (
        {"id": str, "kind": str, "play": str, "say": str, "duration_s": float,
         "products": str, "queues": str, "active_from": str, "active_until": str},
        {"pk": "id"},
    ),
    "product_aliases": (
        {"alias": str, "product": str},
        {"pk": "alias"},
    ),
    "calls": (
        {"call_sid": str, "caller": str, "customer_id": str, "queue": str,
         "started_at": str, "ended_at": str, "queue_result": str, "queue_time_s": float,
         "last_position_told": int, "simulated": int},
        {"pk": "call_sid", "not_null": {"simulated"}, "defaults": {"simulated": 0}},
    ),
    "plays": (
        {"id": int, "call_sid": str, "caller": str, "customer_id": str, "queue": str,
         "segment_id": str, "kind": str, "at": str, "at_s": float, "duration_s": float,
         "reason": str, "cause": str, "queue_time": str, "play_url": str, "say_text": str},
        {"pk": "id"},
    ),
    "play_skips": (
        {"play_id": int, "segment_id": str, "cause": str},
        {"pk": ("play_id", "segment_id"), "foreign_keys": [("play_id", "plays", "id")]},
    ),
    "recordings": (
        {"sid": str, "call_sid": str, "date_created": str, "duration_s": float, "path": str,
         "fetched_at": str, "audit_id": int, "status": str, "error": str},
        {"pk": "sid"},
    ),
    "audits": (
        {"id": int, "recording": str, "path": str, "sha256": str, "audited_at": str, "duration_s": float,
         "speech_s": float, "music_s": float, "silence_s": float, "promo_s": float,
         "promo_share": float, "findings": int, "call_sid": str, "context": str, "report": str},
        {"pk": "id"},
    ),
    "audit_segments": (
        {"audit_id": int, "start_s": float, "end_s": float, "kind": str},
        {"foreign_keys": [("audit_id", "audits", "id")]},
    ),
    "audit_messages": (
        {"audit_id": int, "message_id": str, "category": str, "text": str, "plays": int,
         "products": str, "cue": str},
        {"pk": ("audit_id", "message_id"), "foreign_keys": [("audit_id", "audits", "id")]},
    ),
    "audit_plays": (
        {"audit_id": int, "message_id": str, "start_s": float, "end_s": float},
        {"foreign_keys": [("audit_id", "audits", "id")]},
    ),
    "audit_findings": (
        {"id": int, "audit_id": int, "rule": str, "severity": str, "message_id": str,
         "count": int, "evidence": str, "at_s": str},
        {"pk": "id", "foreign_keys": [("audit_id", "audits", "id")]},
    ),
    "schema_migrations": (
        {"version": int, "name": str, "applied_at": str},
        {"pk": "version"},
    ),
}
AUDIT_CHILD_TABLES = ["audit_segments", "audit_messages", "audit_plays", "audit_findings"]

# Columns added after databases were first made: (table, column, type, NOT NULL default or None).
LATER_COLUMNS = [
    ("customers", "opted_out_at", str, None),
    ("calls", "simulated", int, 0),
    ("audits", "path", str, None),
    ("plays", "cause", str, None),
    ("plays", "queue_time", str, None),
    ("plays", "play_url", str, None),
    ("plays", "say_text", str, None),
    ("queues", "agent_whisper", int, 0),
]

# Every column holding a time, in the one stored form.
TIME_COLUMNS = {
    "customers": ("opted_out_at", "updated_at"),
    "issues": ("opened_at", "closed_at", "updated_at"),
    "segments": ("active_from", "active_until"),
    "calls": ("started_at", "ended_at"),
    "plays": ("at",),
    "recordings": ("date_created", "fetched_at"),
    "audits": ("audited_at",),
}

INDEXES = [
    ("customers", ["phone_e164"]),
    ("issues", ["customer_id"]),
    ("plays", ["call_sid"]),
    ("plays", ["caller", "at"]),
    ("plays", ["caller", "kind", "at"]),  # a frequent caller's promo history, across calls
    ("plays", ["segment_id", "at"]),  # /campaigns: a promo's plays in a window
    ("plays", ["cause", "at"]),  # /campaigns: answers where no promo could play, by cause
    ("plays", ["at"]),
    ("play_skips", ["segment_id"]),
    ("recordings", ["call_sid"]),
    ("audits", ["path"]),
    ("audits", ["audited_at"]),
    *((child, ["audit_id"]) for child in AUDIT_CHILD_TABLES),
]

# A retried wait request (same CallSid and QueueTime) must find the answer already given.
PLAY_REQUEST_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS plays_request ON plays (call_sid, queue_time) "
                      "WHERE queue_time IS NOT NULL")


def _create_tables(db) -> None:
    for name, (columns, options) in TABLES.items():
        if not db[name].exists():
            db[name].create(columns, **options)


def _add_later_columns(db) -> None:
    for table, column, column_type, default in LATER_COLUMNS:
        if column not in db[table].columns_dict:
            db[table].add_column(column, column_type, not_null_default=default)


def _one_time_form(db) -> None:
    """Rewrite every stored time in the one form (older rows held milliseconds or offsets)."""
    db.conn.create_function("stored_time", 1, stored_or_none, deterministic=True)
    for table, columns in TIME_COLUMNS.items():
        for column in columns:
            db.execute(f"UPDATE [{table}] SET [{column}] = stored_time([{column}]) "
                       f"WHERE [{column}] IS NOT NULL AND [{column}] IS NOT stored_time([{column}])")


def _indexes(db) -> None:
    for table, columns in INDEXES:
        db[table].create_index(columns, if_not_exists=True)
    db.execute(PLAY_REQUEST_INDEX)


def _transcript_search(db) -> None:
    if not db["audit_messages_fts"].exists():
        db["audit_messages"].enable_fts(["text"], create_triggers=True, tokenize="porter")


# Ordered; each is safe on a new database (where the tables already have today's shape).
MIGRATIONS = [
    (1, "tables", _create_tables),
    (2, "later columns", _add_later_columns),
    (3, "one stored time form", _one_time_form),
    (4, "indexes and one play per wait request", _indexes),
    (5, "transcript search", _transcript_search),
    (6, "queue setting agent_whisper", _add_later_columns),
]


def applied_versions(db) -> set[int]:
    if not db["schema_migrations"].exists():
        return set()
    return {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}


def pending(db) -> list[tuple[int, str]]:
    """The migrations this database still needs: (version, name)."""
    done = applied_versions(db)
    return [(version, name) for version, name, _ in MIGRATIONS if version not in done]


def migrate(db) -> list[str]:
    """Create or upgrade the schema in one transaction; the names of the migrations applied.

    Safe to run again, and from several processes at once: the write lock
    (BEGIN IMMEDIATE) makes them take turns, and the second finds nothing to do.
    """
    if not pending(db):
        return []
    applied = []
    with transaction(db):
        if not db["schema_migrations"].exists():
            columns, options = TABLES["schema_migrations"]
            db["schema_migrations"].create(columns, **options)
        done = applied_versions(db)
        for version, name, step in MIGRATIONS:
            if version in done:
                continue
            step(db)
            db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                       [version, name, format_utc(datetime.now(timezone.utc))])
            applied.append(name)
    return applied


def open_database(url) -> sqlite_utils.Database:
    """The database for a command that writes: created if missing, migrated to this version."""
    db = connect(url)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db

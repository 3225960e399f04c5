"""The webhook side's tables, written to be read by a person in Datasette.

customers   one row per CRM customer, keyed by customer_id; phone in E.164
issues      open and closed issues; closed_at IS NULL means open
queues      hold-flow settings per Twilio queue name (from `flows load`)
segments    what may be played: music, promo, reassurance, notice, tip
calls       one row per CallSid: who, which queue, how the wait ended; simulated = 1
            for a call `holdguard simulate` (or the /flows form) made, not a caller
plays       the decision log: every answer to /twilio/wait with its reason
"""
import sqlite3

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
         "suppress_min_severity": str},
        {"pk": "name"},
    ),
    "segments": (
        {"id": str, "kind": str, "play": str, "say": str, "duration_s": float,
         "products": str, "queues": str, "active_from": str, "active_until": str},
        {"pk": "id"},
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
         "reason": str},
        {"pk": "id"},
    ),
}

# Columns added after databases were first made: (table, column, type, NOT NULL default or None).
LATER_COLUMNS = [
    ("customers", "opted_out_at", str, None),
    ("calls", "simulated", int, 0),
]

# A condition on `plays` (unaliased): the play belongs to a real call, not a simulated one. A play
# without a calls row counts as real. One primary-key lookup per play row.
REAL_PLAY = ("NOT EXISTS (SELECT 1 FROM calls WHERE calls.call_sid = plays.call_sid "
             "AND calls.simulated = 1)")

INDEXES = [
    ("customers", ["phone_e164"]),
    ("issues", ["customer_id"]),
    ("plays", ["call_sid"]),
    ("plays", ["caller", "at"]),
    ("plays", ["caller", "kind", "at"]),  # a frequent caller's promo history, across calls
    ("plays", ["segment_id", "at"]),
]


def create_tables(db) -> None:
    """Create the webhook tables and indexes; safe to run again."""
    for name, (columns, options) in TABLES.items():
        if not db[name].exists():
            db[name].create(columns, **options)
    add_missing_columns(db)
    for table, columns in INDEXES:
        db[table].create_index(columns, if_not_exists=True)


def missing_columns(db) -> list[tuple]:
    """The LATER_COLUMNS that this database's existing tables lack."""
    return [(table, column, column_type, default) for table, column, column_type, default in LATER_COLUMNS
            if db[table].exists() and column not in db[table].columns_dict]


def add_missing_columns(db) -> list[str]:
    """Add LATER_COLUMNS to existing tables that lack them, keeping every row; "table.column" per one added.

    Safe to run again, and from several processes at once (gunicorn workers
    starting together): a column another process just added is not an error.
    """
    added = []
    for table, column, column_type, default in missing_columns(db):
        try:
            db[table].add_column(column, column_type, not_null_default=default)
        except sqlite3.OperationalError as error:
            if "duplicate column name" not in str(error):
                raise
            continue
        added.append(f"{table}.{column}")
    return added

"""Every table holdguard keeps, as data: columns, keys, later columns, time columns, indexes.

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
library_messages  the message library: each distinct message heard, its fingerprint and hearings
library_plays     each audited recording's plays of a library message, when, to whom
schema_migrations the migrations applied to this database, in order

Times are stored in one form (app.core.times): "2026-11-20T09:12:00Z".
"""

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
         "suppress_min_severity": str, "agent_whisper": int, "position": int},
        {"pk": "name"},
    ),
    "segments": (
        {"id": str, "kind": str, "play": str, "say": str, "duration_s": float,
         "products": str, "queues": str, "active_from": str, "active_until": str, "position": int},
        {"pk": "id"},
    ),
    "product_aliases": (
        {"alias": str, "product": str, "position": int},
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
         "products": str, "cue": str, "position": int, "avg_logprob": float, "words": str},
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
    "library_messages": (
        {"id": int, "entry_key": str, "engine": str, "model": str, "vocabulary": str, "duration_s": float,
         "fingerprint": str, "hearings": str, "text": str, "category": str, "products": str,
         "first_heard": str, "last_heard": str, "plays": int, "recordings": int},
        {"pk": "id"},
    ),
    "library_plays": (
        {"library_id": int, "audit_id": int, "message_id": str, "plays": int, "heard_at": str, "caller": str,
         "listener": str, "open_issue": int, "owns_product": int},
        {"pk": ("library_id", "audit_id"), "foreign_keys": [("library_id", "library_messages", "id")]},
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
    ("queues", "position", int, None),  # load order (SQLite's rowid, which PostgreSQL lacks)
    ("segments", "position", int, None),
    ("product_aliases", "position", int, None),
    ("audit_messages", "position", int, None),
    ("audit_messages", "avg_logprob", float, None),  # how sure Whisper was of the text; NULL: not known
    ("audit_messages", "words", str, None),  # JSON [["S7,", 0.93], ...]: each word's probability; NULL: not known
]
ORDERED_TABLES = ("queues", "segments", "product_aliases", "audit_messages")

# Every column holding a time, in the one stored form.
TIME_COLUMNS = {
    "customers": ("opted_out_at", "updated_at"),
    "issues": ("opened_at", "closed_at", "updated_at"),
    "segments": ("active_from", "active_until"),
    "calls": ("started_at", "ended_at"),
    "plays": ("at",),
    "recordings": ("date_created", "fetched_at"),
    "audits": ("audited_at",),
    "library_messages": ("first_heard", "last_heard"),
    "library_plays": ("heard_at",),
}

INDEXES = [
    ("customers", ["phone_e164"]),
    ("issues", ["customer_id"]),
    ("plays", ["caller", "at"]),  # a caller's latest answer (simulate's next call)
    ("plays", ["caller", "kind", "at"]),  # a frequent caller's promo history, across calls
    ("plays", ["segment_id", "at"]),  # /campaigns: a promo's plays in a window
    ("plays", ["cause", "at"]),  # /campaigns: answers where no promo could play, by cause
    ("play_skips", ["segment_id"]),
    ("recordings", ["call_sid"]),
    ("audits", ["path"]),
    ("audits", ["audited_at"]),
    *((child, ["audit_id"]) for child in AUDIT_CHILD_TABLES),
]

# The message library (migration 8): one row per entry_key; the fleet view reads plays by time.
LIBRARY_INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS library_messages_entry_key ON library_messages (entry_key)",
    "CREATE INDEX IF NOT EXISTS idx_library_messages_engine_model ON library_messages (engine, model)",
    "CREATE INDEX IF NOT EXISTS idx_library_plays_heard_at ON library_plays (heard_at)",
    "CREATE INDEX IF NOT EXISTS idx_library_plays_audit_id ON library_plays (audit_id)",
]


def primary_key(table: str) -> list[str]:
    pk = TABLES[table][1].get("pk")
    return [pk] if isinstance(pk, str) else list(pk or ())

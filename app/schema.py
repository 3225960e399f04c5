"""The webhook side's tables, written to be read by a person in Datasette.

customers   one row per CRM customer, keyed by customer_id; phone in E.164
issues      open and closed issues; closed_at IS NULL means open
queues      hold-flow settings per Twilio queue name (from `flows load`)
segments    what may be played: music, promo, reassurance, notice, tip
calls       one row per CallSid: who, which queue, how the wait ended
plays       the decision log: every answer to /twilio/wait with its reason
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
         "last_position_told": int},
        {"pk": "call_sid"},
    ),
    "plays": (
        {"id": int, "call_sid": str, "caller": str, "customer_id": str, "queue": str,
         "segment_id": str, "kind": str, "at": str, "at_s": float, "duration_s": float,
         "reason": str},
        {"pk": "id"},
    ),
}

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
    if "opted_out_at" not in db["customers"].columns_dict:  # databases made before the column
        db["customers"].add_column("opted_out_at", str)
    for table, columns in INDEXES:
        db[table].create_index(columns, if_not_exists=True)

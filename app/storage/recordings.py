"""The `recordings` table: each Twilio recording fetched, its file, its call and its audit.

status: downloaded (file stored, not audited) | audited | audit_failed | download_failed
"""


def get(db, sid: str) -> dict | None:
    rows = list(db.query("select * from recordings where sid = ?", [sid]))
    return rows[0] if rows else None


def save(db, sid: str, **values) -> None:
    """Create or update one recording's row (only the columns given)."""
    db["recordings"].upsert({"sid": sid, **values}, pk="sid", alter=False)


def call_sid_of(db, recording_sid: str) -> str | None:
    """The call a fetched recording belongs to."""
    row = get(db, recording_sid)
    return row["call_sid"] if row and row["call_sid"] else None

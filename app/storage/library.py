"""The message library: each distinct message the audits heard, and who heard it where.

library_messages  one row per distinct recorded message (entry_key): its acoustic fingerprint
                  (JSON: base64 float32 log-mel frames), the Whisper hearings of it (JSON) and who
                  heard them (engine with version, model, vocabulary prompt), the text, category and
                  products it was classified as, first/last heard, plays and recordings counted
library_plays     per audited recording and entry: its plays, the audit message they were grouped
                  into, when (the call's start, else the audit's time), the caller (NULL when the
                  recording has no call; `listener` is then the recording), and whether the caller
                  had an open issue or owned a product the message sells

An audit replaced by a re-audit loses its library_plays rows at the next `record`, and the counts
follow. The fingerprints are read by audits.library; here they are text.
"""
import json
from datetime import date, datetime, time, timedelta, timezone

from app.core.times import format_utc
from app.storage.connect import transaction

ENTRY_COLUMNS = ("entry_key", "engine", "model", "vocabulary", "duration_s", "fingerprint", "hearings", "text")
ORPHAN_PLAYS = "NOT EXISTS (SELECT 1 FROM audits a WHERE a.id = library_plays.audit_id)"


def exists(db) -> bool:
    """Whether this database has the library's tables (migration 8)."""
    return db["library_messages"].exists()


def load_entries(db, engine: str, model: str) -> list[dict]:
    """The entries heard by this engine (with version) and model, oldest first."""
    if not exists(db):
        return []
    return db.query(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM library_messages WHERE engine = ? AND model = ? "
                    "ORDER BY id", [engine, model])


def record(db, audit_id: int, *, new_entries: list[dict], hearings: dict[str, tuple[str, str]],
           uses: list[dict]) -> None:
    """One audited recording in one transaction: `new_entries` (rows of ENTRY_COLUMNS; a key already
    stored is left as it is), `hearings` (entry_key -> (hearings JSON, text)) for entries heard again,
    and `uses`, one per entry it played: entry_key, plays, message_id, category, products (JSON),
    open_issue, owns_product (0/1)."""
    with transaction(db):
        orphaned = [row["library_id"] for row in db.query(
            f"SELECT DISTINCT library_id FROM library_plays WHERE {ORPHAN_PLAYS} OR audit_id = ?", [audit_id])]
        db.execute(f"DELETE FROM library_plays WHERE {ORPHAN_PLAYS} OR audit_id = ?", [audit_id])
        columns = ", ".join(f'"{column}"' for column in ENTRY_COLUMNS)
        for row in new_entries:
            db.execute(f"INSERT INTO library_messages ({columns}, plays, recordings) "
                       f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))}, 0, 0) ON CONFLICT (entry_key) DO NOTHING",
                       [row[column] for column in ENTRY_COLUMNS])
        for key, (hearings_json, text) in hearings.items():
            db.execute("UPDATE library_messages SET hearings = ?, text = ? WHERE entry_key = ?",
                       [hearings_json, text, key])
        heard = db.query("SELECT coalesce(c.started_at, a.audited_at) AS heard_at, c.caller AS caller, "
                         "coalesce(a.path, a.recording) AS path FROM audits a "
                         "LEFT JOIN calls c ON c.call_sid = a.call_sid WHERE a.id = ?", [audit_id])[0]
        for use in uses:
            db.execute("INSERT INTO library_plays (library_id, audit_id, message_id, plays, heard_at, caller, "
                       "listener, open_issue, owns_product) SELECT id, ?, ?, ?, ?, ?, ?, ?, ? FROM library_messages "
                       "WHERE entry_key = ?",
                       [audit_id, use["message_id"], use["plays"], heard["heard_at"], heard["caller"],
                        heard["caller"] or f"recording {heard['path']}", use["open_issue"], use["owns_product"],
                        use["entry_key"]])
            if use["category"] is not None:
                db.execute("UPDATE library_messages SET category = ?, products = ? WHERE entry_key = ?",
                           [use["category"], use["products"], use["entry_key"]])
        touched = {row["id"] for row in db.query(
            "SELECT DISTINCT library_id AS id FROM library_plays WHERE audit_id = ?", [audit_id])}
        _recount(db, touched | set(orphaned))


def _recount(db, library_ids: set[int]) -> None:
    """Plays, recordings and first/last heard of these entries, from their library_plays rows."""
    for library_id in sorted(library_ids):
        db.execute("""UPDATE library_messages SET
                        plays = (SELECT coalesce(sum(p.plays), 0) FROM library_plays p WHERE p.library_id = ?),
                        recordings = (SELECT count(*) FROM library_plays p WHERE p.library_id = ?),
                        first_heard = (SELECT min(p.heard_at) FROM library_plays p WHERE p.library_id = ?),
                        last_heard = (SELECT max(p.heard_at) FROM library_plays p WHERE p.library_id = ?)
                      WHERE id = ?""", [library_id] * 5)


def fleet(db, since: str, until: str, limit: int = 200) -> list[dict]:
    """The messages heard in [since, until), most played first: text, category, products, first/last
    heard (ever), and in the window plays, recordings, distinct callers (a recording without a call
    counts as one caller), plays and callers with an open issue, plays to callers owning the product."""
    return db.query(
        """SELECT m.id, m.entry_key, m.text, m.category, m.products, m.engine, m.model,
                  m.first_heard, m.last_heard, m.plays AS plays_ever, m.recordings AS recordings_ever,
                  CAST(sum(p.plays) AS BIGINT) AS plays, count(*) AS recordings, count(DISTINCT p.listener) AS callers,
                  CAST(sum(CASE WHEN p.open_issue = 1 THEN p.plays ELSE 0 END) AS BIGINT) AS plays_open_issue,
                  count(DISTINCT CASE WHEN p.open_issue = 1 THEN p.listener END) AS callers_open_issue,
                  CAST(sum(CASE WHEN p.owns_product = 1 THEN p.plays ELSE 0 END) AS BIGINT) AS plays_owner,
                  count(DISTINCT CASE WHEN p.owns_product = 1 THEN p.listener END) AS callers_owner
           FROM library_messages m JOIN library_plays p ON p.library_id = m.id
           WHERE p.heard_at >= ? AND p.heard_at < ? AND m.text <> ''
           GROUP BY m.id ORDER BY plays DESC, m.id LIMIT ?""", [since, until, limit])


def recordings(db, library_ids: list[int], since: str, until: str) -> list[dict]:
    """The audited recordings that played these entries in [since, until), newest first."""
    if not library_ids:
        return []
    return db.query(f"""SELECT p.library_id, p.audit_id, p.message_id, p.plays, p.heard_at, a.recording
                        FROM library_plays p JOIN audits a ON a.id = p.audit_id
                        WHERE p.library_id IN ({', '.join('?' * len(library_ids))})
                          AND p.heard_at >= ? AND p.heard_at < ?
                        ORDER BY p.heard_at DESC, p.audit_id DESC""", [*library_ids, since, until])


DEFAULT_WINDOW_DAYS = 7
RECORDINGS_SHOWN = 5  # links per message on the fleet view


def window(now: datetime, days: int = DEFAULT_WINDOW_DAYS, from_day: date | None = None,
           to_day: date | None = None) -> tuple[str, str]:
    """[since, until) in the stored time form: from_day..to_day (whole days, UTC, to_day included) when
    given, else the `days` before `now`."""
    until = (datetime.combine(to_day + timedelta(days=1), time(), timezone.utc) if to_day
             else now + timedelta(seconds=1))
    since = datetime.combine(from_day, time(), timezone.utc) if from_day else until - timedelta(days=days)
    return format_utc(since), format_utc(until)


def fleet_view(db, since: str, until: str, limit: int = 200, recordings_shown: int = RECORDINGS_SHOWN) -> list[dict]:
    """`fleet` with each message's products as a list and its latest recordings in the window
    (`recordings`: audit_id, recording, plays, heard_at; `more_recordings`: how many more)."""
    if not exists(db):
        return []
    rows = fleet(db, since, until, limit)
    heard: dict[int, list[dict]] = {}
    for row in recordings(db, [row["id"] for row in rows], since, until):
        heard.setdefault(row["library_id"], []).append(row)
    return [{**row, "products": json.loads(row["products"] or "[]"),
             "recordings_list": heard.get(row["id"], [])[:recordings_shown],
             "more_recordings": max(0, len(heard.get(row["id"], [])) - recordings_shown)} for row in rows]

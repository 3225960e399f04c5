"""Audits in SQLite, in the same database as the webhook, readable in Datasette.

audits           one row per audited recording: `recording` as it was given, `path` the
                 absolute file (re-auditing a file, however it is named, replaces its rows)
audit_segments   speech / music / silence spans
audit_messages   distinct messages with category, products and transcript (full-text indexed)
audit_plays      every play of every message
audit_findings   rule hits with evidence

`save` writes one AuditResult in a single transaction: a failure leaves no partial rows.
"""
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from audits.data import AuditResult, Context, Finding, Message, Segment

TABLES = {
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
}
CHILD_TABLES = ["audit_segments", "audit_messages", "audit_plays", "audit_findings"]


def create_tables(db) -> None:
    """Create the audit tables and the transcript full-text index; safe to run again."""
    for name, (columns, options) in TABLES.items():
        if not db[name].exists():
            db[name].create(columns, **options)
    if "path" not in db["audits"].columns_dict:  # databases made before the column existed
        db["audits"].add_column("path", str)
    db["audits"].create_index(["path"], if_not_exists=True)
    for child in CHILD_TABLES:
        db[child].create_index(["audit_id"], if_not_exists=True)
    if not db["audit_messages_fts"].exists():
        db["audit_messages"].enable_fts(["text"], create_triggers=True, tokenize="porter")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as audio_file:
        for block in iter(lambda: audio_file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(db, result: AuditResult, *, sha256: str = "", call_sid: str | None = None,
         now: datetime | None = None) -> int:
    """Store one audit, replacing any earlier audit of the same recording; returns its id."""
    audited_at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds").replace("+00:00", "Z")
    report = result.to_json()
    summary = report["summary"]
    with db.atomic():  # one transaction: all rows or none
        path = str(Path(result.recording).resolve())
        for old in db.query("select id from audits where path = ?", [path]):
            _delete_audit(db, old["id"])
        audit_id = db["audits"].insert({
            "recording": result.recording, "path": path, "sha256": sha256, "audited_at": audited_at,
            "duration_s": result.duration_s,
            **{key: summary.get(key, 0) for key in
               ("speech_s", "music_s", "silence_s", "promo_s", "promo_share")},
            "findings": len(result.findings), "call_sid": call_sid,
            "context": json.dumps(_context_json(result.context)), "report": json.dumps(report),
        }).last_pk
        db["audit_segments"].insert_all(
            {"audit_id": audit_id, "start_s": s.start_s, "end_s": s.end_s, "kind": s.kind}
            for s in result.segments)
        db["audit_messages"].insert_all(
            {"audit_id": audit_id, "message_id": m.id, "category": m.category, "text": m.text,
             "plays": m.plays, "products": json.dumps(m.products), "cue": m.cue}
            for m in result.messages)
        db["audit_plays"].insert_all(
            {"audit_id": audit_id, "message_id": m.id, "start_s": start, "end_s": end}
            for m in result.messages for start, end in zip(m.play_times_s, m.play_ends_s))
        db["audit_findings"].insert_all(
            {"audit_id": audit_id, "rule": f.rule, "severity": f.severity, "message_id": f.message_id,
             "count": f.count, "evidence": f.evidence, "at_s": json.dumps(f.at_s)}
            for f in result.findings)
    return audit_id


def _delete_audit(db, audit_id: int) -> None:
    for child in CHILD_TABLES:
        db.execute(f"delete from [{child}] where audit_id = ?", [audit_id])
    db.execute("delete from audits where id = ?", [audit_id])


def _context_json(context: Context) -> dict:
    return {"open_issues": [vars(issue) for issue in context.open_issues],
            "owned_products": context.owned_products, "queue": context.queue,
            "issues_as_of": context.issues_as_of}


def load(db, audit_id: int) -> AuditResult | None:
    """Rebuild a stored audit as an AuditResult (None when there is no such audit)."""
    rows = list(db.query("select * from audits where id = ?", [audit_id]))
    if not rows:
        return None
    audit = rows[0]
    segments = [Segment(r["start_s"], r["end_s"], r["kind"]) for r in db.query(
        "select * from audit_segments where audit_id = ? order by start_s", [audit_id])]
    plays: dict[str, list[tuple[float, float]]] = {}
    for r in db.query("select * from audit_plays where audit_id = ? order by start_s", [audit_id]):
        plays.setdefault(r["message_id"], []).append((r["start_s"], r["end_s"]))
    messages = [Message(id=r["message_id"], text=r["text"],
                        play_times_s=[start for start, _ in plays.get(r["message_id"], [])],
                        play_ends_s=[end for _, end in plays.get(r["message_id"], [])],
                        category=r["category"], products=json.loads(r["products"] or "[]"),
                        cue=r["cue"] or "")
                for r in db.query("select * from audit_messages where audit_id = ? order by rowid",
                                  [audit_id])]
    findings = [Finding(rule=r["rule"], severity=r["severity"], message_id=r["message_id"],
                        count=r["count"], evidence=r["evidence"], at_s=json.loads(r["at_s"] or "[]"))
                for r in db.query("select * from audit_findings where audit_id = ? order by id",
                                  [audit_id])]
    return AuditResult(recording=audit["recording"], duration_s=audit["duration_s"],
                       segments=segments, messages=messages, findings=findings,
                       summary=json.loads(audit["report"])["summary"],
                       context=Context.from_dict(json.loads(audit["context"] or "{}")))


def search(db, query: str, limit: int = 50) -> list[dict]:
    """Full-text search over transcripts: matching messages with their audit's recording."""
    return list(db.query(
        """select a.id as audit_id, a.recording, m.message_id, m.category, m.plays, m.text
           from audit_messages_fts f
           join audit_messages m on m.rowid = f.rowid
           join audits a on a.id = m.audit_id
           where audit_messages_fts match ? order by f.rank limit ?""",
        [query, limit]))

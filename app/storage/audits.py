"""Audits in the same database as the webhook, readable in Datasette.

audits           one row per audited recording: `recording` as it was given, `path` the
                 absolute file (re-auditing a file, however it is named, replaces its rows)
audit_segments   speech / music / silence spans
audit_messages   distinct messages with category, products, transcript (full-text indexed) and
                 how sure Whisper was of it (avg_logprob) and of each word (words: JSON
                 [["S7,", 0.93], ...]; NULL for audits stored before they were kept)
audit_plays      every play of every message
audit_findings   rule hits with evidence

`save` writes one AuditResult in a single transaction: a failure leaves no partial rows.
"""
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from app.core.audit import AuditResult, Context, Finding, Message, Span, words_as_pairs, words_from_pairs
from app.core.times import format_utc
from app.storage.connect import transaction
from app.storage.schema import AUDIT_CHILD_TABLES

def save(db, result: AuditResult, *, sha256: str = "", call_sid: str | None = None,
         now: datetime | None = None) -> int:
    """Store one audit, replacing any earlier audit of the same recording; returns its id."""
    audited_at = format_utc(now or datetime.now(timezone.utc))
    report = result.to_json()
    summary = report["summary"]
    with transaction(db):  # one transaction: all rows or none
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
             "plays": m.plays, "products": json.dumps(m.products), "cue": m.cue, "position": n,
             "avg_logprob": m.avg_logprob,
             "words": None if m.words is None else json.dumps(words_as_pairs(m.words), ensure_ascii=False)}
            for n, m in enumerate(result.messages))
        db["audit_plays"].insert_all(
            {"audit_id": audit_id, "message_id": m.id, "start_s": start, "end_s": end}
            for m in result.messages for start, end in zip(m.play_times_s, m.play_ends_s))
        db["audit_findings"].insert_all(
            {"audit_id": audit_id, "rule": f.rule, "severity": f.severity, "message_id": f.message_id,
             "count": f.count, "evidence": f.evidence, "at_s": json.dumps(f.at_s)}
            for f in result.findings)
    return audit_id


def _delete_audit(db, audit_id: int) -> None:
    for child in AUDIT_CHILD_TABLES:
        db.execute(f'delete from "{child}" where audit_id = ?', [audit_id])
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
    segments = [Span(r["start_s"], r["end_s"], r["kind"]) for r in db.query(
        "select * from audit_segments where audit_id = ? order by start_s", [audit_id])]
    plays: dict[str, list[tuple[float, float]]] = {}
    for r in db.query("select * from audit_plays where audit_id = ? order by start_s", [audit_id]):
        plays.setdefault(r["message_id"], []).append((r["start_s"], r["end_s"]))
    messages = [Message(id=r["message_id"], text=r["text"],
                        play_times_s=[start for start, _ in plays.get(r["message_id"], [])],
                        play_ends_s=[end for _, end in plays.get(r["message_id"], [])],
                        category=r["category"], products=json.loads(r["products"] or "[]"),
                        cue=r["cue"] or "", avg_logprob=r["avg_logprob"],
                        words=None if r["words"] is None else words_from_pairs(json.loads(r["words"])))
                for r in db.query("select * from audit_messages where audit_id = ? order by position",
                                  [audit_id])]
    findings = [Finding(rule=r["rule"], severity=r["severity"], message_id=r["message_id"],
                        count=r["count"], evidence=r["evidence"], at_s=json.loads(r["at_s"] or "[]"))
                for r in db.query("select * from audit_findings where audit_id = ? order by id",
                                  [audit_id])]
    return AuditResult(recording=audit["recording"], duration_s=audit["duration_s"],
                       segments=segments, messages=messages, findings=findings,
                       summary=json.loads(audit["report"])["summary"],
                       context=Context.from_dict(json.loads(audit["context"] or "{}")))


SEARCH_COLUMNS = "a.id as audit_id, a.recording, m.message_id, m.category, m.plays, m.text"


def search(db, query: str, limit: int = 50, *, syntax: bool = True) -> list[dict]:
    """Full-text search over transcripts (word stems): matching messages with their audit's recording.

    syntax=True reads the query's own syntax ("a phrase", OR, prefix* on SQLite; web-search syntax
    on PostgreSQL), falling back to its plain words when it does not parse; syntax=False: every
    word, in any order.
    """
    if db.dialect == "postgresql":
        parse = "websearch_to_tsquery" if syntax else "plainto_tsquery"
        return db.query(f"""select {SEARCH_COLUMNS} from audit_messages m join audits a on a.id = m.audit_id
                            where m.text_search @@ {parse}('english', ?)
                            order by ts_rank(m.text_search, {parse}('english', ?)) desc, a.id, m.position
                            limit ?""", [query, query, limit])
    sql = f"""select {SEARCH_COLUMNS} from audit_messages_fts f
              join audit_messages m on m.rowid = f.rowid join audits a on a.id = m.audit_id
              where audit_messages_fts match ? order by f.rank limit ?"""
    if syntax:
        try:
            return db.query(sql, [query, limit])
        except sqlite3.OperationalError:  # FTS syntax error, e.g. an unbalanced quote
            pass
    return db.query(sql, [db.quote_fts(query), limit])


def has_audits(db) -> bool:
    return db["audits"].exists() and db.execute("select count(*) from audits").fetchone()[0] > 0


def audit_findings_count(db, audit_id: int) -> int:
    return db.execute("select findings from audits where id = ?", [audit_id]).fetchone()[0]


def audit_row(db, audit_id: int) -> dict | None:
    """An audit's row for the pages: recording, file path, when, call."""
    rows = list(db.query("select id, recording, coalesce(path, recording) as path, audited_at, call_sid, sha256 "
                         "from audits where id = ?", [audit_id]))
    return rows[0] if rows else None


def list_audits(db, *, rule: str = "", from_day: str | None = None, before_day: str | None = None,
                only_ids: set[int] | None = None, limit: int = 200) -> list[dict]:
    """Recent audits, newest first, filtered by a finding's rule, a day range ([from_day, before_day)) and ids."""
    where, params = [], []
    if rule:
        where.append("id in (select audit_id from audit_findings where rule = ?)")
        params.append(rule)
    if from_day:
        where.append("audited_at >= ?")
        params.append(from_day)
    if before_day:
        where.append("audited_at < ?")
        params.append(before_day)
    if only_ids is not None:
        where.append(f"id in ({', '.join('?' * len(only_ids))})" if only_ids else "1 = 0")
        params.extend(sorted(only_ids))
    sql = ("select id, recording, audited_at, duration_s, promo_share, findings, call_sid from audits"
           + (" where " + " and ".join(where) if where else "")
           + " order by audited_at desc, id desc limit ?")
    return list(db.query(sql, params + [limit]))


def severity_counts(db, audit_ids: list[int]) -> dict[int, dict[str, int]]:
    """Findings per audit, by severity."""
    if not audit_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for row in db.query(f"select audit_id, severity, count(*) as n from audit_findings "
                        f"where audit_id in ({', '.join('?' * len(audit_ids))}) group by audit_id, severity",
                        audit_ids):
        counts.setdefault(row["audit_id"], {})[row["severity"]] = row["n"]
    return counts


def first_play_s(db, audit_id: int, message_id: str) -> float | None:
    """When a message was first heard in an audited recording."""
    row = db.execute("select min(start_s) from audit_plays where audit_id = ? and message_id = ?",
                     [audit_id, message_id]).fetchone()
    return row[0] if row else None

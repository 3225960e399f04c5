"""Audit storage: one transaction per audit, replaced by a re-audit of the same file."""
import os

import pytest

from app.storage.connect import connect
from app.storage import audits as store
from app.storage.schema import AUDIT_CHILD_TABLES
from app.core.audit import AuditResult, Context, Finding, Issue, Message, Span, Word

SUMMARY = {"speech_s": 9.0, "music_s": 51.0, "silence_s": 0.0, "promo_s": 9.0, "promo_share": 0.15,
           "findings": 1}


def audit_of(recording, *, at_s=(5.0,)) -> AuditResult:
    promo = Message("m1", "Upgrade to the brand new Galaxy S7 today.", [5.0], [14.0], "promo", ["Galaxy S7"],
                    "promo cue: 'upgrade'")
    finding = Finding("promo_during_open_issue", "high", "m1", 1, "promo m1 played while CASE-1 is open",
                      list(at_s))
    return AuditResult(str(recording), 60.0, [Span(0, 5, "music"), Span(5, 14, "speech"),
                                               Span(14, 60, "music")],
                       [promo], [finding], dict(SUMMARY),
                       Context([Issue("CASE-1", "high", "reboots")], ["Galaxy S7"], "support"))


def rows(db) -> dict:
    return {table: db[table].count for table in ["audits", *AUDIT_CHILD_TABLES]}


@pytest.fixture
def db(db_path):
    return connect(db_path)


def test_save_then_load_round_trips_the_report(db, tmp_path):
    result = audit_of(tmp_path / "hold.wav")
    audit_id = store.save(db, result, sha256="abc")
    assert store.load(db, audit_id).to_json() == result.to_json()
    assert store.load(db, audit_id + 1) is None
    assert [m["message_id"] for m in store.search(db, "galaxy upgrade")] == ["m1"]


def test_a_failed_save_leaves_no_partial_rows_and_keeps_the_earlier_audit(db, tmp_path):
    recording = tmp_path / "hold.wav"
    first_id = store.save(db, audit_of(recording))
    before = rows(db)
    broken = audit_of(recording, at_s=(object(),))  # cannot be written: fails after the first inserts
    with pytest.raises(TypeError):
        store.save(db, broken)
    assert rows(db) == before
    assert store.load(db, first_id).to_json() == audit_of(recording).to_json()


def test_re_auditing_a_file_replaces_it_however_the_path_is_written(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store.save(db, audit_of("hold.wav"))
    store.save(db, audit_of(tmp_path / "hold.wav"))
    store.save(db, audit_of(os.path.join(".", "sub", "..", "hold.wav")))
    assert rows(db) == {"audits": 1, "audit_segments": 3, "audit_messages": 1, "audit_plays": 1,
                        "audit_findings": 1}


def test_same_name_in_another_folder_is_another_recording(db, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    store.save(db, audit_of(tmp_path / "a" / "hold.wav"))
    store.save(db, audit_of(tmp_path / "b" / "hold.wav"))
    assert db["audits"].count == 2


def test_each_words_probability_is_stored_and_an_older_audit_has_none(db, tmp_path):
    result = audit_of(tmp_path / "hold.wav")
    heard = tuple(Word(text, 0.95) for text in result.messages[0].text.split())
    result.messages[0].words = heard[:6] + (Word("S7", 0.234),) + heard[7:]
    audit_id = store.save(db, result)
    assert store.load(db, audit_id).messages[0].words == result.messages[0].words
    assert store.load(db, audit_id).to_json() == result.to_json()
    assert result.to_json()["messages"][0]["low_confidence_words"] == [
        {"word": "S7", "position": 6, "probability": 0.234}]

    db.execute("UPDATE audit_messages SET words = NULL")  # as every audit stored before migration 12
    older = store.load(db, audit_id)
    assert older.messages[0].words is None and older.messages[0].unsure_words() == []
    assert older.to_json()["messages"][0]["low_confidence_words"] is None

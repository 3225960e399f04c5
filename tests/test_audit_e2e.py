"""The whole audit on generated hold recordings, with real Whisper (tiny.en), real SQLite, the real CLI.

One batch runs once per session (`holdguard audit FOLDER CA….wav --out reports/ --db …`):

bad-hold     a caller with an open case who owns a Galaxy S7 hears its upgrade promo 3 times (once
             re-recorded by another voice, slower), reassurance 4 times and 32 s of dead air:
             every rule fires
clean        the same caller hears an outage notice, a wait announcement and a tip: nothing fires
two-promos   a caller we know nothing about hears two different promos that share words
             ("upgrade today"), one once and one twice, in a long hold: nothing fires
CA<sid>.wav  a promo heard once, no context file: the webhook database knows the call's caller
three bad files: not audio, empty, cut off halfway

The database is set up as in a deployment: the demo hold flow loaded (its catalog says which
product each promo sells) and the demo CRM customers imported.
"""
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.storage.connect import connect
from app.storage.schema import migrate as init_schema
from app.storage import audits as store
from audits.report import render
from tests.audio_fixtures import DEMO_MESSAGES, HoldRecording, make_hold

pytestmark = pytest.mark.slow

DANA = {"open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots during calls"}],
        "owned_products": ["Galaxy S7"], "queue": "support"}
CALL_SID = "CA" + "fedcba9876543210" * 2
SHARED_WORDS = {
    "galaxy-today": {"text": "Upgrade today to the brand new Galaxy S7 and get fifty percent off.", "category": "promo"},
    "fiber-today": {"text": "Upgrade today to Fiber One Gig home internet and save twenty dollars a month.",
                    "category": "promo"},
}
TOLERANCE_S = 1.0  # segment edges vs the generator's truth


@dataclass
class Batch:
    holds: dict[str, HoldRecording]
    bad_files: list[Path]
    exit_code: int
    stderr: str
    reports: dict[str, dict]  # recording stem -> its JSON report
    index: list[dict]
    out: Path
    db_path: Path


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> Batch:
    folder = tmp_path_factory.mktemp("holds")
    holds = {
        "bad-hold": make_hold(folder, [
            "music 4", "say galaxy-upgrade", "music 5", "say thanks-patience", "music 5",
            "say galaxy-upgrade voice=en-gb-x-rp speed=130 pitch=35", "music 5", "say thanks-patience",
            "silence 32", "music 5", "say galaxy-upgrade", "music 4", "say thanks-patience", "music 4",
            "say thanks-patience", "music 4"], name="bad-hold", context=DANA, seed=11),
        "clean": make_hold(folder, [
            "music 5", "say outage-northeast", "music 6", "say wait-announcement", "music 6",
            "say tip-online-billing", "music 5"], name="clean", context=DANA, seed=12),
        "two-promos": make_hold(folder, [
            "music 40", "say galaxy-today", "music 45", "say fiber-today", "music 45", "say fiber-today",
            "music 30"], name="two-promos", messages={**DEMO_MESSAGES, **SHARED_WORDS}, seed=13),
    }
    elsewhere = tmp_path_factory.mktemp("twilio")
    holds[CALL_SID] = make_hold(elsewhere, ["music 5", "say galaxy-upgrade", "music 60"], name=CALL_SID, seed=14)

    bad_files = [folder / "not-audio.wav", folder / "empty.wav", folder / "cut-off.wav"]
    bad_files[0].write_text("RIFF? no: a text file with a .wav name\n")
    bad_files[1].write_bytes(b"")
    clean_bytes = holds["clean"].path.read_bytes()
    bad_files[2].write_bytes(clean_bytes[:len(clean_bytes) // 2])

    db_path = folder / "holdguard.db"
    db = connect(db_path)
    init_schema(db)
    from app.storage.crm import import_customers
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog

    demo_data = Path(__file__).parent.parent / "app" / "demo_data"
    save_catalog(db, read_flow_file(demo_data / "flows.toml"))
    import_customers(db, demo_data / "customers.json")
    db["calls"].insert({"call_sid": CALL_SID, "caller": "+15555550100", "queue": "support"})
    db.conn.close()

    out = folder / "reports"
    result = CliRunner().invoke(main, ["audit", str(folder), str(holds[CALL_SID].path), "--out", f"{out}/",
                                       "--format", "json", "--db", str(db_path)], prog_name="holdguard")
    reports = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json") if path.stem != "index"}
    index = json.loads((out / "index.json").read_text()) if (out / "index.json").exists() else []
    return Batch(holds, bad_files, result.exit_code, result.stderr, reports, index, out, db_path)


def rules_of(report: dict) -> list[str]:
    return [finding["rule"] for finding in report["findings"]]


def finding(report: dict, rule: str) -> dict:
    (found,) = [f for f in report["findings"] if f["rule"] == rule]
    return found


def near(times_s: list[float], truth_s: list[float]) -> bool:
    return len(times_s) == len(truth_s) and all(abs(a - b) <= TOLERANCE_S for a, b in zip(times_s, truth_s))


def test_bad_files_are_reported_and_skipped_with_a_non_zero_exit(batch):
    assert batch.exit_code == 1
    errors = [line for line in batch.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 3
    for bad in batch.bad_files:
        assert sum(line.startswith(f"Error: {bad}: ") for line in errors) == 1, batch.stderr
    assert "3 of 7 recordings could not be audited" in batch.stderr
    assert sorted(batch.reports) == sorted(batch.holds)
    assert sorted(r["recording"] for r in batch.index) == sorted(str(h.path) for h in batch.holds.values())


def test_every_rule_fires_on_the_bad_hold(batch):
    report, hold = batch.reports["bad-hold"], batch.holds["bad-hold"]
    assert sorted(rules_of(report)) == sorted([
        "repeated_promo", "promo_during_open_issue", "promo_for_owned_product", "repeated_reassurance",
        "promo_share_high", "long_silence"])
    galaxy_starts = [start for start, _ in hold.plays("galaxy-upgrade")]
    repeated = finding(report, "repeated_promo")
    assert repeated["count"] == 3 and repeated["severity"] == "low" and near(repeated["at_s"], galaxy_starts)
    assert "promo cue:" in repeated["evidence"]
    open_issue = finding(report, "promo_during_open_issue")
    assert open_issue["severity"] == "high" and "CASE-1042 (high) is open" in open_issue["evidence"]
    assert "sells Galaxy S7, which the caller already owns" in finding(report, "promo_for_owned_product")["evidence"]
    reassurance = finding(report, "repeated_reassurance")
    assert reassurance["count"] == 4 and near(reassurance["at_s"], [s for s, _ in hold.plays("thanks-patience")])
    (silence_start_s, silence_end_s), = hold.spans("silence")
    silence = finding(report, "long_silence")
    assert near(silence["at_s"], [silence_start_s])
    assert report["summary"]["findings"] == 6


def test_a_re_recorded_promo_is_grouped_with_the_original(batch):
    report, hold = batch.reports["bad-hold"], batch.holds["bad-hold"]
    promos = [m for m in report["messages"] if m["category"] == "promo"]
    assert len(promos) == 1, promos
    (promo,) = promos
    re_recorded_s = [span["start_s"] for span in hold.timeline if span.get("voice") == "en-gb-x-rp"]
    assert promo["plays"] == 3 and any(abs(t - re_recorded_s[0]) <= TOLERANCE_S for t in promo["play_times_s"])
    assert promo["products"] == ["Galaxy S7"]
    assert [m["category"] for m in report["messages"]] == ["promo", "reassurance"]


def test_a_clean_hold_has_no_findings_even_with_an_open_issue(batch):
    report = batch.reports["clean"]
    assert report["findings"] == []
    assert sorted(m["category"] for m in report["messages"]) == ["notice", "tip", "wait"]


def test_promos_heard_once_or_twice_by_an_unknown_caller_are_fine_and_stay_apart(batch):
    report, hold = batch.reports["two-promos"], batch.holds["two-promos"]
    assert report["findings"] == []
    promos = [(m["plays"], m["text"]) for m in report["messages"] if m["category"] == "promo"]
    assert [plays for plays, _ in promos] == [1, 2], promos
    assert near(report["messages"][1]["play_times_s"], [s for s, _ in hold.plays("fiber-today")])


def test_the_database_supplies_the_callers_context(batch):
    report = batch.reports[CALL_SID]
    assert sorted(rules_of(report)) == ["promo_during_open_issue", "promo_for_owned_product"]
    db = connect(batch.db_path)
    (row,) = db.query("select call_sid, context from audits where recording = ?", [report["recording"]])
    assert row["call_sid"] == CALL_SID
    assert json.loads(row["context"])["open_issues"][0]["id"] == "CASE-1042"


def test_music_is_never_transcribed(batch):
    for name, report in batch.reports.items():
        speech = batch.holds[name].spans("speech")
        for message in report["messages"]:
            for start_s in message["play_times_s"]:
                assert any(s - TOLERANCE_S <= start_s <= e for s, e in speech), (name, message)
        assert sum(m["plays"] for m in report["messages"]) == len(speech), name
        for segment in report["segments"]:
            if segment["kind"] == "speech":
                assert any(s < segment["end_s"] and e > segment["start_s"] for s, e in speech), (name, segment)


def test_the_database_holds_what_the_reports_say(batch):
    db = connect(batch.db_path)
    assert db.execute("select count(*) from audits").fetchone()[0] == len(batch.reports)
    for report in batch.reports.values():
        (row,) = db.query("select * from audits where recording = ?", [report["recording"]])
        assert store.load(db, row["id"]).to_json() == report
        assert row["findings"] == len(report["findings"]) == report["summary"]["findings"]
        assert row["promo_share"] == report["summary"]["promo_share"]
        messages = list(db.query("select message_id, category, text, plays from audit_messages "
                                 "where audit_id = ? order by rowid", [row["id"]]))
        assert messages == [{"message_id": m["id"], "category": m["category"], "text": m["text"],
                             "plays": m["plays"]} for m in report["messages"]]
        plays = db.execute("select count(*) from audit_plays where audit_id = ?", [row["id"]]).fetchone()[0]
        assert plays == sum(m["plays"] for m in report["messages"])
        rules = [r["rule"] for r in db.query("select rule from audit_findings where audit_id = ? order by id",
                                             [row["id"]])]
        assert rules == rules_of(report)


def test_search_finds_the_stored_transcripts(batch):
    result = CliRunner().invoke(main, ["audit", "search", "patience", "--db", str(batch.db_path), "--json"])
    assert result.exit_code == 0, result.output
    matches = json.loads(result.stdout)
    assert {m["recording"] for m in matches} == {str(batch.holds["bad-hold"].path)}
    assert matches[0]["category"] == "reassurance" and matches[0]["plays"] == 4


def test_re_auditing_a_file_replaces_its_rows(batch, tmp_path):
    db_path = tmp_path / "copy.db"
    # SQLite's backup API, not a file copy: what the batch wrote may still be in the -wal file beside it
    # (checkpoints run in the background), and a copy of the main file alone would lack the message library
    with sqlite3.connect(batch.db_path) as source, sqlite3.connect(db_path) as target:
        source.backup(target)
    clean = batch.holds[CALL_SID].path  # one message: the cheapest to transcribe again
    args = ["audit", str(clean), "--db", str(db_path), "--format", "json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    db = connect(db_path)
    rows = list(db.query("select id from audits where recording = ?", [str(clean)]))
    assert len(rows) == 1
    assert json.loads(first.stdout) == batch.reports[CALL_SID]  # same audio, same audit


def test_html_report_of_a_real_audit(batch):
    db = connect(batch.db_path)
    results = [store.load(db, row["id"]) for row in db.query("select id from audits order by recording")]
    html = render(results, "html")
    assert html.count("<svg") == len(results)
    assert "repeated_promo" in html and "played 3×" in html and "CASE-1042 (high) is open" in html
    assert "Batch summary" in html

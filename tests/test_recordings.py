"""`holdguard recordings fetch` against a local fake of Twilio's REST API (tests/fake_twilio.py)."""
import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from app.cli import main
from app.storage.crm import import_customers
from app.storage.connect import connect
from app.core.flows import read_flow_file
from app.storage.catalog import save_catalog
from app.core.times import format_utc
from audits.fetch import Outcome, fetch, twilio_client
from tests.fake_twilio import FakeTwilio, new_sid

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "app" / "demo_data"
DANA_PHONE = "+15555550100"  # demo customer C-1001: owns a Galaxy S7, open issue CASE-1042 (high)


@pytest.fixture
def db(db_path):
    database = connect(db_path)
    yield database
    database.conn.close()


@pytest.fixture
def twilio():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def client(twilio):
    return twilio_client(twilio.account_sid, twilio.auth_token, twilio.base_url)


def tone_wav(path: Path, duration_s: float = 2.0) -> Path:
    """A small real recording as Twilio makes them: 8 kHz mu-law WAV."""
    t = np.arange(int(duration_s * 8000)) / 8000
    soundfile.write(str(path), (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="ULAW")
    return path


def stored_files(data_dir: Path) -> list[str]:
    folder = data_dir / "recordings"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def rows(db) -> dict:
    return {row["sid"]: row for row in db.query("select * from recordings")}


def fetch_only(db, client, data_dir, **options) -> list[Outcome]:
    """Download without auditing (no speech engine needed), retrying without waiting."""
    return fetch(db, client, data_dir, audit=False, backoff_s=0, **options)


# ---- the fake speaks Twilio's wire format -------------------------------------------------------

def test_fake_needs_basic_auth_and_answers_twilio_shapes(twilio, tmp_path):
    import requests

    recording = twilio.add_recording(tone_wav(tmp_path / "a.wav"))
    list_url = f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Recordings.json"
    refused = requests.get(list_url, auth=(twilio.account_sid, "wrong"), timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == 20003
    page = requests.get(list_url, auth=(twilio.account_sid, twilio.auth_token), timeout=10).json()
    assert {"recordings", "first_page_uri", "next_page_uri", "page", "page_size", "uri"} <= set(page)
    item = page["recordings"][0]
    assert item["sid"] == recording.sid and item["call_sid"] == recording.call_sid
    assert item["duration"] == "2" and item["date_created"].endswith("+0000")  # RFC 2822
    audio = requests.get(f"{twilio.base_url}{item['uri'].replace('.json', '.wav')}",
                         auth=(twilio.account_sid, twilio.auth_token), timeout=10)
    assert audio.content == (tmp_path / "a.wav").read_bytes()


# ---- downloading --------------------------------------------------------------------------------

def test_fetch_downloads_each_recording_atomically_with_a_row_and_sidecar(db, client, twilio, tmp_path):
    first = twilio.add_recording(tone_wav(tmp_path / "one.wav"))
    second = twilio.add_recording(tone_wav(tmp_path / "two.wav", 3.0))
    data_dir = tmp_path / "data"
    outcomes = fetch_only(db, client, data_dir)
    assert [o.status for o in outcomes] == ["downloaded", "downloaded"]
    assert stored_files(data_dir) == sorted([f"{first.sid}.wav", f"{first.sid}.context.json",
                                             f"{second.sid}.wav", f"{second.sid}.context.json"])
    stored = data_dir / "recordings" / f"{second.sid}.wav"
    assert stored.read_bytes() == (tmp_path / "two.wav").read_bytes()
    row = rows(db)[second.sid]
    assert row["call_sid"] == second.call_sid and row["status"] == "downloaded"
    assert row["path"] == str(stored.resolve()) and row["fetched_at"] and row["duration_s"] == 3
    assert json.loads((data_dir / "recordings" / f"{second.sid}.context.json").read_text()) == \
        {"call_sid": second.call_sid}


def test_a_recording_already_fetched_is_not_fetched_again(db, client, twilio, tmp_path):
    recording = twilio.add_recording(tone_wav(tmp_path / "one.wav"))
    fetch_only(db, client, tmp_path / "data")
    again = fetch_only(db, client, tmp_path / "data")
    assert twilio.downloads_of(recording.sid) == 1
    assert again[0].detail == "already fetched"
    # a file that vanished from disk is fetched again
    (tmp_path / "data" / "recordings" / f"{recording.sid}.wav").unlink()
    fetch_only(db, client, tmp_path / "data")
    assert twilio.downloads_of(recording.sid) == 2


@pytest.mark.parametrize("mode", ["error", "truncated", "garbage"])
def test_a_failed_download_is_retried_then_succeeds(db, client, twilio, tmp_path, mode):
    recording = twilio.add_recording(tone_wav(tmp_path / "one.wav"))
    twilio.fail_downloads(recording.sid, times=2, mode=mode)
    outcomes = fetch_only(db, client, tmp_path / "data")
    assert outcomes[0].status == "downloaded"
    assert twilio.downloads_of(recording.sid) == 3
    assert (tmp_path / "data" / "recordings" / f"{recording.sid}.wav").read_bytes() == \
        (tmp_path / "one.wav").read_bytes()


@pytest.mark.parametrize("mode, reason", [("error", "HTTP 500"), ("truncated", "cut off"),
                                          ("garbage", "not a WAV file")])
def test_a_persistent_failure_is_reported_and_nothing_is_stored(db, client, twilio, tmp_path, mode, reason):
    bad = twilio.add_recording(tone_wav(tmp_path / "bad.wav"))
    good = twilio.add_recording(tone_wav(tmp_path / "good.wav"))
    twilio.fail_downloads(bad.sid, times=99, mode=mode)
    outcomes = {o.sid: o for o in fetch_only(db, client, tmp_path / "data", attempts=3)}
    assert outcomes[bad.sid].status == "download_failed" and outcomes[bad.sid].failed
    assert "gave up after 3 attempts" in outcomes[bad.sid].detail and reason in outcomes[bad.sid].detail
    assert twilio.downloads_of(bad.sid) == 3
    assert outcomes[good.sid].status == "downloaded"  # the batch went on
    assert stored_files(tmp_path / "data") == sorted([f"{good.sid}.wav", f"{good.sid}.context.json"])
    assert rows(db)[bad.sid]["status"] == "download_failed" and rows(db)[bad.sid]["path"] is None
    # the next run tries the failed recording again, and only that one
    twilio.fail_downloads(bad.sid, times=0)
    retried = {o.sid: o.status for o in fetch_only(db, client, tmp_path / "data")}
    assert retried[bad.sid] == "downloaded" and twilio.downloads_of(good.sid) == 1


def test_since_and_call_sid_filter_what_is_listed(db, client, twilio, tmp_path):
    old = twilio.add_recording(tone_wav(tmp_path / "old.wav"), date_created=datetime(2026, 11, 1, tzinfo=timezone.utc))
    new = twilio.add_recording(tone_wav(tmp_path / "new.wav"), date_created=datetime(2026, 11, 20, 8, tzinfo=timezone.utc))
    since = [o.sid for o in fetch_only(db, client, tmp_path / "a", since=datetime(2026, 11, 15, tzinfo=timezone.utc))]
    assert since == [new.sid]
    by_call = [o.sid for o in fetch_only(db, client, tmp_path / "b", call_sid=old.call_sid)]
    assert by_call == [old.sid]


def test_many_recordings_are_read_page_after_page(db, client, twilio, tmp_path):
    wav = tone_wav(tmp_path / "one.wav", 0.5)
    for _ in range(55):  # more than one page of 50
        twilio.add_recording(wav)
    outcomes = fetch_only(db, client, tmp_path / "data")
    assert len(outcomes) == 55 and len(rows(db)) == 55
    assert any("Page=1" in seen and "PageToken=" in seen for seen in twilio.requests_seen)


def test_a_hostile_recording_sid_never_becomes_a_path(db, client, twilio, tmp_path):
    twilio.add_recording(tone_wav(tmp_path / "one.wav"), sid="../../escaped")
    outcome = fetch_only(db, client, tmp_path / "data")[0]
    assert outcome.status == "download_failed" and "unexpected recording SID" in outcome.detail
    assert not (tmp_path / "escaped.wav").exists() and stored_files(tmp_path / "data") == []


# ---- the command --------------------------------------------------------------------------------

@pytest.fixture
def cli_env(runner, twilio, tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", twilio.account_sid)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", twilio.auth_token)
    monkeypatch.setenv("TWILIO_API_BASE", twilio.base_url)
    monkeypatch.setenv("HOLDGUARD_DATA_DIR", str(tmp_path / "data"))
    return runner


def test_command_reports_each_recording_and_exits_1_on_failure(cli_env, twilio, tmp_path):
    good = twilio.add_recording(tone_wav(tmp_path / "good.wav"))
    bad = twilio.add_recording(tone_wav(tmp_path / "bad.wav"))
    twilio.fail_downloads(bad.sid, times=99, mode="error")
    import audits.fetch as recordings
    original = recordings.BACKOFF_S
    recordings.BACKOFF_S = 0  # the command's default backoff, without the waiting
    try:
        result = cli_env.invoke(main, ["recordings", "fetch", "--no-audit"])
    finally:
        recordings.BACKOFF_S = original
    assert result.exit_code == 1, result.output
    assert f"{good.sid} (call {good.call_sid} (not in the play log)): downloaded: 16 kB" in result.output
    assert f"{bad.sid}" in result.output and "download_failed: gave up after 4 attempts: HTTP 500" in result.output
    assert "2 recording(s): " in result.output


def test_command_errors_are_one_clear_line(cli_env, monkeypatch):
    bad_sid = cli_env.invoke(main, ["recordings", "fetch", "--call-sid", "CA123"])
    assert bad_sid.exit_code == 2 and "'CA123' is not a Twilio CallSid" in bad_sid.output
    bad_date = cli_env.invoke(main, ["recordings", "fetch", "--since", "last week"])
    assert bad_date.exit_code == 2 and "'last week' is not a date" in bad_date.output
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
    refused = cli_env.invoke(main, ["recordings", "fetch"])
    assert refused.exit_code == 1 and "HTTP 401, the account SID or auth token is wrong" in refused.output
    monkeypatch.delenv("TWILIO_ACCOUNT_SID")
    unset = cli_env.invoke(main, ["recordings", "fetch"])
    assert unset.exit_code == 1 and "TWILIO_ACCOUNT_SID is not set" in unset.output


def test_help_says_how_to_record_the_hold(runner):
    result = runner.invoke(main, ["recordings", "--help"])
    assert 'recording_track="outbound"' in result.output


# ---- linked to the call and audited with real Whisper -------------------------------------------

def generate_hold(path: Path) -> Path:
    """A realistic hold recording: music, and the Galaxy S7 promo three times (8 kHz mu-law)."""
    spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "sample_audio" / "generate.py")
    generator = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, generator)  # its dataclasses look their module up
    spec.loader.exec_module(generator)
    generator.generate({
        "seed": 1042, "format": "ulaw-8k", "speed_wpm": 155,
        "timeline": ["music 6", "say galaxy", "music 6", "say galaxy", "music 6", "say galaxy", "music 4"],
        "messages": {"galaxy": "Upgrade to the brand new Galaxy S7 today and get fifty percent off your first "
                               "three months. Ask your agent how."},
    }, path)
    return path


@pytest.mark.slow
def test_fetched_recording_is_linked_to_its_call_and_audited_with_the_callers_issues(
        db, db_path, twilio, client, tmp_path):
    from app.storage import audits as store
    from audits.transcribe import shared_engine

    save_catalog(db, read_flow_file(DEMO / "flows.toml"))
    import_customers(db, DEMO / "customers.json")
    call_sid = new_sid("CA")
    started = datetime.now(timezone.utc)
    db["calls"].insert({"call_sid": call_sid, "caller": DANA_PHONE, "customer_id": "C-1001", "queue": "support",
                        "started_at": format_utc(started)})
    db["plays"].insert({"call_sid": call_sid, "caller": DANA_PHONE, "customer_id": "C-1001", "queue": "support",
                        "segment_id": "music-1", "kind": "music", "at": format_utc(started), "at_s": 0.0,
                        "duration_s": 45.0, "reason": "music: the hold has just begun"})
    recording = twilio.add_recording(generate_hold(tmp_path / "hold.wav"), call_sid=call_sid)
    unknown_call = twilio.add_recording(tone_wav(tmp_path / "short.wav"))

    outcomes = {o.sid: o for o in fetch(db, client, tmp_path / "data", transcriber=shared_engine(), backoff_s=0)}

    outcome = outcomes[recording.sid]
    assert outcome.status == "audited", outcome.detail
    row = rows(db)[recording.sid]
    assert row["status"] == "audited" and row["audit_id"] == outcome.audit_id
    audit = db["audits"].get(outcome.audit_id)
    assert audit["call_sid"] == call_sid and audit["recording"] == row["path"]
    result = store.load(db, outcome.audit_id)
    assert [issue.id for issue in result.context.open_issues] == ["CASE-1042"]
    assert "Galaxy S7" in result.context.owned_products and result.context.queue == "support"
    by_rule = {finding.rule: finding for finding in result.findings}
    assert by_rule["repeated_promo"].count == 3
    assert "CASE-1042" in by_rule["promo_during_open_issue"].evidence
    # a recording of a call the webhook never saw is still audited, with no caller context
    assert outcomes[unknown_call.sid].status == "audited"
    assert store.load(db, outcomes[unknown_call.sid].audit_id).context.open_issues == []

    # fetched and audited: a second run downloads nothing and audits nothing
    again = fetch(db, client, tmp_path / "data", load_transcriber=pytest.fail, backoff_s=0)
    assert {o.status for o in again} == {"skipped"}
    assert twilio.downloads_of(recording.sid) == 1


def test_a_recording_that_cannot_be_audited_is_reported_and_the_batch_goes_on(db, client, twilio, tmp_path):
    damaged = twilio.add_recording(tone_wav(tmp_path / "one.wav"))
    fetch_only(db, client, tmp_path / "data")
    stored = tmp_path / "data" / "recordings" / f"{damaged.sid}.wav"
    stored.write_bytes(b"RIFF\x00\x00")  # damaged on disk after the download

    class EngineNeverAsked:
        def transcribe_many(self, clips, starts_s=None):
            raise AssertionError("a file that does not load never reaches the speech engine")

    outcomes = fetch(db, client, tmp_path / "data", transcriber=EngineNeverAsked(), backoff_s=0)
    assert twilio.downloads_of(damaged.sid) == 1  # the stored file is not fetched again
    assert outcomes[0].status == "audit_failed" and outcomes[0].failed
    assert "audit failed: " in outcomes[0].detail and f"{damaged.sid}.wav" in outcomes[0].detail
    assert rows(db)[damaged.sid]["status"] == "audit_failed" and rows(db)[damaged.sid]["audit_id"] is None
    assert db["audits"].count == 0

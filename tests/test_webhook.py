"""The Twilio webhooks through the Flask test client: signed requests, TwiML, the play log, failing closed."""
import logging
import sqlite3
import time
import xml.etree.ElementTree as ElementTree

from urllib.parse import urlencode

import pytest

from app import create_app
from app.core.policy import FALLBACK_MUSIC_URL
from app.storage.connect import connect
from conftest import AUTH_TOKEN, BASE_URL, sign

from test_personas import DANA, NIA, insert_customer, insert_demo_customers, load_demo_flow

CALL = {"CallSid": "CA" + "0" * 32, "AccountSid": "AC" + "1" * 32, "From": NIA, "To": "+15555550000",
        "CallStatus": "in-progress", "Direction": "inbound", "QueueSid": "QU" + "2" * 32}
WAIT = "/twilio/wait?queue=support"


def wait_params(queue_time_s, position=5, avg_s=600, **extra):
    return {**CALL, "QueueTime": str(queue_time_s), "QueuePosition": str(position),
            "AvgQueueTime": str(avg_s), "CurrentQueueSize": str(position + 2), **extra}


def twiml(response) -> ElementTree.Element:
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    return ElementTree.fromstring(response.data)


def plays(db_path, call_sid=CALL["CallSid"]) -> list[dict]:
    return list(connect(db_path).query("SELECT * FROM plays WHERE call_sid = ? ORDER BY id",
                                                     [call_sid]))


def assert_music_only(response, music_urls=None):
    """Valid TwiML holding exactly one <Play> of a music URL: no <Say>, no promo."""
    root = twiml(response)
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Play"]
    if music_urls is not None:
        assert root[0].text in music_urls


@pytest.fixture
def demo(app, db_path):
    load_demo_flow(db_path)
    insert_demo_customers(db_path)
    return app


@pytest.fixture
def demo_music(db_path):
    from app.core.flows import read_flow_file
    from test_personas import DEMO_DIR
    return set(read_flow_file(DEMO_DIR / "flows.toml").queues["support"].music)


def test_voice_enqueues_with_absolute_signed_urls(demo, twilio_post, db_path):
    root = twiml(twilio_post("/twilio/voice", CALL))

    (enqueue,) = list(root)
    assert enqueue.tag == "Enqueue" and enqueue.text == "support"
    assert enqueue.get("waitUrl") == f"{BASE_URL}/twilio/wait?queue=support"
    assert enqueue.get("waitUrlMethod") == "POST"
    assert enqueue.get("action") == f"{BASE_URL}/twilio/queue-result?queue=support"
    assert enqueue.get("method") == "POST"
    call = connect(db_path)["calls"].get(CALL["CallSid"])
    assert (call["caller"], call["queue"]) == (NIA, "support") and call["started_at"]


def test_voice_can_name_another_queue(demo, twilio_post):
    enqueue = twiml(twilio_post("/twilio/voice?queue=billing", CALL))[0]
    assert enqueue.text == "billing" and enqueue.get("waitUrl").endswith("/twilio/wait?queue=billing")


@pytest.mark.parametrize("name", ["bad\x1fname", "q" * 65])
def test_a_queue_name_twilio_could_not_take_is_not_used(demo, twilio_post, name):
    """A control character would make the TwiML invalid XML; Twilio's names are at most 64 characters."""
    enqueue = twiml(twilio_post("/twilio/voice?" + urlencode({"queue": name}), CALL))[0]
    assert enqueue.text == "support"


def test_wait_answers_one_segment_and_logs_it_with_its_reason(demo, twilio_post, db_path):
    root = twiml(twilio_post(WAIT, wait_params(0)))

    assert [child.tag for child in root] == ["Say"]
    assert "outage" in root[0].text
    (row,) = plays(db_path)
    assert row["caller"] == NIA and row["customer_id"] == "C-1003" and row["queue"] == "support"
    assert (row["segment_id"], row["kind"], row["at_s"], row["duration_s"]) == ("outage-northeast", "notice", 0, 11)
    assert row["reason"] == "notice outage-northeast: not yet heard this call"
    assert row["at"].endswith("Z")


def test_a_call_unfolds_over_requests_and_remembers_the_position_told(demo, twilio_post, db_path):
    kinds = []
    queue_time_s = 0
    for position in (6, 6, 5, 5):
        twiml(twilio_post(WAIT, wait_params(queue_time_s, position=position)))
        row = plays(db_path)[-1]
        kinds.append(row["kind"])
        queue_time_s += int(row["duration_s"])
    assert kinds == ["notice", "music", "wait", "music"]
    assert connect(db_path)["calls"].get(CALL["CallSid"])["last_position_told"] == 5


def test_older_average_queue_time_name_is_accepted(demo, twilio_post, db_path):
    params = {k: v for k, v in wait_params(0).items() if k != "AvgQueueTime"}
    twilio_post(WAIT, params)
    twilio_post(WAIT, {**params, "QueueTime": "11"})
    twilio_post(WAIT, {**params, "QueueTime": "56", "AverageQueueTime": "120"})
    assert plays(db_path)[-1]["reason"] == "wait announcement: position 5; average wait 120 s"


def test_queue_result_records_how_the_wait_ended(demo, twilio_post, db_path):
    twilio_post("/twilio/voice", CALL)
    root = twiml(twilio_post("/twilio/queue-result?queue=support",
                             {**CALL, "QueueResult": "bridged", "QueueTime": "754"}))
    assert list(root) == []
    call = connect(db_path)["calls"].get(CALL["CallSid"])
    assert (call["queue_result"], call["queue_time_s"]) == ("bridged", 754) and call["ended_at"]


def test_queue_full_gets_an_apology(demo, twilio_post):
    root = twiml(twilio_post("/twilio/queue-result", {**CALL, "QueueResult": "queue-full", "QueueTime": "0"}))
    assert [child.tag for child in root] == ["Say"]


# --- signatures ---

ENDPOINTS = ["/twilio/voice", WAIT, "/twilio/queue-result?queue=support"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("case", ["missing", "other token", "other host", "other path", "tampered params"])
def test_unsigned_or_forged_requests_get_403_and_log_nothing(demo, client, db_path, path, case):
    params = wait_params(0)
    headers = {
        "missing": {},
        "other token": {"X-Twilio-Signature": sign(path, params, token="not-the-token")},
        "other host": {"X-Twilio-Signature": RequestValidatorFor("https://evil.example.com", path, params)},
        "other path": {"X-Twilio-Signature": sign("/twilio/voice-other", params)},
        "tampered params": {"X-Twilio-Signature": sign(path, {**params, "From": DANA})},
    }[case]
    response = client.post(path, data=params, headers=headers)
    assert response.status_code == 403
    assert plays(db_path) == []
    assert connect(db_path)["calls"].count == 0


def RequestValidatorFor(base_url, path, params):
    from twilio.request_validator import RequestValidator
    return RequestValidator(AUTH_TOKEN).compute_signature(base_url + path, params)


def test_signature_covers_the_query_string(demo, client):
    params = wait_params(0)
    signed_without_query = sign("/twilio/wait", params)
    assert client.post(WAIT, data=params, headers={"X-Twilio-Signature": signed_without_query}).status_code == 403


def test_no_auth_token_configured_refuses_everything(db_path):
    app = create_app({"HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": "", "PUBLIC_BASE_URL": BASE_URL})
    response = app.test_client().post(WAIT, data=wait_params(0), headers={"X-Twilio-Signature": sign(WAIT, wait_params(0))})
    assert response.status_code == 403


# --- failing closed ---

def signed_post(app, path, params):
    return app.test_client().post(path, data=params, headers={"X-Twilio-Signature": sign(path, params)})


def app_on(db_path):
    return create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                       "PUBLIC_BASE_URL": BASE_URL})


def test_missing_database_answers_builtin_music_and_creates_nothing(tmp_path, caplog):
    missing = tmp_path / "gone.db"
    with caplog.at_level(logging.ERROR, logger="app.web.twilio_hold"):
        response = signed_post(app_on(missing), WAIT, wait_params(0))
    assert_music_only(response, {FALLBACK_MUSIC_URL})
    assert not missing.exists()
    assert "answering fallback music" in caplog.text and "does not exist" in caplog.text


@pytest.mark.sqlite_only  # a SQLite file's own lock
def test_locked_database_answers_music(demo, db_path, demo_music, caplog):
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO queues (name, music) VALUES ('lock', '[]')")
    try:
        with caplog.at_level(logging.ERROR, logger="app.web.twilio_hold"):
            response = signed_post(app_on(db_path), WAIT, wait_params(0))
        assert_music_only(response, demo_music | {FALLBACK_MUSIC_URL})
        assert "locked" in caplog.text
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert plays(db_path) == []  # nothing could be written, and the webhook did not wait to try


@pytest.mark.sqlite_only  # a SQLite file's own lock
def test_write_locked_database_answers_music_not_the_unlogged_decision(demo, db_path, demo_music):
    """Readers still read in WAL mode, but an answer that cannot be logged must not be a message."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = signed_post(app_on(db_path), WAIT, wait_params(0))  # the policy would pick the notice
        assert_music_only(response, demo_music | {FALLBACK_MUSIC_URL})
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_corrupt_database_answers_builtin_music(tmp_path, caplog):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database file at all " * 200)
    with caplog.at_level(logging.ERROR, logger="app.web.twilio_hold"):
        response = signed_post(app_on(corrupt), WAIT, wait_params(0))
    assert_music_only(response, {FALLBACK_MUSIC_URL})
    assert "answering fallback music" in caplog.text


def test_unknown_caller_hears_music_only_over_a_whole_hold(demo, twilio_post, db_path):
    params = {**wait_params(0), "From": "+15555559999"}
    queue_time_s = 0
    for _ in range(40):
        twiml(twilio_post(WAIT, {**params, "QueueTime": str(queue_time_s)}))
        queue_time_s += int(plays(db_path)[-1]["duration_s"])
    rows = plays(db_path)
    assert {r["kind"] for r in rows} == {"music"}  # not even the outage notice: fail closed
    assert {r["reason"] for r in rows} == {"music only: unknown caller (fail closed)"}
    assert {r["customer_id"] for r in rows} == {None} and {r["caller"] for r in rows} == {"+15555559999"}


def test_unknown_caller_with_only_music_and_promos_hears_music_only(app, db_path, twilio_post):
    from app.storage.connect import connect
    from app.core.flows import parse_flow
    from app.storage.catalog import save_catalog
    save_catalog(connect(db_path), parse_flow(
        '[queue.support]\nmusic = ["https://cdn.example.com/calm.mp3"]\nwait_announce_every_s = 0\n'
        '[[segment]]\nid = "p"\nkind = "promo"\nsay = "Buy"\nduration_s = 1\n'))
    for queue_time_s in range(0, 900, 45):
        response = twilio_post(WAIT, {**wait_params(queue_time_s), "From": "anonymous"})
        assert_music_only(response, {"https://cdn.example.com/calm.mp3"})
    assert {r["caller"] for r in plays(db_path)} == {"anonymous"}


def test_empty_catalog_answers_builtin_music_and_logs_why(app, db_path, twilio_post):
    response = twilio_post(WAIT, wait_params(0))
    assert_music_only(response, {FALLBACK_MUSIC_URL})
    (row,) = plays(db_path)
    assert row["segment_id"] == "fallback-music" and row["kind"] == "music"
    assert row["reason"] == ("fallback music: NoHoldFlow: no hold flow for queue 'support' "
                             "(run `holdguard flows load FILE`)")


def test_bad_customer_data_answers_queue_music_and_logs_the_fault(demo, db_path, demo_music, twilio_post, caplog):
    connect(db_path)["customers"].update("C-1003", {"products": "Galaxy S7; Fiber 1G"})
    with caplog.at_level(logging.ERROR, logger="app.web.twilio_hold"):
        response = twilio_post(WAIT, wait_params(0))
    assert_music_only(response, demo_music)
    assert "not a JSON list" in plays(db_path)[0]["reason"]
    (fault,) = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert fault.exc_info is not None  # logged with its traceback


def test_an_issue_opened_mid_call_suppresses_promos_on_the_next_request(demo, twilio_post, db_path):
    queue_time_s = 0
    for _ in range(4):  # notice, music, wait, music: a promo would come next
        twilio_post(WAIT, wait_params(queue_time_s))
        queue_time_s += int(plays(db_path)[-1]["duration_s"])
    insert_customer(db_path, "C-1003", NIA, issues=[("CASE-2001", "medium")])

    twiml(twilio_post(WAIT, wait_params(queue_time_s)))
    row = plays(db_path)[-1]
    assert row["kind"] != "promo"
    assert "promo skipped: open issue CASE-2001 (medium)" in row["reason"]

    connect(db_path)["issues"].update("CASE-2001", {"closed_at": "2026-11-24T12:00:00Z"})
    queue_time_s += int(row["duration_s"])
    twilio_post(WAIT, wait_params(queue_time_s))  # music after the tip
    queue_time_s += int(plays(db_path)[-1]["duration_s"])
    twilio_post(WAIT, wait_params(queue_time_s))
    assert plays(db_path)[-1]["kind"] == "promo"  # closed: promos may play again


def test_garbage_queue_parameters_are_ignored_not_fatal(demo, twilio_post, db_path):
    params = {**wait_params(0), "QueueTime": "inf", "QueuePosition": "1e999", "AvgQueueTime": "nan"}
    root = twiml(twilio_post(WAIT, params))
    assert [child.tag for child in root] == ["Say"]  # the notice, as for any first request
    assert plays(db_path)[0]["at_s"] == 0


def test_a_broken_clock_still_answers_music(db_path, demo_music):
    load_demo_flow(db_path)

    def broken_clock():
        raise RuntimeError("clock unavailable")
    app = create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                      "PUBLIC_BASE_URL": BASE_URL, "HOLDGUARD_CLOCK": broken_clock})
    assert_music_only(signed_post(app, WAIT, wait_params(0)), {FALLBACK_MUSIC_URL})
    assert "RuntimeError: clock unavailable" in plays(db_path)[0]["reason"]


def test_a_non_ascii_signature_is_a_403_not_a_crash(demo, client):
    response = client.post(WAIT, data=wait_params(0), headers={"X-Twilio-Signature": "s\u00efgnature"})
    assert response.status_code == 403


def test_two_workers_alternating_on_one_call_each_see_every_play(demo, db_path):
    """Two workers' connections alternate on one call: each still sees every play, in order."""
    from datetime import datetime, timezone

    from app.core.policy import Decision, Segment
    from app.storage.connect import connect
    from app.storage.playlog import load_call, record_play

    worker_dbs = [connect(db_path, create=False), connect(db_path, create=False)]
    sid = CALL["CallSid"]
    for number in range(6):
        worker = number % 2
        seen, _, _ = load_call(worker_dbs[worker], sid)
        assert [p.segment_id for p in seen.plays] == [f"s{n}" for n in range(number)]
        decision = Decision(Segment(f"s{number}", "music", 45, play="https://cdn.example.com/a.mp3"), "test")
        record_play(worker_dbs[worker], sid, NIA, "C-1003", "support", decision,
                    datetime.now(timezone.utc), number * 45.0, str(number * 45))
    for db in worker_dbs:
        db.close()


@pytest.mark.sqlite_only  # a SQLite file's own lock
def test_after_a_lock_the_next_answers_are_music_without_waiting_on_the_database(demo, twilio_post, db_path,
                                                                                  monkeypatch, demo_music):
    """Many callers and a locked database: one request waits out the busy timeout, the next ones for
    a second answer music at once instead of each holding a worker for the timeout."""
    from app.storage import connect as storage
    from app.web import twilio_hold

    monkeypatch.setattr(twilio_hold.LockBreaker, "OPEN_S", 0.5)
    holder = storage.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("insert into queues (name, music) values ('lock', '[]')")
    first = twiml(twilio_post(WAIT, wait_params(0)))
    assert first.find("Play") is not None and first.find("Say") is None  # music: fail closed

    opened = []
    real_webhook_db = twilio_hold.playlog.webhook_db
    monkeypatch.setattr(twilio_hold.playlog, "webhook_db", lambda url: opened.append(url) or real_webhook_db(url))
    for queue_time in (45, 90, 135):
        answer = twiml(twilio_post(WAIT, wait_params(queue_time)))
        assert answer.find("Play") is not None and answer.find("Say") is None
    assert opened == []  # the breaker answered without touching the database
    assert twilio_hold._lock_breakers[str(db_path)].skipped == 3

    holder.execute("ROLLBACK")
    time.sleep(0.6)
    twilio_post(WAIT, wait_params(180))  # the breaker has closed: a normal, logged answer
    assert opened and connect(db_path)["plays"].count == 1


@pytest.mark.sqlite_only  # a file deleted and made again under a running webhook
def test_a_deleted_then_recreated_database_file_is_reopened_not_served_from_the_old_handle(demo, twilio_post,
                                                                                           db_path):
    import os

    from app.storage.schema import open_database

    twilio_post(WAIT, wait_params(0))  # the worker's connection is open on the first file
    for suffix in ("", "-wal", "-shm"):
        os.remove(f"{db_path}{suffix}")
    answer = twiml(twilio_post(WAIT, wait_params(45)))
    assert answer.find("Play") is not None and answer.find("Say") is None  # music: failing closed

    open_database(db_path).close()  # e.g. `holdguard db init` and a flow load after a restore
    load_demo_flow(db_path)
    twilio_post(WAIT, wait_params(90))
    assert connect(db_path)["plays"].count == 1  # logged in the new file

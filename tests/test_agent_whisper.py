"""The agent whisper: signed requests as Twilio sends them for <Dial><Queue url=…>, after a hold the real
webhook served; the spoken text; the per-queue switch; faults answer the generic line at once."""
import logging
import sqlite3
import time
from contextlib import closing
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app import create_app
from app.core.agent_whisper import (GENERIC_WHISPER, UNKNOWN_CALLER_WHISPER, WHISPER_MAX_S, heard_so_far, spoken_s,
                                    whisper_text)
from app.core.flows import parse_flow
from app.core.policy import Caller, Issue, Play, Segment
from app.storage.catalog import load_catalog, save_catalog
from app.storage import playlog
from app.storage.connect import connect
from app.storage.schema import migrate, open_database
from conftest import AUTH_TOKEN, BASE_URL, sign
from test_personas import DANA, NIA, insert_demo_customers
from tests.speech import speak

DEMO_FLOW = Path(__file__).resolve().parents[1] / "app" / "demo_data" / "flows.toml"
WHISPER = "/twilio/agent-whisper"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
QUEUE_SID = "QU" + "2" * 32
AGENT_CALL = "CA" + "a" * 32
SPEECH_RATE_HZ = 16000


def flow_text(agent_whisper: bool | None = True) -> str:
    text = DEMO_FLOW.read_text()
    if agent_whisper is None:
        return text
    return text.replace("[queue.support]\n", f"[queue.support]\nagent_whisper = {str(agent_whisper).lower()}\n")


def load_flow(db_path, agent_whisper: bool | None = True) -> None:
    db = connect(db_path)
    save_catalog(db, parse_flow(flow_text(agent_whisper)))
    db.close()


def app_on(db_path, clock=lambda: NOW):
    return create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                       "PUBLIC_BASE_URL": BASE_URL, "HOLDGUARD_CLOCK": clock})


def post(app, path, params, signature=None):
    signature = sign(path, params) if signature is None else signature
    return app.test_client().post(path, data=params, headers={"X-Twilio-Signature": signature})


def call_sid(number: int) -> str:
    return f"CA{number:032x}"


def hold(app, db_path, caller: str, sid: str, minutes: float) -> float:
    """A real hold through the webhooks: /twilio/voice, then wait requests with a growing QueueTime."""
    base = {"CallSid": sid, "AccountSid": "AC" + "1" * 32, "From": caller, "To": "+15555550000",
            "CallStatus": "in-progress", "Direction": "inbound"}
    assert post(app, "/twilio/voice", base).status_code == 200
    queue_time_s, position = 0.0, 12
    while queue_time_s < minutes * 60:
        params = {**base, "QueueSid": QUEUE_SID, "QueueTime": str(int(queue_time_s)), "QueuePosition": str(position),
                  "AvgQueueTime": "2700", "CurrentQueueSize": str(position + 3)}
        assert post(app, "/twilio/wait?queue=support", params).status_code == 200
        with closing(connect(db_path)) as db:
            (last,) = db.query("SELECT duration_s FROM plays WHERE call_sid = ? ORDER BY id DESC LIMIT 1", [sid])
        queue_time_s += last["duration_s"]
        position = max(1, position - 1)
    return queue_time_s


def whisper_params(sid: str, queue_time_s: float) -> dict:
    """What Twilio posts to the <Queue> url: the standard parameters of the dequeued call, plus the queue's."""
    return {"AccountSid": "AC" + "1" * 32, "CallSid": sid, "QueueSid": QUEUE_SID, "QueueTime": str(int(queue_time_s)),
            "DequeingCallSid": AGENT_CALL, "CallStatus": "in-progress", "Direction": "inbound",
            "From": "+15555550000", "To": "+15555550000"}


def said_aloud_s(text: str) -> float:
    """How long a real text-to-speech voice (espeak-ng, 160 words a minute) takes to say `text`."""
    return len(speak(text, speed_wpm=160)) / SPEECH_RATE_HZ


def said(response) -> str:
    """The text of the answer's one <Say>; the answer must be valid TwiML with nothing else in it."""
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.data)
    assert root.tag == "Response" and [child.tag for child in root] == ["Say"]
    return root[0].text


@pytest.fixture
def demo(db_path):
    load_flow(db_path)
    insert_demo_customers(db_path)
    return app_on(db_path)


# ---- the spoken text, through the real webhooks ---------------------------------------------------

def test_caller_mid_issue_who_heard_the_notice(demo, db_path):
    queue_time_s = hold(demo, db_path, DANA, call_sid(1), 44.5)

    text = said(post(demo, WHISPER, whisper_params(call_sid(1), queue_time_s)))

    assert round(queue_time_s / 60) == 45
    assert text == ("Dana Reyes. Open case 1042, high. Waited 45 minutes. Heard outage northeast notice. "
                    "No promotions. 2 reassurances.")
    assert spoken_s(text) <= WHISPER_MAX_S
    assert said_aloud_s(text) <= WHISPER_MAX_S


def test_caller_who_heard_one_promo(demo, db_path):
    queue_time_s = hold(demo, db_path, NIA, call_sid(2), 10)
    promos = list(connect(db_path).query(
        "SELECT segment_id FROM plays WHERE call_sid = ? AND kind = 'promo'", [call_sid(2)]))
    assert [row["segment_id"] for row in promos] == ["galaxy-upgrade"]

    text = said(post(demo, WHISPER, whisper_params(call_sid(2), queue_time_s)))

    assert text == (f"Nia Patel. No open case. Waited {round(queue_time_s / 60)} minutes. "
                    "Heard outage northeast notice. Heard promotion for Galaxy S7. 1 reassurance.")
    assert said_aloud_s(text) <= WHISPER_MAX_S


def test_unknown_caller_gets_the_short_line_with_no_crm_data(demo, db_path):
    queue_time_s = hold(demo, db_path, "+15555550177", call_sid(3), 3)

    text = said(post(demo, WHISPER, whisper_params(call_sid(3), queue_time_s)))

    assert text == f"{UNKNOWN_CALLER_WHISPER} Waited 3 minutes."


def test_a_call_the_webhook_never_saw_is_an_unknown_caller(demo):
    assert said(post(demo, WHISPER, whisper_params(call_sid(4), 75))) == f"{UNKNOWN_CALLER_WHISPER} Waited 1 minute."


def test_agent_whisper_false_answers_an_empty_response(db_path):
    load_flow(db_path, agent_whisper=False)
    insert_demo_customers(db_path)
    app = app_on(db_path)
    hold(app, db_path, DANA, call_sid(5), 2)

    response = post(app, WHISPER, whisper_params(call_sid(5), 120))

    assert response.status_code == 200
    root = ElementTree.fromstring(response.data)
    assert root.tag == "Response" and list(root) == []


def test_the_whisper_is_off_unless_the_flow_turns_it_on(db_path):
    load_flow(db_path, agent_whisper=None)
    with closing(connect(db_path)) as db:
        assert load_catalog(db).queues["support"].agent_whisper is False
    insert_demo_customers(db_path)
    app = app_on(db_path)
    hold(app, db_path, DANA, call_sid(6), 2)
    assert list(ElementTree.fromstring(post(app, WHISPER, whisper_params(call_sid(6), 120)).data)) == []


def test_the_whisper_is_logged_with_the_calls_timeline(demo, db_path, caplog):
    hold(demo, db_path, DANA, call_sid(7), 1)
    with caplog.at_level(logging.INFO, logger="app.web.agent"):
        said(post(demo, WHISPER, whisper_params(call_sid(7), 60)))
    assert f"/calls/{call_sid(7)}" in caplog.text and AGENT_CALL in caplog.text


# ---- signatures -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "other token", "other path", "tampered params"])
def test_unsigned_or_forged_whisper_requests_get_403(demo, db_path, case):
    hold(demo, db_path, DANA, call_sid(8), 1)
    params = whisper_params(call_sid(8), 60)
    signature = {"missing": "",
                 "other token": sign(WHISPER, params, token="not-the-token"),
                 "other path": sign("/twilio/wait", params),
                 "tampered params": sign(WHISPER, {**params, "CallSid": call_sid(9)})}[case]
    headers = {"X-Twilio-Signature": signature} if signature else {}
    response = demo.test_client().post(WHISPER, data=params, headers=headers)
    assert response.status_code == 403
    assert b"Dana" not in response.data


def test_a_signed_request_with_a_query_string_is_accepted(demo, db_path):
    hold(demo, db_path, DANA, call_sid(10), 1)
    assert said(post(demo, WHISPER + "?queue=support", whisper_params(call_sid(10), 60))).startswith("Dana Reyes.")


# ---- faults: the generic line, valid TwiML, at once -------------------------------------------------

def timed(app, params) -> tuple[str, float]:
    started = time.perf_counter()
    response = post(app, WHISPER, params)
    return said(response), time.perf_counter() - started


def test_missing_database_answers_the_generic_line(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="app.web.agent"):
        text, elapsed_s = timed(app_on(tmp_path / "gone.db"), whisper_params(call_sid(11), 60))
    assert text == GENERIC_WHISPER and elapsed_s < 1.0
    assert not (tmp_path / "gone.db").exists()
    assert "generic line" in caplog.text


def test_corrupt_database_answers_the_generic_line(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database file at all " * 200)
    text, elapsed_s = timed(app_on(corrupt), whisper_params(call_sid(12), 60))
    assert text == GENERIC_WHISPER and elapsed_s < 1.0


@pytest.mark.sqlite_only
def test_locked_database_answers_the_generic_line_within_a_second(demo, db_path):
    hold(demo, db_path, DANA, call_sid(13), 1)
    playlog.discard_webhook_db()  # a fresh worker: it must open the database while it is locked
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO queues (name, music) VALUES ('lock', '[]')")
    try:
        text, elapsed_s = timed(app_on(db_path), whisper_params(call_sid(13), 60))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert text == GENERIC_WHISPER and elapsed_s < 1.5


def test_bad_customer_data_answers_the_generic_line(demo, db_path):
    hold(demo, db_path, DANA, call_sid(14), 1)
    connect(db_path).execute("UPDATE customers SET products = 'not json' WHERE phone_e164 = ?", [DANA])
    assert said(post(demo, WHISPER, whisper_params(call_sid(14), 60))) == GENERIC_WHISPER


def test_a_queue_without_a_hold_flow_answers_the_generic_line(db_path):
    insert_demo_customers(db_path)
    assert said(post(app_on(db_path), WHISPER, whisper_params(call_sid(15), 60))) == GENERIC_WHISPER


def test_no_call_sid_answers_the_generic_line(demo):
    params = {key: value for key, value in whisper_params(call_sid(16), 60).items() if key != "CallSid"}
    assert said(post(demo, WHISPER, params)) == GENERIC_WHISPER


# ---- the text itself (pure) -------------------------------------------------------------------------

def play(segment_id, kind, at_s=0.0, duration_s=7.0):
    return Play(segment_id, kind, NOW, at_s, duration_s)


GALAXY = Segment("galaxy-upgrade", "promo", 9, say="Upgrade", products=("Galaxy S7",))
FIBER = Segment("fiber-offer", "promo", 7, say="Fiber", products=("Fiber 1G",))


def test_a_promo_for_a_product_the_caller_owns_is_said_so():
    sam = Caller("+15555550101", "C-1002", "Sam Okafor", ("galaxy s7",))
    text = whisper_text(sam, [play("music-1", "music", 0, 45), play("galaxy-upgrade", "promo", 45, 9)], [GALAXY],
                        NOW, 400)
    assert text == "Sam Okafor. No open case. Waited 7 minutes. Heard promotion for Galaxy S7, which they own."


def test_without_queue_time_the_wait_runs_on_from_the_last_answer():
    nia = Caller(NIA, "C-1003", "Nia Patel")
    plays = [Play("music-1", "music", NOW - timedelta(minutes=3), 420.0, 45.0)]
    assert "Waited 10 minutes." in whisper_text(nia, plays, [], NOW)


def test_a_crowded_hold_still_fits_in_twelve_seconds_keeping_name_worst_issue_and_wait():
    caller = Caller("+15555550100", "C-1", "Alexandra Maria Longname-Smith", (),
                    tuple(Issue(f"CASE-{1040 + n}", severity) for n, severity in
                          enumerate(["low", "critical", "high", "medium"])))
    plays = ([play(f"notice-region-{n}", "notice") for n in range(4)] + [play("galaxy-upgrade", "promo"),
             play("fiber-offer", "promo")] + [play("thanks", "reassurance")] * 2)
    text = whisper_text(caller, plays, [GALAXY, FIBER], NOW, 3000)
    assert spoken_s(text) <= WHISPER_MAX_S and said_aloud_s(text) <= WHISPER_MAX_S
    assert text.startswith("Alexandra Maria Longname-Smith. Open cases 1041, critical")
    assert "Waited 50 minutes." in text


def test_heard_so_far_counts_what_matters():
    heard = heard_so_far([play("outage", "notice"), play("music-1", "music", duration_s=45),
                          play("wait-announcement", "wait"), play("galaxy-upgrade", "promo"),
                          play("thanks", "reassurance"), play("tip-billing", "tip"), play("thanks", "reassurance")],
                         [GALAXY])
    assert heard.notices == ("outage",) and heard.tips == ("tip-billing",)
    assert [(p.segment_id, p.products) for p in heard.promos] == [("galaxy-upgrade", ("Galaxy S7",))]
    assert (heard.reassurances, heard.waits, heard.music_s) == (2, 1, 45)


# ---- the queue setting in the database --------------------------------------------------------------

def test_an_older_database_gets_the_agent_whisper_column_by_migration(tmp_path):
    """A database from before the setting: no column, its migration not applied."""
    path = tmp_path / "old.db"
    open_database(path).close()
    db = connect(path)
    db.execute("ALTER TABLE queues DROP COLUMN agent_whisper")
    db.execute("DELETE FROM schema_migrations WHERE name = 'queue setting agent_whisper'")
    assert "agent_whisper" not in db["queues"].columns_dict
    assert migrate(db) == ["queue setting agent_whisper"]
    assert "agent_whisper" in db["queues"].columns_dict
    save_catalog(db, parse_flow(flow_text(True)))
    assert load_catalog(db).queues["support"].agent_whisper is True
    db.close()


def test_hostile_crm_text_stays_text_in_the_twiml(demo, db_path):
    hold(demo, db_path, DANA, call_sid(17), 1)
    with closing(connect(db_path)) as db:
        db.execute("UPDATE customers SET name = ? WHERE phone_e164 = ?", ['Dana </Say><Dial>+19005550000</Dial>', DANA])
    text = said(post(demo, WHISPER, whisper_params(call_sid(17), 60)))  # still one <Say> and nothing else
    assert text.startswith("Dana </Say><Dial>+19005550000</Dial>.")

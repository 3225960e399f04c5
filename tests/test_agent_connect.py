"""The agent-only whisper: the agent's own call says what the caller heard, then dequeues them.

Signed requests as Twilio sends them: the agent's call requesting /twilio/agent-connect, the
<Queue url> Twilio then runs on the dequeued caller's end, and TaskRouter's assignment callback.
The holds before them go through the real webhooks (tests/test_agent_whisper.py's `hold`).
"""
import json
import logging
import xml.etree.ElementTree as ElementTree
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from app.core.agent_whisper import GENERIC_WHISPER
from app.storage.connect import connect
from app.storage.live import calls_on_hold
from conftest import BASE_URL
from test_agent_whisper import AGENT_CALL, NOW, QUEUE_SID, app_on, call_sid, hold, load_flow, post
from test_personas import DANA, NIA, insert_demo_customers

CONNECT = "/twilio/agent-connect"
RESERVATION = "WR" + "3" * 32


def agent_call_params() -> dict:
    """The agent's own call, answered: the standard voice parameters (its CallSid is the agent's)."""
    return {"AccountSid": "AC" + "1" * 32, "CallSid": AGENT_CALL, "CallStatus": "in-progress",
            "Direction": "outbound-api", "From": "+15555550000", "To": "client:alice"}


def twiml(response) -> ElementTree.Element:
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.data)
    assert root.tag == "Response"
    return root


def whisper_and_queue(response) -> tuple[str | None, ElementTree.Element]:
    """The agent's TwiML: an optional <Say>, then a <Dial> of one <Queue> (always: the agent is put through)."""
    root = twiml(response)
    tags = [child.tag for child in root]
    assert tags in (["Say", "Dial"], ["Dial"])
    dial = root[-1]
    assert [child.tag for child in dial] == ["Queue"]
    return (root[0].text if tags[0] == "Say" else None), dial[0]


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def centre(db_path, clock):
    load_flow(db_path)
    insert_demo_customers(db_path)
    return app_on(db_path, clock)


def dequeued(app, told: str, sid: str, caller: str):
    """What Twilio requests, on the caller's end, as agent-connect's <Dial> takes the caller from the queue."""
    params = {"AccountSid": "AC" + "1" * 32, "CallSid": sid, "QueueSid": QUEUE_SID, "QueueTime": "600",
              "DequeingCallSid": AGENT_CALL, "From": caller, "To": "+15555550000"}
    return post(app, f"/twilio/agent-check?told={told}", params)


# ---- a plain queue: the caller at the front, as the play log knows it -----------------------------

def test_the_agent_hears_about_the_longest_waiting_caller_then_is_put_through(centre, db_path, clock):
    hold(centre, db_path, DANA, call_sid(1), 1)  # Dana joins first
    clock.now = NOW + timedelta(minutes=2)
    hold(centre, db_path, NIA, call_sid(2), 1)

    text, queue = whisper_and_queue(post(centre, CONNECT, agent_call_params()))

    assert text.startswith("Dana Reyes. Open case 1042, high.") and "Nia" not in text
    assert queue.text == "support"
    check = urlsplit(queue.get("url"))
    assert f"{check.scheme}://{check.netloc}" == BASE_URL and check.path == "/twilio/agent-check"
    assert parse_qs(check.query)["told"] == [call_sid(1)]

    # Dana is put through. Twilio posts her queue result only when that conversation ends, but she
    # left the queue now: the next agent hears about Nia, and /live no longer shows Dana on hold
    assert list(twiml(dequeued(centre, call_sid(1), call_sid(1), DANA))) == []
    assert connect(db_path)["calls"].get(call_sid(1))["queue_result"] == "bridging-in-process"
    text, _ = whisper_and_queue(post(centre, CONNECT, agent_call_params()))
    assert text.startswith("Nia Patel. No open case.")
    assert [row["call_sid"] for row in calls_on_hold(connect(db_path), clock.now)] == [call_sid(2)]


def test_other_queues_callers_are_not_whispered_about(centre, db_path):
    hold(centre, db_path, DANA, call_sid(3), 1)

    text, queue = whisper_and_queue(post(centre, CONNECT + "?queue=sales", agent_call_params()))

    assert text is None and queue.text == "sales"
    assert "told" not in parse_qs(urlsplit(queue.get("url")).query)


def test_with_nobody_on_hold_the_agent_just_waits_for_the_next_caller(centre):
    text, queue = whisper_and_queue(post(centre, CONNECT, agent_call_params()))
    assert text is None and queue.text == "support"


def test_the_queue_check_says_nothing_to_the_caller_and_logs_a_changed_front(centre, caplog):
    with caplog.at_level(logging.INFO, logger="app.web.agent"):
        same = dequeued(centre, call_sid(5), call_sid(5), NIA)
        other = dequeued(centre, call_sid(4), call_sid(5), NIA)
    assert list(twiml(same)) == [] and list(twiml(other)) == []
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert call_sid(4) in warnings[0].getMessage() and call_sid(5) in warnings[0].getMessage()


def test_the_whisper_is_off_unless_the_queues_flow_turns_it_on(db_path):
    load_flow(db_path, agent_whisper=None)  # the demo flow as shipped: agent_whisper not set
    insert_demo_customers(db_path)
    app = app_on(db_path)
    hold(app, db_path, DANA, call_sid(6), 1)

    text, queue = whisper_and_queue(post(app, CONNECT, agent_call_params()))

    assert text is None and queue.text == "support"


# ---- TaskRouter: the reserved caller, exactly -----------------------------------------------------

def test_a_reservation_dequeues_exactly_the_reserved_caller(centre, db_path, clock):
    hold(centre, db_path, DANA, call_sid(7), 1)
    clock.now = NOW + timedelta(minutes=2)
    hold(centre, db_path, NIA, call_sid(8), 1)

    text, queue = whisper_and_queue(post(centre, f"{CONNECT}?reservation={RESERVATION}&caller={call_sid(8)}",
                                         agent_call_params()))

    assert text.startswith("Nia Patel.")  # not the front of the queue: the caller TaskRouter reserved
    assert queue.get("reservationSid") == RESERVATION and not (queue.text or "").strip()


def test_the_assignment_callback_rings_the_worker_with_the_whisper_as_their_calls_twiml(centre, db_path):
    hold(centre, db_path, NIA, call_sid(9), 1)
    params = {"AccountSid": "AC" + "1" * 32, "WorkspaceSid": "WS" + "4" * 32, "WorkflowSid": "WW" + "5" * 32,
              "TaskQueueSid": "WQ" + "6" * 32, "WorkerSid": "WK" + "7" * 32, "TaskSid": "WT" + "8" * 32,
              "ReservationSid": RESERVATION, "TaskAge": "60",
              "TaskAttributes": json.dumps({"call_sid": call_sid(9), "from": NIA, "to": "+15555550000",
                                            "direction": "inbound", "account_sid": "AC" + "1" * 32}),
              "WorkerAttributes": json.dumps({"contact_uri": "client:alice"})}

    response = post(centre, "/twilio/assignment", params)

    assert response.status_code == 200 and response.mimetype == "application/json"
    instruction = response.get_json()
    assert {key: instruction[key] for key in ("instruction", "to", "from", "accept")} == \
        {"instruction": "call", "to": "client:alice", "from": "+15555550000", "accept": True}
    url = urlsplit(instruction["url"])
    assert f"{url.scheme}://{url.netloc}" == BASE_URL
    assert parse_qs(url.query) == {"reservation": [RESERVATION], "caller": [call_sid(9)]}
    # TaskRouter rings the worker; their answered call requests that URL, signed like any webhook
    text, queue = whisper_and_queue(post(centre, f"{url.path}?{url.query}", agent_call_params()))
    assert text.startswith("Nia Patel.") and queue.get("reservationSid") == RESERVATION


@pytest.mark.parametrize("change, field", [
    ({"WorkerAttributes": json.dumps({"name": "alice"})}, "WorkerAttributes.contact_uri"),
    ({"WorkerAttributes": "not json"}, "WorkerAttributes"),
    ({"ReservationSid": "WR-nope"}, "ReservationSid"),
    ({"TaskAttributes": json.dumps({"call_sid": "CA1"})}, "TaskAttributes.to"),
])
def test_an_assignment_it_cannot_route_is_a_400_naming_the_field(centre, change, field):
    params = {"ReservationSid": RESERVATION, "TaskAttributes": json.dumps({"to": "+15555550000"}),
              "WorkerAttributes": json.dumps({"contact_uri": "client:alice"}), **change}
    response = post(centre, "/twilio/assignment", params)
    assert response.status_code == 400 and response.data.decode().startswith(field)


# ---- signatures and faults -----------------------------------------------------------------------

@pytest.mark.parametrize("path", [CONNECT, "/twilio/agent-check", "/twilio/assignment"])
def test_unsigned_requests_get_403(centre, db_path, path):
    hold(centre, db_path, DANA, call_sid(10), 1)
    response = centre.test_client().post(path, data=agent_call_params(),
                                         headers={"X-Twilio-Signature": "forged"})
    assert response.status_code == 403 and b"Dana" not in response.data


def test_a_database_fault_still_puts_the_agent_through(tmp_path):
    text, queue = whisper_and_queue(post(app_on(tmp_path / "gone.db"), f"{CONNECT}?caller={call_sid(11)}",
                                         agent_call_params()))
    assert text == GENERIC_WHISPER and queue.text == "support"


def test_a_malformed_sid_in_the_url_is_ignored_not_an_error(centre, db_path):
    hold(centre, db_path, DANA, call_sid(12), 1)
    text, queue = whisper_and_queue(post(centre, f"{CONNECT}?reservation=WR-bad&caller=nope", agent_call_params()))
    assert text.startswith("Dana Reyes.") and queue.get("reservationSid") is None and queue.text == "support"


# ---- hostile input: whatever is signed, the agent is put through and nothing answers 5xx ---------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
SIDS = st.one_of(TEXT, st.sampled_from([call_sid(1), call_sid(99), RESERVATION, "CA", "WR" + "g" * 32]))


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=st.dictionaries(st.sampled_from(["queue", "caller", "reservation", "told", "from"]), SIDS, max_size=4),
       form=st.dictionaries(st.sampled_from(["CallSid", "QueueTime", "DequeingCallSid", "ReservationSid",
                                             "TaskAttributes", "WorkerAttributes"]),
                            st.one_of(SIDS, st.just('{"contact_uri": "client:a", "to": "+1"}'), st.just("[]")),
                            max_size=6))
def test_any_signed_request_answers_valid_twiml_or_a_4xx(centre, query, form):
    path = "?" + urlencode(query) if query else ""
    connect_answer = post(centre, CONNECT + path, form)
    text, queue = whisper_and_queue(connect_answer)  # always a <Dial> of one <Queue>
    assert list(twiml(post(centre, "/twilio/agent-check" + path, form))) == []
    assignment = post(centre, "/twilio/assignment" + path, form)
    assert assignment.status_code in (200, 400)
    if assignment.status_code == 200:
        assert assignment.get_json()["instruction"] == "call"

"""The live hold view and one call's page: /live.json's shape, who is on hold when, /calls/<CallSid>, the
links to it, the pages' access rule; and /live in a real Chromium as a call comes and goes."""
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app import create_app
from app.storage import audits as store, live
from app.storage.connect import connect
from conftest import AUTH_TOKEN, BASE_URL, sign
from test_agent_whisper import QUEUE_SID, call_sid, load_flow
from test_browser import browser, serve_in_thread  # noqa: F401 (the fixture)
from test_pages import audit_result
from test_personas import DANA, NIA, insert_demo_customers

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
PAGES_TOKEN = "live-pages-token"
WITH_TOKEN = {"Authorization": f"Bearer {PAGES_TOKEN}"}


def caller_params(sid: str, caller: str) -> dict:
    return {"CallSid": sid, "AccountSid": "AC" + "1" * 32, "From": caller, "To": "+15555550000",
            "CallStatus": "in-progress", "Direction": "inbound"}


def wait_params(sid: str, caller: str, queue_time_s: int) -> dict:
    return {**caller_params(sid, caller), "QueueSid": QUEUE_SID, "QueueTime": str(queue_time_s),
            "QueuePosition": "3", "AvgQueueTime": "600", "CurrentQueueSize": "4"}


class Twilio:
    """Plays Twilio against an app: signed POSTs through a client (test client or HTTP)."""

    def __init__(self, post):
        self.post = post

    def signed(self, path, params):
        response = self.post(path, params, {"X-Twilio-Signature": sign(path, params)})
        assert response.status_code == 200
        return response

    def start(self, sid, caller, answers=3):
        self.signed("/twilio/voice", caller_params(sid, caller))
        queue_time_s = 0
        for _ in range(answers):
            self.signed("/twilio/wait?queue=support", wait_params(sid, caller, queue_time_s))
            queue_time_s += 10

    def end(self, sid, caller, result="bridged"):
        self.signed("/twilio/queue-result?queue=support",
                    {**caller_params(sid, caller), "QueueResult": result, "QueueSid": QUEUE_SID, "QueueTime": "95"})


@pytest.fixture
def demo(db_path):
    load_flow(db_path)
    insert_demo_customers(db_path)
    return create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                       "PUBLIC_BASE_URL": BASE_URL, "HOLDGUARD_PAGES_TOKEN": PAGES_TOKEN})


def page_of(app, path, **kwargs):
    """GET a page the way a supervisor's browser does: with the pages' token."""
    return app.test_client().get(path, headers=WITH_TOKEN, **kwargs)


@pytest.fixture
def twilio(demo):
    client = demo.test_client()
    return Twilio(lambda path, params, headers: client.post(path, data=params, headers=headers))


def on_hold(app) -> dict:
    response = page_of(app, "/live.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


# ---- /live.json ------------------------------------------------------------------------------------

def test_live_json_shape_with_a_caller_on_hold(demo, twilio):
    twilio.start(call_sid(1), DANA, answers=4)

    view = on_hold(demo)

    assert set(view) == {"as_of", "on_hold_silence_s", "calls_on_hold", "queues"}
    assert view["calls_on_hold"] == 1 and view["on_hold_silence_s"] == live.ON_HOLD_SILENCE_S
    assert [queue["name"] for queue in view["queues"]] == ["support"]
    (call,) = view["queues"][0]["calls"]
    assert set(call) == {"call_sid", "caller", "customer_id", "name", "queue", "started_at", "waited_s",
                         "open_issues", "heard", "skipped", "last_answer", "url"}
    assert (call["call_sid"], call["caller"], call["customer_id"], call["name"], call["queue"]) == \
        (call_sid(1), DANA, "C-1001", "Dana Reyes", "support")
    assert call["open_issues"] == [{"id": "CASE-1042", "severity": "high", "summary": "test issue"}]
    assert call["heard"] == {"notices": ["outage-northeast"], "promos": [], "reassurances": 0, "waits": 1,
                             "tips": [], "music_s": 90.0, "announcements": 1}  # the deprecated name of waits
    assert 30 <= call["waited_s"] < 40  # the last answer's QueueTime (30 s) and the moments since
    assert call["last_answer"]["kind"] == "music" and call["last_answer"]["reason"].startswith("music:")
    assert call["url"] == f"/calls/{call_sid(1)}"
    assert isinstance(call["skipped"], list)


def test_what_was_skipped_and_why(demo, twilio):
    twilio.start(call_sid(2), DANA, answers=6)  # long enough for the policy to consider a promo

    (call,) = on_hold(demo)["queues"][0]["calls"]

    assert {"cause": "open_issue", "label": "open issue"}.items() <= call["skipped"][0].items()
    assert call["skipped"][0]["reason"].endswith("promo skipped: open issue CASE-1042 (high)")
    assert call["skipped"][0]["answers"] >= 1


def test_a_call_leaves_with_its_queue_result(demo, twilio):
    twilio.start(call_sid(3), DANA)
    twilio.start(call_sid(4), NIA)
    assert on_hold(demo)["calls_on_hold"] == 2

    twilio.end(call_sid(3), DANA)

    view = on_hold(demo)
    assert [call["call_sid"] for call in view["queues"][0]["calls"]] == [call_sid(4)]


def test_a_call_with_no_wait_request_for_long_leaves_and_simulated_calls_never_show(demo, twilio, db_path):
    twilio.start(call_sid(5), DANA)
    with closing(connect(db_path)) as db:
        db.execute("UPDATE calls SET simulated = 1 WHERE call_sid = ?", [call_sid(5)])
        assert live.calls_on_hold(db, datetime.now(timezone.utc)) == []
        db.execute("UPDATE calls SET simulated = 0 WHERE call_sid = ?", [call_sid(5)])
        now = datetime.now(timezone.utc)
        assert [row["call_sid"] for row in live.calls_on_hold(db, now)] == [call_sid(5)]
        later = now + timedelta(seconds=live.ON_HOLD_SILENCE_S + 1)
        assert live.calls_on_hold(db, later) == []


def test_every_loaded_queue_is_listed_even_when_empty(demo):
    view = on_hold(demo)
    assert view["calls_on_hold"] == 0 and view["queues"] == [{"name": "support", "calls": []}]


# ---- /live and /calls/<CallSid> ----------------------------------------------------------------------

def test_live_page_lists_the_call_and_links_it(demo, twilio):
    twilio.start(call_sid(6), DANA)
    page = page_of(demo, "/live").text
    assert "Dana Reyes" in page and "CASE-1042" in page and f'href="/calls/{call_sid(6)}"' in page
    assert 'data-refresh-s="5"' in page and "live.js" in page


def test_live_page_refresh_must_be_sensible(demo):
    assert page_of(demo, "/live?refresh=2").status_code == 200
    assert page_of(demo, "/live?refresh=0").status_code == 400
    assert page_of(demo, "/live?refresh=soon").status_code == 400


def test_call_page_shows_every_answer_with_its_reason(demo, twilio):
    twilio.start(call_sid(7), DANA, answers=6)
    page = page_of(demo, f"/calls/{call_sid(7)}").text
    assert "Dana Reyes" in page and 'status-live">on hold now' in page
    assert "notice outage-northeast: not yet heard this call" in page
    assert "promo skipped: open issue CASE-1042 (high)" in page
    assert "Agent whisper, if turned on for this queue" in page and "Open case 1042, high." in page

    twilio.end(call_sid(7), DANA)
    page = page_of(demo, f"/calls/{call_sid(7)}").text
    assert "bridged" in page and 'status-live">on hold now' not in page


def test_call_page_for_an_unknown_call_is_a_404(demo):
    response = page_of(demo, "/calls/CA" + "f" * 32)
    assert response.status_code == 404 and "no call" in response.text


def test_call_page_escapes_hostile_caller_data(demo, twilio, db_path):
    twilio.start(call_sid(8), DANA)
    with closing(connect(db_path)) as db:
        db.execute("UPDATE customers SET name = '<script>alert(1)</script>' WHERE customer_id = 'C-1001'")
    for path in (f"/calls/{call_sid(8)}", "/live"):
        page = page_of(demo, path).text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_audit_page_links_its_call_when_the_webhook_served_it(demo, twilio, db_path):
    twilio.start(call_sid(9), DANA)
    with closing(connect(db_path)) as db:
        served = store.save(db, audit_result("served.wav"), call_sid=call_sid(9),
                            now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
        foreign = store.save(db, audit_result("foreign.wav"), call_sid="CA" + "e" * 32,
                             now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
    assert f'href="/calls/{call_sid(9)}"' in page_of(demo, f"/audits/{served}").text
    assert "/calls/" not in page_of(demo, f"/audits/{foreign}").text
    assert f'href="/audits/{served}"' in page_of(demo, f"/calls/{call_sid(9)}").text


@pytest.mark.parametrize("path", ["/live", "/live.json", f"/calls/{call_sid(10)}"])
def test_live_pages_follow_the_pages_access_rule(demo, twilio, path):
    twilio.start(call_sid(10), DANA)
    client = demo.test_client()
    assert client.get(path, environ_base=REMOTE).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    assert client.get(path, environ_base=REMOTE, headers=WITH_TOKEN).status_code == 200


def test_the_whisper_webhook_is_not_behind_the_pages_rule(demo, twilio):
    twilio.start(call_sid(11), DANA)
    params = {**caller_params(call_sid(11), DANA), "QueueSid": QUEUE_SID, "QueueTime": "60",
              "DequeingCallSid": "CA" + "a" * 32}
    response = demo.test_client().post("/twilio/agent-whisper", data=params,
                                       headers={"X-Twilio-Signature": sign("/twilio/agent-whisper", params)},
                                       environ_base=REMOTE)
    assert response.status_code == 200 and b"Dana Reyes" in response.data


# ---- in Chromium -------------------------------------------------------------------------------------

@pytest.fixture
def live_server(demo):
    """The app on 127.0.0.1, a free port, in a thread; stopped after the test."""
    yield from serve_in_thread(demo)


def test_live_page_in_chromium_shows_a_call_while_on_hold_and_drops_it_after_its_queue_result(
        live_server, browser, tmp_path):  # noqa: F811 (the fixture)
    twilio = Twilio(lambda path, params, headers: requests.post(live_server + path, data=params, headers=headers,
                                                                timeout=10))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server}/live?refresh=1&token={PAGES_TOKEN}")  # sets the pages' cookie
    assert page.locator("h1").inner_text() == "On hold now"
    assert "Nobody on hold in this queue." in page.locator("#live").inner_text()

    twilio.start(call_sid(12), DANA)  # no reload: the page fetches itself again
    row = page.locator(f'tr[data-call-sid="{call_sid(12)}"]')
    row.wait_for(state="visible", timeout=15_000)
    assert "Dana Reyes" in row.inner_text() and "CASE-1042" in row.inner_text()
    assert "outage-northeast" in row.inner_text()
    assert page.locator("#live-count").inner_text() == "1"
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

    row.get_by_role("link", name="Dana Reyes").click()
    page.wait_for_url(f"**/calls/{call_sid(12)}")
    assert "notice outage-northeast: not yet heard this call" in page.locator("table.reasons").inner_text()
    page.go_back()

    twilio.end(call_sid(12), DANA)
    page.locator(f'tr[data-call-sid="{call_sid(12)}"]').wait_for(state="detached", timeout=15_000)
    assert page.locator("#live-count").inner_text() == "0"
    assert "Nobody on hold in this queue." in page.locator("#live").inner_text()


def test_flows_page_says_whether_the_whisper_is_on(demo):
    page = page_of(demo, "/flows").text
    assert "Agent whisper</th>" in page and "<td>on</td>" in page

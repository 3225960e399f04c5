"""The pages, through Flask's test client: every route, bad ids and filters, hostile text, access."""
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from app.storage.connect import connect
from app.core.flows import read_flow_file
from app.storage.catalog import save_catalog
from app.core.policy import Caller, CallSoFar, Decision, Issue, Play, QueueData, decide
from app.core.times import format_utc
from app.storage import audits as store
from app.core.audit import AuditResult, Context, Finding, Issue as AuditIssue, Message, Span, Word

DEMO_FLOW = Path(__file__).resolve().parents[1] / "app" / "demo_data" / "flows.toml"
HOSTILE = '<script>alert("owned")</script>'
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def db(db_path):
    database = connect(db_path)
    yield database
    database.conn.close()


def write_wav(path: Path, duration_s: float = 3.0, rate_hz: int = 8000) -> Path:
    """A real (quiet tone) WAV file, so the audio route serves actual audio bytes."""
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    soundfile.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate_hz)
    return path


def audit_result(recording: str, promo_text: str = "Upgrade to the brand new Galaxy S7 today.",
                 findings: list[Finding] | None = None) -> AuditResult:
    promo = Message(id="m1", text=promo_text, category="promo", play_times_s=[10.0, 60.0, 110.0],
                    play_ends_s=[18.0, 68.0, 118.0], products=["Galaxy S7"], cue='sells: "upgrade"')
    notice = Message(id="m2", text="We are aware of an outage in the Northeast.", category="notice",
                     play_times_s=[0.0], play_ends_s=[6.0])
    if findings is None:
        findings = [Finding("repeated_promo", "high", "m1", 3, "m1 played 3 times in 2:00",
                            [10.0, 60.0, 110.0]),
                    Finding("promo_during_open_issue", "high", "m1", 3,
                            "promo m1 played while CASE-1042 (high) was open", [10.0, 60.0, 110.0]),
                    Finding("long_silence", "medium", None, 1, "40 s of silence from 1:20", [80.0])]
    return AuditResult(
        recording=recording, duration_s=130.0,
        segments=[Span(0, 6, "speech"), Span(6, 10, "music"), Span(10, 18, "speech"),
                  Span(18, 60, "music"), Span(60, 68, "speech"), Span(68, 80, "music"),
                  Span(80, 110, "silence"), Span(110, 118, "speech"), Span(118, 130, "music")],
        messages=[notice, promo], findings=findings,
        summary={"speech_s": 30.0, "music_s": 70.0, "silence_s": 30.0, "promo_s": 24.0,
                 "promo_share": 24 / 130, "findings": len(findings)},
        context=Context(open_issues=[AuditIssue("CASE-1042", "high", "Galaxy S7 reboots")],
                        owned_products=["Galaxy S7"], queue="support"))


def save_audit(db, result: AuditResult, audited_at: datetime | None = None, call_sid: str | None = None) -> int:
    return store.save(db, result, call_sid=call_sid,
                      now=audited_at or datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))


# ---- access -------------------------------------------------------------------------------------

@pytest.fixture
def closed_app(db_path, monkeypatch):
    """The app as `gunicorn 'app:create_app()'` makes it with no HOLDGUARD_PAGES_TOKEN anywhere."""
    from app import create_app

    monkeypatch.delenv("HOLDGUARD_PAGES_TOKEN", raising=False)
    return create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path)})


def test_without_a_token_the_pages_are_closed_and_say_how_to_open_them(db_path, monkeypatch, caplog):
    from app import create_app

    monkeypatch.delenv("HOLDGUARD_PAGES_TOKEN", raising=False)
    with caplog.at_level("WARNING"):
        client = create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path)}).test_client()
    # said once at start-up (gunicorn's log) ...
    assert any("pages closed" in r.getMessage() and "HOLDGUARD_PAGES_TOKEN" in r.getMessage()
               for r in caplog.records)
    # ... and to anyone who opens a page, localhost included: a proxy that adds no forwarding
    # header (nginx's plain proxy_pass) would make every request look local (issue #13)
    for environ in ({}, REMOTE):
        response = client.get("/audits", environ_base=environ)
        assert response.status_code == 403
        assert "HOLDGUARD_PAGES_TOKEN is not set" in response.text
        assert "HOLDGUARD_PAGES_TOKEN=local" in response.text and 'name="token"' not in response.text
    assert client.get("/static/pages.css").status_code == 200


def test_local_opens_the_pages_to_localhost_without_a_token(client):
    # the conftest app asks for it: HOLDGUARD_PAGES_TOKEN=local
    response = client.get("/audits")
    assert response.status_code == 200
    assert "<h1>Audits</h1>" in response.text


def test_local_refuses_other_addresses(client):
    response = client.get("/audits", environ_base=REMOTE)
    assert response.status_code == 403
    assert "HOLDGUARD_PAGES_TOKEN" in response.text


@pytest.mark.parametrize("header", [{"X-Forwarded-For": "198.51.100.7"}, {"Forwarded": "for=198.51.100.7"},
                                    {"X-Real-IP": "198.51.100.7"}])
def test_requests_relayed_by_a_local_proxy_or_tunnel_are_not_local(client, header):
    # ngrok or nginx on this machine connect from 127.0.0.1 on behalf of anyone on the internet
    response = client.get("/audits", headers=header)
    assert response.status_code == 403


def test_webhook_and_static_routes_are_not_behind_the_pages_check(client, db):
    from tests.conftest import sign

    assert client.get("/static/pages.css", environ_base=REMOTE).status_code == 200
    save_catalog(db, read_flow_file(DEMO_FLOW))
    params = {"CallSid": "CA" + "0" * 32, "From": "+15555550102", "To": "+15555550000"}
    voice = client.post("/twilio/voice", data=params, environ_base=REMOTE,
                        headers={"X-Twilio-Signature": sign("/twilio/voice", params),
                                 "X-Forwarded-For": "54.172.60.1"})
    assert voice.status_code == 200 and b"<Enqueue" in voice.data


@pytest.fixture
def token_client(app):
    app.config["HOLDGUARD_PAGES_TOKEN"] = "s3cret-pages"
    return app.test_client()


def test_with_a_token_every_address_needs_it(token_client):
    for environ in ({}, REMOTE):
        response = token_client.get("/audits", environ_base=environ)
        assert response.status_code == 401
        assert 'name="token"' in response.text and "<label for=\"token\">" in response.text
    assert token_client.get("/audits?token=wrong", environ_base=REMOTE).status_code == 401
    assert "not right" in token_client.get("/audits?token=wrong").text


def test_token_in_the_query_sets_a_cookie_and_leaves_the_url(token_client):
    response = token_client.get("/audits?token=s3cret-pages&rule=long_silence", environ_base=REMOTE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/audits?rule=long_silence"
    cookie = response.headers["Set-Cookie"]
    assert "holdguard_pages_token=s3cret-pages" in cookie and "HttpOnly" in cookie
    # the test client keeps the cookie: the next request needs nothing else
    assert token_client.get("/audits", environ_base=REMOTE).status_code == 200


def test_bearer_token_opens_the_pages(token_client):
    ok = token_client.get("/campaigns", environ_base=REMOTE, headers={"Authorization": "Bearer s3cret-pages"})
    assert ok.status_code == 200
    wrong = token_client.get("/campaigns", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_token_from_the_environment(closed_app, monkeypatch):
    client = closed_app.test_client()
    monkeypatch.setenv("HOLDGUARD_PAGES_TOKEN", "from-env")
    assert client.get("/audits").status_code == 401
    assert client.get("/audits", headers={"Authorization": "Bearer from-env"}).status_code == 200


# ---- home ---------------------------------------------------------------------------------------

def test_home_links_every_page_with_landmarks(client):
    page = client.get("/").text
    for path in ("/audits", "/flows", "/suppression", "/campaigns"):
        assert f'href="{path}"' in page
    assert '<nav aria-label="Pages">' in page and '<main id="main"' in page
    assert 'href="#main"' in page  # skip link for keyboard users
    assert '<html lang="en">' in page


# ---- /audits ------------------------------------------------------------------------------------

def test_audits_lists_recent_audits_with_findings_by_severity(client, db, tmp_path):
    older = save_audit(db, audit_result(str(tmp_path / "older.wav"), findings=[]),
                       audited_at=datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    newer = save_audit(db, audit_result(str(tmp_path / "newer.wav")), call_sid="CA123")
    page = client.get("/audits").text
    assert "2 audits" in page
    assert page.index("newer.wav") < page.index("older.wav")  # newest first
    assert f'href="/audits/{newer}"' in page and f'href="/audits/{older}"' in page
    row = page[page.index("newer.wav"):page.index("older.wav")]
    assert "2026-11-20" in row and "2:10" in row and "18.5 %" in row and "CA123" in row
    assert re.search(r"2 high</span>", row) and re.search(r"1 medium</span>", row)


def test_audits_filter_by_rule_and_dates(client, db, tmp_path):
    save_audit(db, audit_result(str(tmp_path / "clean.wav"), findings=[]),
               audited_at=datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    save_audit(db, audit_result(str(tmp_path / "bad.wav")),
               audited_at=datetime(2026, 11, 20, 23, 30, tzinfo=timezone.utc))
    by_rule = client.get("/audits?rule=repeated_promo").text
    assert "bad.wav" in by_rule and "clean.wav" not in by_rule
    assert '<option value="repeated_promo" selected>' in by_rule
    until_first = client.get("/audits?to=2026-11-01").text
    assert "clean.wav" in until_first and "bad.wav" not in until_first
    # the `to` day is inclusive, up to its last second
    on_the_day = client.get("/audits?from=2026-11-20&to=2026-11-20").text
    assert "bad.wav" in on_the_day and "clean.wav" not in on_the_day
    assert "No audits match" in client.get("/audits?from=2026-12-01").text


@pytest.mark.parametrize("query, message", [
    ("rule=loud_music", "rule: &#39;loud_music&#39; is not an audit rule"),
    ("from=2026-13-01", "from: &#39;2026-13-01&#39; is not a date; use YYYY-MM-DD"),
    ("to=yesterday", "to: &#39;yesterday&#39; is not a date"),
    ("from=2026-11-20&to=2026-11-01", "from (2026-11-20) is after to (2026-11-01)"),
    ("q=" + "x" * 201, "q: a search of 201 characters is too long"),
])
def test_bad_audit_filters_are_400_with_a_message(client, query, message):
    response = client.get(f"/audits?{query}")
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text


def test_bad_filter_values_are_escaped_in_the_message(client):
    response = client.get("/audits", query_string={"rule": HOSTILE})
    assert response.status_code == 400
    assert HOSTILE not in response.text and "&lt;script&gt;" in response.text


def test_full_text_search_over_transcripts(client, db, tmp_path):
    galaxy = save_audit(db, audit_result(str(tmp_path / "galaxy.wav")))
    save_audit(db, audit_result(str(tmp_path / "fiber.wav"),
                                promo_text="Switch to Fiber One Gig home internet today."))
    page = client.get("/audits?q=galaxy+upgrade").text
    assert "1 audit<" in page
    assert "Transcript matches for “galaxy upgrade”" in page
    assert f'href="/audits/{galaxy}#message-m1"' in page and "fiber.wav" not in page
    # word stems: "upgrades" finds "Upgrade"
    assert "galaxy.wav" in client.get("/audits?q=upgrades").text
    assert "No transcript contains all of those words" in client.get("/audits?q=mortgage").text


@pytest.mark.parametrize("query", ['"unbalanced', "galaxy AND (", "NEAR(", "*", "a:b", "-x"])
def test_search_syntax_in_the_query_is_taken_literally(client, db, tmp_path, query):
    save_audit(db, audit_result(str(tmp_path / "galaxy.wav")))
    assert client.get("/audits", query_string={"q": query}).status_code == 200


def test_search_combines_with_the_other_filters(client, db, tmp_path):
    save_audit(db, audit_result(str(tmp_path / "galaxy-clean.wav"), findings=[]))
    save_audit(db, audit_result(str(tmp_path / "galaxy-bad.wav")))
    page = client.get("/audits?q=galaxy&rule=long_silence").text
    assert "galaxy-bad.wav" in page and "galaxy-clean.wav" not in page


# ---- /audits/<id> -------------------------------------------------------------------------------

def test_audit_page_shows_timeline_findings_messages_and_transcript(client, db, tmp_path):
    recording = write_wav(tmp_path / "hold.wav")
    audit_id = save_audit(db, audit_result(str(recording)), call_sid="CA42")
    page = client.get(f"/audits/{audit_id}").text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in page
    assert page.count('class="finding finding-high"') == 6  # 2 high findings x 3 moments
    assert "promo m1 played while CASE-1042 (high) was open" in page
    assert "<code>repeated_promo</code>" in page and "× 3" in page
    assert f'<audio id="player" controls preload="metadata" src="/audits/{audit_id}/audio">' in page
    for at_s in ("10.00", "60.00", "110.00"):
        assert f'data-seek-s="{at_s}"' in page
    assert 'aria-label="Play the recording from 1:00: m1"' in page
    assert 'id="message-m1"' in page and "3 plays, 0:24 in all" in page
    assert "Why promo: sells: &#34;upgrade&#34;" in page or "Why promo: sells: &quot;upgrade&quot;" in page
    transcript = page[page.index('<ol class="transcript">'):]
    assert transcript.index("outage") < transcript.index("Galaxy S7")  # time order: notice at 0:00 first
    assert "CASE-1042 (high): Galaxy S7 reboots" in page and "CA42" in page


def test_audit_page_marks_an_unsure_transcript_and_what_a_misheard_name_was_matched_to(client, db, tmp_path):
    result = audit_result(str(tmp_path / "hold.wav"),
                          promo_text="Up, brainstorm a brand new Galaxy S fan with today <b>now</b>.")
    promo, notice = result.messages[1], result.messages[0]
    promo.avg_logprob, notice.avg_logprob = -0.81, -0.32
    audit_id = save_audit(db, result)
    assert [m.avg_logprob for m in store.load(db, audit_id).messages] == [-0.32, -0.81]  # stored
    page = client.get(f"/audits/{audit_id}").text
    message = page[page.index('id="message-m1"'):]
    message = message[:message.index("</article>")]
    assert '<mark class="heard-as" title="heard as Galaxy S7">Galaxy S fan</mark>' in message
    assert "Products: heard &#39;Galaxy S fan&#39; → Galaxy S7" in message or \
        "Products: heard &#x27;Galaxy S fan&#x27; → Galaxy S7" in message
    assert '<span class="low-confidence">' in message and "(low confidence: avg log-probability -0.81)" in message
    assert "&lt;b&gt;now&lt;/b&gt;" in message and "<b>" not in page
    # every play in the transcript carries the same marks; the notice, heard surely, none
    transcript = page[page.index('<ol class="transcript">'):]
    assert transcript.count('<mark class="heard-as"') == 3 and transcript.count('class="low-confidence"') == 3
    notice_section = page[page.index('id="message-m2"'):]
    assert "low-confidence" not in notice_section[:notice_section.index("</article>")]


def test_an_audit_stored_before_confidence_was_kept_shows_no_marks(client, db, tmp_path):
    result = audit_result(str(tmp_path / "hold.wav"))  # avg_logprob None: not known
    page = client.get(f"/audits/{save_audit(db, result)}").text
    assert "low-confidence" not in page and "heard-as" not in page
    assert "Products: Galaxy S7</p>" in page


def test_audit_page_says_a_product_read_from_the_text_is_as_heard(client, db, tmp_path):
    """Stored and shown again: the cue keeps which names no catalog or known name vouches for."""
    from audits.classify import READ_FROM_TEXT

    result = audit_result(str(tmp_path / "hold.wav"), promo_text="Meet the new Galaxy S1 today.")
    promo = result.messages[1]
    promo.products, promo.cue = ["Galaxy S1"], f'sells: "meet the new"; product {READ_FROM_TEXT}Galaxy S1'
    page = client.get(f"/audits/{save_audit(db, result)}").text
    assert "Products: Galaxy S1 (as heard: no catalog or known name)</p>" in page


def test_audit_page_marks_each_word_whisper_was_unsure_of_and_an_older_audit_none(client, db, tmp_path):
    result = audit_result(str(tmp_path / "hold.wav"), promo_text="Upgrade to the brand new Galaxy <S7> today.")
    promo = result.messages[1]
    promo.words = tuple(Word(word, 0.081 if word == "<S7>" else 0.97) for word in promo.text.split())
    audit_id = save_audit(db, result)
    page = client.get(f"/audits/{audit_id}").text
    message = page[page.index('id="message-m1"'):]
    message = message[:message.index("</article>")]
    assert '<mark class="unsure" title="heard with 8 % confidence">&lt;S7&gt;</mark>' in message
    assert "Whisper was less than 50 % sure of the word (hover over it for how sure)" in page
    transcript = page[page.index('<ol class="transcript">'):]
    assert transcript.count('<mark class="unsure"') == 3  # every play of the promo

    db.execute("UPDATE audit_messages SET words = NULL")  # as every audit stored before migration 12
    page = client.get(f"/audits/{audit_id}").text
    assert 'class="unsure"' not in page and "Whisper was less than" not in page


def test_hostile_transcript_and_path_are_escaped(client, db, tmp_path):
    recording = tmp_path / "hold.wav"
    result = audit_result(str(recording), promo_text=f"Buy now {HOSTILE} & save")
    result.findings[0].evidence = f"evidence {HOSTILE}"
    result.context.owned_products = [HOSTILE]
    audit_id = save_audit(db, result)
    for page in (client.get(f"/audits/{audit_id}").text, client.get("/audits?q=buy").text):
        assert "<script>" not in page
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page or \
               "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in page


def test_unknown_or_malformed_audit_ids_are_404(client, db, tmp_path):
    save_audit(db, audit_result(str(tmp_path / "hold.wav")))
    for path in ("/audits/999", "/audits/abc", "/audits/-1", "/audits/999/audio"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert "There is no audit 999." in client.get("/audits/999").text


def test_audit_ids_beyond_sqlites_integers_are_404(client, db, tmp_path):
    save_audit(db, audit_result(str(tmp_path / "hold.wav")))
    for path in ("/audits/99999999999999999999999", "/audits/99999999999999999999999/audio",
                 f"/audits/{2**63}", f"/audits/{2**63}/audio"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert "There is no audit 99999999999999999999999." in client.get("/audits/99999999999999999999999").text


def test_audio_is_served_with_range_support(client, db, tmp_path):
    recording = write_wav(tmp_path / "hold.wav")
    audit_id = save_audit(db, audit_result(str(recording)))
    whole = client.get(f"/audits/{audit_id}/audio")
    assert whole.status_code == 200 and whole.data == recording.read_bytes()
    assert whole.mimetype.startswith("audio/")
    part = client.get(f"/audits/{audit_id}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.data == recording.read_bytes()[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{recording.stat().st_size}"


def test_audio_route_serves_only_stored_audio_recordings(client, db, tmp_path):
    missing = save_audit(db, audit_result(str(tmp_path / "gone.wav")))
    assert client.get(f"/audits/{missing}/audio").status_code == 404
    page = client.get(f"/audits/{missing}").text
    assert "no longer on disk" in page and "<audio" not in page
    secret = tmp_path / "secret.txt"
    secret.write_text("not audio")
    not_audio = save_audit(db, audit_result(str(secret)))
    assert client.get(f"/audits/{not_audio}/audio").status_code == 404
    # the path never comes from the request
    assert client.get(f"/audits/{missing}/audio?path={secret}").status_code == 404


# ---- /flows -------------------------------------------------------------------------------------

def test_flows_lists_queues_and_segments(client, db):
    save_catalog(db, read_flow_file(DEMO_FLOW))
    page = client.get("/flows").text
    assert "Queues (1)" in page and "<code>support</code>" in page
    assert "at most 1 per call, 10.0 % of the hold" in page
    assert "ClockworkWaltz.mp3" in page
    assert "Segments (5)" in page
    for segment_id in ("outage-northeast", "galaxy-upgrade", "fiber-offer", "thanks-patience",
                       "tip-online-billing"):
        assert f"<code>{segment_id}</code>" in page
    assert "2026-01-01 00:00 UTC – 2030-01-01 00:00 UTC" in page
    assert "every queue" in page  # fiber-offer names no queue


def test_flows_without_a_catalog_says_how_to_load_one(client):
    assert "holdguard flows load FILE" in client.get("/flows").text


# ---- /campaigns ---------------------------------------------------------------------------------

def log_play(db, at: datetime, call_sid: str, caller: str, segment_id: str, kind: str, why,
             at_s: float = 0.0):
    """A play log row; `why` is a policy Decision (its reason, cause and skipped promos are stored) or a reason."""
    decision = why if isinstance(why, Decision) else Decision(None, why)
    play_id = db["plays"].insert({"call_sid": call_sid, "caller": caller, "customer_id": None, "queue": "support",
                                  "segment_id": segment_id, "kind": kind, "at": format_utc(at), "at_s": at_s,
                                  "duration_s": 9.0, "reason": decision.reason, "cause": decision.cause}).last_pk
    db["play_skips"].insert_all({"play_id": play_id, "segment_id": skip.promo_id, "cause": skip.cause}
                                for skip in decision.skipped)


def policy_reason(flow, caller: Caller, now: datetime) -> Decision:
    """The real policy's decision for the answer after the outage notice and one music chunk."""
    heard = (Play("outage-northeast", "notice", now - timedelta(seconds=100), 0.0, 11.0),
             Play("music-1", "music", now - timedelta(seconds=89), 11.0, 45.0))
    return decide(caller, CallSoFar(plays=heard), (), flow.queues["support"], flow.segments,
                  QueueData(queue_time_s=100.0), now)


def test_campaigns_counts_plays_and_skips_from_the_play_log(client, db):
    flow = read_flow_file(DEMO_FLOW)
    save_catalog(db, flow)
    now = datetime.now(timezone.utc)
    owner = Caller("+15555550101", "C-1002", products=("galaxy s7", "Fiber 1G"))
    sick = Caller("+15555550100", "C-1001", open_issues=(Issue("CASE-1042", "high"),))
    fresh = Caller("+15555550102", "C-1003")
    owner_reason = policy_reason(flow, owner, now)  # owns both products: both promos skipped
    assert [tuple(skip) for skip in owner_reason.skipped] == [("galaxy-upgrade", "owned_product"),
                                                              ("fiber-offer", "owned_product")]
    sick_reason = policy_reason(flow, sick, now)
    assert sick_reason.cause == "open_issue" and "promo skipped: open issue CASE-1042" in sick_reason.reason
    fresh_reason = policy_reason(flow, fresh, now)

    log_play(db, now - timedelta(hours=1), "CA1", fresh.phone_e164, "galaxy-upgrade", "promo", fresh_reason, 400)
    log_play(db, now - timedelta(days=2), "CA2", "+15555550104", "galaxy-upgrade", "promo", fresh_reason, 300)
    log_play(db, now - timedelta(days=30), "CA0", fresh.phone_e164, "galaxy-upgrade", "promo", fresh_reason)
    log_play(db, now - timedelta(minutes=5), "CA3", owner.phone_e164, "tip-online-billing", "tip", owner_reason)
    galaxy_owner_reason = policy_reason(flow, Caller("+15555550105", "C-9", products=("Galaxy S7",)), now)
    assert galaxy_owner_reason.segment.id == "fiber-offer"
    assert [tuple(skip) for skip in galaxy_owner_reason.skipped] == [("galaxy-upgrade", "owned_product")]
    log_play(db, now - timedelta(minutes=4), "CA5", "+15555550105", "fiber-offer", "promo", galaxy_owner_reason)
    for minutes in (10, 9):  # two answers of one call held back by an open issue
        log_play(db, now - timedelta(minutes=minutes), "CA4", sick.phone_e164, "music-1", "music", sick_reason)

    page = client.get("/campaigns").text
    promos = page[page.index('id="promos-heading"'):page.index('id="blocks-heading"')]
    galaxy = promos[promos.index("<code>galaxy-upgrade</code>"):promos.index("<code>fiber-offer</code>")]
    fiber = promos[promos.index("<code>fiber-offer</code>"):]
    numbers = lambda row: re.findall(r'<td class="num">(\d+)<br><span class="hint">([^<]*)</span>', row)
    # played twice (the 30-day-old play is out); passed over in CA3 (both owned) and CA5 (fiber played instead)
    assert numbers(galaxy) == [("2", "2 callers"), ("2", "in 2 calls")]
    assert numbers(fiber) == [("1", "1 caller"), ("1", "in 1 call")]
    assert "Galaxy S7" in galaxy and "live" in galaxy
    blocks = page[page.index('id="blocks-heading"'):page.index('id="recent-heading"')]
    assert re.search(r"<th scope=\"row\">support</th><td>open issue</td><td class=\"num\">2</td>"
                     r"<td class=\"num\">1</td>", blocks)
    recent = page[page.index('id="recent-heading"'):]
    assert recent.index("fiber-offer") < recent.index("galaxy-upgrade")  # newest first


def test_campaigns_shows_what_one_caller_heard(client, db):
    save_catalog(db, read_flow_file(DEMO_FLOW))
    now = datetime.now(timezone.utc)
    log_play(db, now - timedelta(minutes=3), "CA1", "+15555550102", "galaxy-upgrade", "promo", "promo galaxy-upgrade: 1 of at most 1", 125)
    log_play(db, now - timedelta(minutes=2), "CA2", "+15555550109", "fiber-offer", "promo", "promo fiber-offer: 1 of at most 1")
    page = client.get("/campaigns", query_string={"caller": "(555) 555-0102"}).text
    recent = page[page.index('id="recent-heading"'):]
    assert "+15555550102" in recent and "galaxy-upgrade" in recent and "2:05" in recent
    assert "fiber-offer" not in recent
    assert 'value="(555) 555-0102"' in recent


def test_campaigns_rejects_a_bad_caller_number(client):
    response = client.get("/campaigns?caller=not-a-phone")
    assert response.status_code == 400
    assert "caller: " in response.text and "not a valid phone number" in response.text


def test_campaigns_escapes_catalog_text(client, db):
    save_catalog(db, read_flow_file(DEMO_FLOW))
    db.execute("update segments set say = ? where id = 'galaxy-upgrade'", [HOSTILE])
    db.conn.commit()
    page = client.get("/campaigns").text
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_audit_page_shows_what_the_webhook_played_on_that_call(client, db, tmp_path):
    now = datetime.now(timezone.utc)
    log_play(db, now, "CA42", "+15555550100", "music-1", "music", "music: the hold has just begun")
    log_play(db, now, "CA42", "+15555550100", "galaxy-upgrade", "promo", f"promo galaxy-upgrade: {HOSTILE}", 45)
    audit_id = save_audit(db, audit_result(str(tmp_path / "hold.wav")), call_sid="CA42")
    page = client.get(f"/audits/{audit_id}").text
    section = page[page.index('id="plays-heading"'):]
    assert "What holdguard chose for call CA42" in section
    assert section.index("music: the hold has just begun") < section.index("<code>galaxy-upgrade</code>")
    assert "<script>" not in section and "&lt;script&gt;" in section
    other = save_audit(db, audit_result(str(tmp_path / "other.wav")), call_sid="CA-unknown")
    assert "The play log has no answers for this call" in client.get(f"/audits/{other}").text


# ---- /flows: simulate a caller ------------------------------------------------------------------

@pytest.fixture
def demo_db(db):
    from app.storage.crm import import_customers

    save_catalog(db, read_flow_file(DEMO_FLOW))
    import_customers(db, DEMO_FLOW.parent / "customers.json")
    return db


def simulate(client, **fields):
    form = {"caller": "phone", "phone": "", "minutes": "45", "queue": "support", "open_issue": "no",
            "severity": "high", "products": ""} | fields
    return client.post("/flows", data=form)


def reasons_of(page: str) -> list[tuple[str, str, str]]:
    table = page[page.index('<table class="reasons">'):]
    return re.findall(r'<th scope="row"><code>([^<]+)</code></th><td>([^<]+)</td>\s*<td class="num">[^<]+</td>'
                      r'<td>([^<]*)</td>', table)


def test_simulating_a_known_caller_shows_the_timeline_and_each_reason(client, demo_db):
    page = simulate(client, phone="(555) 555-0102").text  # Nia: no issue, owns nothing
    assert "(customer C-1003), queue support" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in page
    heard = reasons_of(page)
    assert heard[0][:2] == ("outage-northeast", "notice") and "not yet heard this call" in heard[0][2]
    promo = [row for row in heard if row[1] == "promo"]
    assert promo and promo[0][2].startswith(f"promo {promo[0][0]}:")
    assert "1 promo" in page
    # logged like a real call: the next simulation is her next call, so that promo is not replayed
    again = reasons_of(simulate(client, phone="+15555550102").text)
    assert not [row for row in again if row[0] == promo[0][0]]
    assert any(f"promo {promo[0][0]} skipped: heard" in row[2] for row in again)


def test_simulating_a_caller_with_an_open_issue_explains_the_missing_promos(client, demo_db):
    heard = reasons_of(simulate(client, phone="+15555550100", minutes="20").text)  # Dana: CASE-1042 (high)
    assert not [row for row in heard if row[1] == "promo"]
    assert any("promo skipped: open issue CASE-1042 (high)" in row[2] for row in heard)


def test_simulating_an_adhoc_caller_logs_nothing(client, demo_db):
    before = demo_db["plays"].count
    page = simulate(client, caller="adhoc", open_issue="no", products="Galaxy S7", minutes="30").text
    assert "(ad-hoc), queue support" in page
    heard = reasons_of(page)
    assert not [row for row in heard if row[0] == "galaxy-upgrade"]  # owns the product
    assert any("promo galaxy-upgrade skipped: caller owns Galaxy S7" in row[2] for row in heard)
    with_issue = reasons_of(simulate(client, caller="adhoc", open_issue="yes", severity="low").text)
    assert any("promo skipped: open issue ADHOC-ISSUE (low)" in row[2] for row in with_issue)
    assert demo_db["plays"].count == before
    assert 'id="caller-adhoc" name="caller" value="adhoc" checked' in page  # the form keeps its choices


@pytest.mark.parametrize("fields, message", [
    ({"minutes": "lots"}, "Minutes: &#39;lots&#39; is not a number."),
    ({"minutes": "0"}, "Minutes: must be above 0 and at most 240, got 0."),
    ({"minutes": "500"}, "Minutes: must be above 0 and at most 240, got 500."),
    ({"queue": "sales"}, "Queue: &#39;sales&#39; is not a loaded queue (support)."),
    ({"phone": ""}, "Phone: give the caller&#39;s phone number"),
    ({"phone": "not a phone"}, "&#39;not a phone&#39; is not a valid phone number"),
    ({"caller": "robot"}, "Caller: choose a phone number or an ad-hoc caller."),
    ({"caller": "adhoc", "open_issue": "yes", "severity": "apocalyptic"}, "Severity: &#39;apocalyptic&#39; is not one of"),
])
def test_bad_simulation_forms_are_400_with_a_message(client, demo_db, fields, message):
    response = simulate(client, **({"phone": "+15555550102"} | fields))
    assert response.status_code == 400
    assert message in response.text and 'role="alert"' in response.text
    assert 'id="simulate-heading"' in response.text  # the form is shown again to fix it


def test_cross_site_form_posts_are_refused(client, demo_db):
    response = client.post("/flows", data={"caller": "phone", "phone": "+15555550102", "minutes": "5",
                                           "queue": "support"}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert demo_db["plays"].count == 0
    same_site = client.post("/flows", data={"caller": "phone", "phone": "+15555550102", "minutes": "5",
                                            "queue": "support"}, headers={"Origin": "http://localhost"})
    assert same_site.status_code == 200


# ---- /suppression -------------------------------------------------------------------------------

def test_suppression_page_says_who_and_why(client, demo_db):
    page = client.get("/suppression").text
    assert "2 customers suppressed (2 reasons)" in page
    dana = page[page.index("C-1001"):page.index("C-1004")]
    assert "Dana Reyes" in dana and "open issue: Galaxy S7 reboots during calls" in dana
    assert "CASE-1042" in dana and "severity-high" in dana
    assert "opted out of marketing" in page[page.index("C-1004"):]
    higher = client.get("/suppression?min_severity=critical").text
    assert "1 customer suppressed (1 reason)" in higher and "CASE-1042" not in higher


def test_suppression_csv_has_the_export_columns_and_rows(client, demo_db):
    from app.core.suppression import HEADER
    from app.storage.crm import suppression_rows

    response = client.get("/suppression.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="suppression-')
    lines = response.data.decode("utf-8").split("\r\n")
    assert lines[0] == ",".join(HEADER)
    expected = suppression_rows(demo_db, "X", "low")
    assert [line.split(",")[:6] for line in lines[1:-1]] == [
        [str(row[key]) for key in HEADER[:6]] for row in expected]
    assert lines[-1] == ""


def test_suppression_rejects_a_bad_severity_and_escapes_crm_text(client, demo_db):
    response = client.get("/suppression.csv?min_severity=urgent")
    assert response.status_code == 400 and "min_severity: &#39;urgent&#39; is not a severity" in response.text
    demo_db.execute("update customers set name = ? where customer_id = 'C-1001'", [HOSTILE])
    demo_db.execute("update issues set summary = ? where id = 'CASE-1042'", [HOSTILE])
    demo_db.conn.commit()
    page = client.get("/suppression").text
    assert "<script>" not in page and page.count("&lt;script&gt;") == 2


def test_a_missing_database_is_a_503_page_not_a_500(app, client, db_path):
    app.config["HOLDGUARD_DB"] = str(db_path) + "-gone" if not str(db_path).startswith("postgresql") else \
        str(db_path).rsplit("/", 1)[0] + "/no_such_database"
    response = client.get("/audits")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "Database unavailable" in response.text

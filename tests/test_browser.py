"""End to end in a real headless Chromium: an audit page renders and its plays seek the audio player."""
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile
from werkzeug.serving import make_server

from app import create_app
from app.storage.connect import connect
from app.storage import audits as store
from app.core.audit import AuditResult, Context, Finding, Issue, Message, Span, Word

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RATE_HZ = 8000
HOLD_S = 40.0
PAGES_TOKEN = "browser-s3cret"


def hold_wav(path: Path) -> Path:
    """A real 40 s hold recording: tone 'music', two beeping 'messages' and a stretch of silence."""
    t = np.arange(int(HOLD_S * RATE_HZ)) / RATE_HZ
    samples = 0.2 * np.sin(2 * np.pi * 330 * t)
    for start_s, end_s in ((5, 10), (20, 25)):  # the promo plays: a different pitch
        span = (t >= start_s) & (t < end_s)
        samples[span] = 0.3 * np.sin(2 * np.pi * 880 * t[span])
    samples[(t >= 28) & (t < 36)] = 0.0
    soundfile.write(str(path), samples.astype(np.float32), RATE_HZ, subtype="PCM_16")
    return path


def hold_audit(recording: Path) -> AuditResult:
    promo = Message(id="m1", text="Upgrade to the brand new Galaxy S7 today.", category="promo",
                    play_times_s=[5.0, 20.0], play_ends_s=[10.0, 25.0], products=["Galaxy S7"])
    return AuditResult(
        recording=str(recording), duration_s=HOLD_S,
        segments=[Span(0, 5, "music"), Span(5, 10, "speech"), Span(10, 20, "music"),
                  Span(20, 25, "speech"), Span(25, 28, "music"), Span(28, 36, "silence"),
                  Span(36, 40, "music")],
        messages=[promo],
        findings=[Finding("promo_during_open_issue", "high", "m1", 2,
                          "promo m1 played 2 times while CASE-1042 (high) was open", [5.0, 20.0])],
        summary={"speech_s": 10.0, "music_s": 22.0, "silence_s": 8.0, "promo_s": 10.0,
                 "promo_share": 0.25, "findings": 1},
        context=Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots")]))


def serve_in_thread(app):
    """The app on 127.0.0.1, a free port, in a thread: yields its URL, then stops it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def live_server(db_path, tmp_path):
    """The app with pages open to this machine without a token (HOLDGUARD_PAGES_TOKEN=local)."""
    yield from serve_in_thread(create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path),
                                           "HOLDGUARD_PAGES_TOKEN": "local"}))


@pytest.fixture
def token_server(db_path, tmp_path):
    """The app with a pages token, as `holdguard serve` runs it."""
    yield from serve_in_thread(create_app({"TESTING": True, "HOLDGUARD_DB": str(db_path),
                                           "HOLDGUARD_PAGES_TOKEN": PAGES_TOKEN}))


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "needs Debian's chromium package (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_audit_page(live_server, browser, db_path, result: AuditResult):
    """The /audits/<id> page of `result`, stored as audited on 2026-11-20, in a new browser page."""
    db = connect(db_path)
    audit_id = store.save(db, result, now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
    db.conn.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server}/audits/{audit_id}")
    return page


def test_audit_page_in_chromium_seeks_the_player(live_server, browser, db_path, tmp_path):
    page = open_audit_page(live_server, browser, db_path, hold_audit(hold_wav(tmp_path / "hold.wav")))

    timeline = page.locator("svg.timeline")
    assert timeline.is_visible()
    assert timeline.bounding_box()["width"] > 600
    assert page.locator("svg.timeline rect.play").count() == 2
    assert page.locator("svg.timeline polygon.finding").count() == 2
    findings = page.locator("ul.findings")
    assert "promo_during_open_issue" in findings.inner_text()
    assert "while CASE-1042 (high) was open" in findings.inner_text()

    page.wait_for_function("document.getElementById('player').readyState >= 1")  # loadedmetadata
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(HOLD_S, abs=0.1)
    assert page.evaluate("document.getElementById('player').currentTime") == 0

    # a play button in the message list, reached and pressed with the keyboard
    second_play = page.locator("#message-m1 button.seek", has_text="0:20")
    second_play.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('player').currentTime >= 19.9")

    # and a click on the first play of the promo in the timeline picture
    page.locator("svg.timeline rect.play").first.click()
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 5) < 1.5")
    page.evaluate("document.getElementById('player').pause()")

    screenshot = tmp_path / "audit-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_the_link_serve_prints_opens_the_pages_and_their_audio(token_server, browser, db_path, tmp_path):
    db = connect(db_path)
    audit_id = store.save(db, hold_audit(hold_wav(tmp_path / "hold.wav")),
                          now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
    db.conn.close()
    page = browser.new_page()
    assert page.goto(f"{token_server}/audits/{audit_id}").status == 401
    # the token once in the URL; then a cookie, which the audio player's requests carry too
    page.goto(f"{token_server}/audits/{audit_id}?token={PAGES_TOKEN}")
    assert page.url == f"{token_server}/audits/{audit_id}"
    assert page.locator("svg.timeline").is_visible()
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(HOLD_S, abs=0.1)


def test_audit_page_in_chromium_marks_what_whisper_was_unsure_of(live_server, browser, db_path, tmp_path):
    result = hold_audit(hold_wav(tmp_path / "hold.wav"))
    (promo,) = result.messages
    promo.text, promo.avg_logprob = "Up, brainstorm a brand new Galaxy S fan with today.", -0.8
    page = open_audit_page(live_server, browser, db_path, result)
    message = page.locator("#message-m1")
    heard = message.locator("mark.heard-as")
    assert heard.is_visible() and heard.inner_text() == "Galaxy S fan"
    assert heard.get_attribute("title") == "heard as Galaxy S7"
    # the shared stylesheet (the HTML report's) reached the page: the mark is highlighted, the unsure
    # transcript underlined with dots
    assert heard.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 243, 191)"
    unsure = message.locator(".low-confidence")
    assert unsure.evaluate("e => getComputedStyle(e).textDecorationStyle") == "dotted"
    assert "low confidence: avg log-probability -0.80" in message.inner_text()
    assert "heard 'Galaxy S fan' → Galaxy S7" in message.locator("p.products").inner_text()
    assert page.locator("ol.transcript mark.heard-as").count() == 2  # both plays


def test_audit_page_in_chromium_says_a_product_read_from_the_text_is_as_heard(live_server, browser, db_path, tmp_path):
    from audits.classify import READ_FROM_TEXT

    result = hold_audit(hold_wav(tmp_path / "hold.wav"))
    (promo,) = result.messages
    promo.text, promo.products = "Meet the new Galaxy S1 today.", ["Galaxy S1"]
    promo.cue = f'sells: "meet the new"; product {READ_FROM_TEXT}Galaxy S1'
    products = open_audit_page(live_server, browser, db_path, result).locator("#message-m1 p.products")
    assert products.is_visible() and products.inner_text() == "Products: Galaxy S1 (as heard: no catalog or known name)"


def test_audit_page_in_chromium_marks_each_word_whisper_was_unsure_of(live_server, browser, db_path, tmp_path):
    result = hold_audit(hold_wav(tmp_path / "hold.wav"))
    (promo,) = result.messages
    promo.words = tuple(Word(word, 0.234 if word == "brand" else 0.96) for word in promo.text.split())
    page = open_audit_page(live_server, browser, db_path, result)
    unsure = page.locator("#message-m1 mark.unsure")
    assert unsure.is_visible() and unsure.inner_text() == "brand"
    assert unsure.get_attribute("title") == "heard with 23 % confidence"
    # the shared stylesheet: boxed with dashes and in italics, not highlighted like a misheard name
    assert unsure.evaluate("e => getComputedStyle(e).outlineStyle") == "dashed"
    assert unsure.evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    assert unsure.evaluate("e => getComputedStyle(e).backgroundColor") == "rgba(0, 0, 0, 0)"
    assert page.locator("ol.transcript mark.unsure").count() == 2  # both plays
    assert "less than 50 % sure of the word" in page.locator("#messages-heading + p.hint").inner_text()

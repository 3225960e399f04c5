"""The message library (audits.library, app.storage.library) and the fleet view (/messages, `holdguard messages`).

The storage and page tests seed the library with made-up fingerprints (no Whisper); the audit tests
run real generated holds through the real faster-whisper engine (tiny.en), wrapped only to count the
clips it is given.
"""
import json
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

from app.cli import main
from app.core.audit import AuditResult, Context, Message, Span
from app.storage import audits as audit_store
from app.storage import library as library_store
from app.storage.connect import connect
from audits import fingerprint, pipeline
from audits import library
from audits.batch import Hear, audit_batch
from audits.data import Transcript
from audits.transcribe import shared_engine
from tests.audio_fixtures import DEMO_MESSAGES, make_hold
from tests.test_browser import browser, live_server  # noqa: F401  (fixtures)
from tests.test_fingerprint import CountingEngine, outline

ENGINE, MODEL = "faster-whisper", "tiny.en"
WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
DANA = {"open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots"}],
        "owned_products": ["Galaxy S7"]}
SHARED_OPENING = {  # the reassurance's first eight words, then another message of about its length
    "manager-callback": {"text": "Thank you for your patience. Your call is important to us and a manager "
                                 "will call you back.", "category": "reassurance"},
}


@pytest.fixture
def db(db_path):
    database = connect(db_path)
    yield database
    database.conn.close()


# ---- storage and the fleet view, on both databases, without Whisper --------------------------------

def made_up_entry(seed: int, text: str, engine: str = ENGINE) -> library.Entry:
    frames = np.random.default_rng(seed).standard_normal((300, fingerprint.N_MELS)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    return library.Entry(uuid.uuid4().hex, library.HeardBy(library.engine_version(engine), MODEL),
                         fingerprint.Fingerprint(frames, np.linspace(-30, -20, 300, dtype=np.float32)),
                         [Transcript(0.0, 0.0, text, -0.3, 0.02, 1.2)])


def audited(recording: str, plays_s: list[float], context: Context | None = None) -> AuditResult:
    promo = Message(id="m1", text="Upgrade to the brand new Galaxy S7 today.", category="promo",
                    play_times_s=plays_s, play_ends_s=[start + 8 for start in plays_s], products=["Galaxy S7"])
    return AuditResult(recording=recording, duration_s=120.0, segments=[Span(0, 120, "music")], messages=[promo],
                       findings=[], summary={}, context=context or Context())


def seed_fleet(db, tmp_path) -> tuple[library.Entry, list[int]]:
    """One promo in the library, heard in three recordings: Dana's call twice (she owns the phone and
    has an open case), and a recording with no call."""
    promo = made_up_entry(1, "Upgrade to the brand new Galaxy S7 today.")
    db.execute("INSERT INTO calls (call_sid, caller, queue, started_at, simulated) VALUES (?, ?, ?, ?, 0)",
               ["CA1", "+15555550100", "support", "2026-11-24T08:30:00Z"])
    dana = Context.from_dict(DANA)
    ids = []
    for name, plays_s, context, call_sid, news in [
            ("dana-1.wav", [5.0, 20.0, 40.0], dana, "CA1", library.News(entries=[promo])),
            ("dana-2.wav", [7.0], dana, "CA1", library.News()),
            ("other.wav", [9.0, 30.0], Context(), None, library.News())]:
        result = audited(str(tmp_path / name), plays_s, context)
        audit_id = audit_store.save(db, result, call_sid=call_sid, now=WHEN)
        news.plays = {promo.key: plays_s}
        library.record(db, audit_id, result, news)
        ids.append(audit_id)
    return promo, ids


def test_the_library_round_trips_and_counts_the_fleet(db, tmp_path):
    promo, ids = seed_fleet(db, tmp_path)
    loaded = library.load(db, engine=ENGINE, model=MODEL).entries
    assert [entry.key for entry in loaded] == [promo.key]
    assert np.array_equal(loaded[0].anchor.frames, promo.anchor.frames)  # float32, exactly
    assert loaded[0].hearings[0].text == promo.hearings[0].text
    assert library.load(db, engine="openai-whisper", model=MODEL).entries == []  # heard by another engine
    assert library.load(db, engine=ENGINE, model="base").entries == []

    (row,) = library_store.fleet_view(db, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert (row["text"], row["category"], row["products"]) == (promo.hearings[0].text, "promo", ["Galaxy S7"])
    assert (row["plays"], row["recordings"], row["callers"]) == (6, 3, 2)  # Dana once, the call-less recording
    assert (row["plays_open_issue"], row["callers_open_issue"], row["plays_owner"]) == (4, 1, 4)
    assert (row["first_heard"], row["last_heard"]) == ("2026-11-24T08:30:00Z", "2026-11-24T09:00:00Z")
    assert sorted(r["audit_id"] for r in row["recordings_list"]) == sorted(ids)
    assert library_store.fleet_view(db, "2026-11-25T00:00:00Z", "2026-12-01T00:00:00Z") == []

    # re-auditing a recording replaces its plays; the counts follow
    again = audited(str(tmp_path / "other.wav"), [9.0])
    audit_id = audit_store.save(db, again, now=WHEN)
    library.record(db, audit_id, again, library.News(plays={promo.key: [9.0]}))
    (row,) = library_store.fleet_view(db, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert (row["plays"], row["recordings"]) == (5, 3)
    stored = db.query("SELECT plays, recordings FROM library_messages")
    assert stored == [{"plays": 5, "recordings": 3}]


def test_a_batch_hears_a_message_new_to_it_in_its_first_recording_and_more_plays_in_later_ones():
    """The hearing rounds, without Whisper: two recordings play one message new to the library, once and
    twice. Only the first recording's play is heard first; that hearing unsure, only the later recording's
    second play is heard again (the first has no other), and each recording takes the hearings as they stood
    after its turn, as when they are audited one after the other."""
    promo = made_up_entry(3, "")
    speech = [Span(2.0, 5.0, "speech"), Span(10.0, 13.0, "speech")]
    surveys = [pipeline.Survey(20.0, speech[:n], [0] * n, [promo.anchor], [30.0] * n) for n in (1, 2)]
    known = library.Library(engine=ENGINE, model=MODEL)
    plans = [pipeline.plan(surveyed, known, None, []) for surveyed in surveys]
    assert len(known.entries) == 1  # the second recording matched the entry the first one made

    asked = pipeline.first_hearings(plans)
    assert [[play for play, *_ in mine] for mine in asked] == [[0], []]
    unsure = Transcript(0.0, 0.0, "Upgrade to the Galaxy today.", -0.8)
    pipeline.fill(asked[0], [unsure])
    again = pipeline.more_hearings(plans)
    assert [[play for play, *_ in mine] for mine in again] == [[], [1]]
    heard = Transcript(0.0, 0.0, "Upgrade to the Galaxy S7 today.", -0.4)
    pipeline.fill(again[1], [heard])

    first, second = (pipeline.plan_transcripts(planned) for planned in plans)
    assert [t.text for t in first] == [unsure.text]  # its turn came before the second hearing
    assert [t.text for t in second] == [unsure.text, heard.text]
    known.learn(plans[0])
    assert [len(entry.hearings) for entry in known.take_news().entries] == [1]
    known.learn(plans[1])
    assert [len(hearings) for hearings in known.take_news().hearings.values()] == [2]


def test_messages_page_and_command(db, tmp_path, client, runner):
    seed_fleet(db, tmp_path)
    page = client.get("/messages?days=3660")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Upgrade to the brand new Galaxy S7 today." in html and "/audits/" in html
    assert client.get("/messages?from=2026-11-25&to=2026-11-30").get_data(as_text=True).count("<blockquote>") == 0
    assert client.get("/messages?days=x").status_code == 400
    assert client.get("/messages", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403

    out = runner.invoke(main, ["messages", "--from", "2026-11-24", "--to", "2026-11-24", "--json"])
    assert out.exit_code == 0, out.output
    (message,) = json.loads(out.output)["messages"]
    assert (message["plays"], message["callers"], message["plays_open_issue"]) == (6, 2, 4)
    assert len(message["heard_in"]) == 3


def test_messages_page_in_chromium(live_server, browser, db, tmp_path):  # noqa: F811
    _, ids = seed_fleet(db, tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server}/messages?days=3660")
    row = page.locator("table.fleet-messages tbody tr")
    assert row.count() == 1
    assert "Upgrade to the brand new Galaxy S7 today." in row.inner_text()
    assert page.locator("nav a[aria-current=page]").inner_text() == "Messages"
    page.locator("ul.recordings a", has_text="dana-1.wav").click()
    page.wait_for_url(f"**/audits/{ids[0]}*")
    assert "promo" in page.locator("main").inner_text()


# ---- real audits: only new speech goes to Whisper ---------------------------------------------------

@pytest.fixture(scope="module")
def flow_holds(tmp_path_factory):
    """Two recordings of one flow (Dana's and another caller's) and a third whose reassurance shares its
    opening words with a different message and whose promo was re-recorded in another voice."""
    folder = tmp_path_factory.mktemp("fleet")
    first = make_hold(folder, ["music 3", "say galaxy-upgrade", "music 3", "say thanks-patience", "music 3",
                               "say galaxy-upgrade", "music 2", "say thanks-patience", "music 2"],
                      name="first", context=DANA, seed=31)
    second = make_hold(folder, ["music 2", "say thanks-patience", "music 3", "say galaxy-upgrade", "music 3",
                                "say tip-online-billing", "music 3", "say thanks-patience", "music 2"],
                       name="second", seed=32)
    shared = make_hold(folder, ["music 2", "say manager-callback", "music 3", "say thanks-patience", "music 3",
                                "say galaxy-upgrade voice=en-us+f3 speed=130 pitch=60", "music 2"],
                       name="shared", messages={**DEMO_MESSAGES, **SHARED_OPENING}, seed=33)
    return first, second, shared


@pytest.fixture(scope="module")
def cold(flow_holds):
    """Each recording audited alone, as before the library: results and engine calls."""
    engine = shared_engine(ENGINE, MODEL)
    audits = {}
    for hold, context in zip(flow_holds, [Context.from_dict(DANA), None, None]):
        counting = CountingEngine(engine)
        audits[hold.path.stem] = (pipeline.audit_file(hold.path, context or Context(), counting), counting.calls)
    return audits


@pytest.mark.slow
def test_a_second_audit_hears_only_speech_not_heard_before(db, flow_holds, cold):
    first, second, _ = flow_holds
    engine = shared_engine(ENGINE, MODEL)
    counting = CountingEngine(engine)
    [result], failed = audit_batch([first.path], db, engine=ENGINE, model=MODEL, transcriber=counting)
    assert failed == [] and counting.calls == cold["first"][1]  # a cold library: as before
    assert result.to_json() == cold["first"][0].to_json()
    entries = library.load(db, engine=ENGINE, model=MODEL).entries
    assert len(entries) == 2  # the promo and the reassurance

    counting = CountingEngine(engine)  # a new batch: the library read from the database
    again, other = audit_batch([first.path, second.path], db, engine=ENGINE, model=MODEL, transcriber=counting)[0]
    assert again.to_json() == cold["first"][0].to_json()  # not one engine run for it, the same report
    learned = [entry for entry in library.load(db, engine=ENGINE, model=MODEL).entries if entry.key not in
               {known.key for known in entries}]
    assert len(learned) == 1 and "online" in learned[0].hearings[0].text.lower()  # only the tip was new
    assert counting.calls == len(learned[0].hearings)
    assert outline(other) == outline(cold["second"][0])
    assert [(f.rule, f.severity, f.count) for f in other.findings] == \
        [(f.rule, f.severity, f.count) for f in cold["second"][0].findings]

    by_text = {row["text"]: row for row in library_store.fleet_view(db, "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")}
    promo = next(row for text, row in by_text.items() if "galaxy" in text.lower())
    assert (promo["plays"], promo["recordings"], promo["plays_open_issue"], promo["plays_owner"]) == (3, 2, 2, 2)


@pytest.mark.slow
def test_a_different_message_with_a_shared_opening_is_not_taken_for_a_library_entry(flow_holds, cold):
    first, _, shared = flow_holds
    known = library.Library(engine=ENGINE, model=MODEL)
    engine = shared_engine(ENGINE, MODEL)
    pipeline.audit_file(first.path, Context.from_dict(DANA), CountingEngine(engine), library=known)
    reassurance = next(entry for entry in known.entries if "patience" in entry.hearings[0].text.lower())
    known.take_news()

    counting = CountingEngine(engine)
    result = pipeline.audit_file(shared.path, Context(), counting, library=known)
    news = known.take_news()
    assert news.plays[reassurance.key] and len(news.plays[reassurance.key]) == 1  # the real one, matched
    # the manager message and the re-recorded promo are new entries, heard by the engine
    assert len(news.entries) == 2 and counting.calls >= 2
    manager = next(entry for entry in news.entries if "manager" in entry.hearings[0].text.lower())
    # as long as the entry and sounding alike over the whole (mean above the threshold): only the words
    # after the shared opening tell them apart, as they do within one recording
    match = fingerprint.compare(reassurance.anchor, manager.anchor)
    assert fingerprint.durations_match(reassurance.anchor.duration_s, manager.anchor.duration_s)
    assert match.similarity > 0.6 and not match.same
    assert outline(result) == outline(cold["shared"][0])
    assert [m.text for m in result.messages] == [m.text for m in cold["shared"][0].messages]


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_ray_workers_hear_only_what_the_library_does_not_know(db, flow_holds, cold, monkeypatch):
    pytest.importorskip("ray")
    from audits.ray_batch import RayRunner

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    first, second, _ = flow_holds
    audit_batch([first.path], db, engine=ENGINE, model=MODEL, transcriber=CountingEngine(shared_engine(ENGINE, MODEL)))
    before = {entry.key for entry in library.load(db, engine=ENGINE, model=MODEL).entries}
    clips = {}
    with RayRunner(jobs=2) as ray_runner:
        def runner(works, **options):
            for work in works:
                if isinstance(work, Hear):
                    clips[work.path.stem] = clips.get(work.path.stem, 0) + len(work.plays)
            yield from ray_runner(works, **options)

        (again, other), failed = audit_batch([first.path, second.path], db, engine=ENGINE, model=MODEL,
                                             runner=runner)
    assert failed == []
    learned = [entry for entry in library.load(db, engine=ENGINE, model=MODEL).entries if entry.key not in before]
    assert len(learned) == 1 and "online" in learned[0].hearings[0].text.lower()  # only the tip was new
    assert clips == {"second": len(learned[0].hearings)}  # the first matched the library here, not heard
    assert again.to_json() == cold["first"][0].to_json()
    assert outline(other) == outline(cold["second"][0])


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_two_worker_processes_finding_one_message_at_once_store_one_entry(db, flow_holds, cold):
    first, second, _ = flow_holds
    results, failed = audit_batch([first.path, second.path], db, engine=ENGINE, model=MODEL, jobs=2)
    assert failed == []
    texts = sorted(entry.hearings[0].text for entry in library.load(db, engine=ENGINE, model=MODEL).entries)
    assert len(texts) == 3, texts  # the promo, the reassurance (both heard once, in the first recording), the tip
    assert [outline(result) for result in results] == [outline(cold["first"][0]), outline(cold["second"][0])]
    plays = {row["text"]: row["plays"] for row in library_store.fleet_view(db, "2000-01-01T00:00:00Z",
                                                                           "2100-01-01T00:00:00Z")}
    assert sorted(plays.values()) == [1, 3, 4]  # tip 1; promo 2 + 1; reassurance 2 + 2


@pytest.mark.slow
def test_no_library_hears_afresh_and_leaves_the_library_alone(flow_holds, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main

    database = tmp_path / "cli.db"
    runner = CliRunner()
    first = flow_holds[0].path
    afresh = runner.invoke(main, ["audit", str(first), "--no-library", "--format", "json", "--db", str(database)])
    assert afresh.exit_code == 0, afresh.output
    assert connect(database)["library_messages"].count == 0
    learned = runner.invoke(main, ["audit", str(first), "--format", "json", "--db", str(database)])
    assert learned.exit_code == 0, learned.output
    assert connect(database)["library_messages"].count == 2  # the promo and the reassurance
    assert json.loads(afresh.output)["findings"] == json.loads(learned.output)["findings"]

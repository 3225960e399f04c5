"""`holdguard audit --ray`: the batch on a local Ray (2 CPUs, no dashboard), stored and reported as without Ray.

Real generated holds, the real faster-whisper engine in real Ray worker actors, a real SQLite database.
Each run starts its own local Ray and stops it; the fixture below stops any Ray still up, even after a failure.
"""
import json
import time
from pathlib import Path

import pytest

from app.storage import audits as store
from app.storage.connect import connect
from app.storage.tables import AUDIT_CHILD_TABLES
from tests.audio_fixtures import DEMO_MESSAGES, make_hold
from tests.test_batch import OWNER, audit, database_with_the_demo_flow, killing_the_first

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def no_ray_left_running():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def local_ray_only(monkeypatch):
    """A bare --ray joins $RAY_ADDRESS when set: these tests start their own local Ray."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four short holds (one with a caller context beside it) and a file that is not audio; no message is in
    two of them (`sharing` below has that)."""
    folder = tmp_path_factory.mktemp("ray-batch")
    holds = [make_hold(folder, ["music 3", "say galaxy-upgrade", "music 3", "say galaxy-upgrade", "music 2"],
                       name="promo", context=OWNER, seed=41),
             make_hold(folder, ["music 2", "say thanks-patience", "music 3"], name="thanks", seed=42),
             make_hold(folder, ["music 2", "say tip-online-billing", "silence 3", "music 2"], name="tip", seed=43),
             make_hold(folder, ["music 2", "say wait-announcement", "music 2", "say outage-northeast"],
                       name="wait", seed=44)]
    not_audio = folder / "notes.wav"
    not_audio.write_text("minutes of the hold-music meeting, not audio\n")
    return [holds[0].path, not_audio, *(hold.path for hold in holds[1:])]


def stored_rows(db_path: Path) -> dict[str, list]:
    """Every audit row, each child row under its recording's name, and the message library; ids and times
    left out (they differ with the order results arrive in)."""
    db = connect(db_path)
    recording = {row["id"]: row["recording"] for row in db.query("select id, recording from audits")}
    rows = {"audits": sorted(json.dumps({k: v for k, v in row.items() if k not in ("id", "audited_at")},
                                        sort_keys=True) for row in db.query("select * from audits"))}
    for table in AUDIT_CHILD_TABLES:
        rows[table] = sorted(json.dumps({**{k: v for k, v in row.items() if k not in ("id", "audit_id")},
                                         "recording": recording[row["audit_id"]]}, sort_keys=True)
                             for row in db.query(f'select * from "{table}"'))
    # the message library: what was heard and how often (which play's fingerprint an entry keeps, and when,
    # depend on the order results arrive in)
    rows["library_messages"] = sorted(json.dumps(row, sort_keys=True) for row in db.query(
        "select text, category, products, plays, recordings from library_messages"))
    rows["library_plays"] = sorted(json.dumps({**{k: v for k, v in row.items() if k != "audit_id"},
                                               "recording": recording[row["audit_id"]]}, sort_keys=True)
                                   for row in db.query("select audit_id, message_id, plays, caller, open_issue, "
                                                       "owns_product from library_plays"))
    db.conn.close()
    return rows


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def test_ray_gives_the_same_reports_and_rows_as_one_process(recordings, tmp_path):
    without_ray = database_with_the_demo_flow(tmp_path / "local.db")
    on_ray = database_with_the_demo_flow(tmp_path / "ray.db")
    local = audit(without_ray, recordings, "--jobs", "1")
    distributed = audit(on_ray, recordings, "--jobs", "2", "--ray")
    assert not ray.is_initialized()  # the local Ray was stopped after the run
    assert local.exit_code == distributed.exit_code == 1, distributed.stderr
    reports = json.loads(distributed.stdout)
    assert [r["recording"] for r in reports] == [str(path) for path in recordings if path.name != "notes.wav"]
    assert reports == json.loads(local.stdout)
    # the file that is not audio is named as given, not as the worker's private copy
    assert errors(distributed) == errors(local) and errors(local)[0].startswith(f"Error: {recordings[1]}: ")
    assert stored_rows(on_ray) == stored_rows(without_ray)
    assert [(m["category"], m["plays"]) for m in reports[0]["messages"]] == [("promo", 2)]
    # the flow's scripts reached the workers (audits.scripts): base hears the tip in this voice "... at
    # memple.com slash railing" and, given its script, as the flow says it
    assert DEMO_MESSAGES["tip-online-billing"]["text"] in [m["text"] for r in reports for m in r["messages"]]


def ray_workers_auditing() -> list[int]:
    """Process ids of Ray worker actors running AuditWorker.audit (Ray names the process after its task)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::AuditWorker.audit"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue  # the process ended while we looked
    return pids


def test_a_killed_worker_costs_no_recording_and_none_is_stored_twice(recordings, tmp_path, monkeypatch):
    saved = []
    save = store.save
    monkeypatch.setattr(store, "save", lambda db, result, **kw: saved.append(result.recording) or save(db, result, **kw))
    killer, killed = killing_the_first(ray_workers_auditing, within_s=120, poll_s=0.02)
    result = audit(tmp_path / "crash.db", recordings, "--jobs", "2", "--ray")
    killer.join()
    assert killed, "no Ray worker was seen auditing"
    assert not ray.is_initialized()
    assert "its Ray worker died: auditing it again" in result.stderr, result.stderr
    audited = [str(path) for path in recordings if path.name != "notes.wav"]
    assert [r["recording"] for r in json.loads(result.stdout)] == audited  # none lost
    assert sorted(saved) == sorted(audited)  # none stored twice
    db = connect(tmp_path / "crash.db")
    assert sorted(row["recording"] for row in db.query("select recording from audits")) == sorted(audited)
    assert len(errors(result)) == 1 and errors(result)[0].startswith(f"Error: {recordings[1]}: not an audio file")
    assert result.exit_code == 1


@pytest.mark.parametrize("value, is_address", [("auto", True), ("local", True), ("10.0.0.5:6379", True),
                                               ("ray://head.internal:10001", True), ("hold.wav", False),
                                               ("calls/", False)])
def test_an_address_or_the_first_recording(value, is_address):
    from app.cli.audit import looks_like_ray_address

    assert looks_like_ray_address(value) is is_address


def test_a_bare_ray_means_ray_address_or_a_local_ray(monkeypatch):
    from app.cli.audit import _RAY_DEFAULT, _ray_option

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _ray_option([Path("b.wav")], "hold.wav") == ([Path("hold.wav"), Path("b.wav")], "local")
    assert _ray_option([Path("b.wav")], "head:6379") == ([Path("b.wav")], "head:6379")
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert _ray_option([Path("b.wav")], _RAY_DEFAULT) == ([Path("b.wav")], "head:6379")
    assert _ray_option([Path("b.wav")], None) == ([Path("b.wav")], None)


def test_a_cluster_that_does_not_answer_is_one_line_at_once(recordings, tmp_path):
    import socket

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    result = audit(tmp_path / "x.db", recordings[:1], "--ray", f"127.0.0.1:{port}")
    assert result.exit_code == 1 and time.monotonic() - started < 30
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: Ray at 127.0.0.1:{port}: cannot connect")
    assert not ray.is_initialized()


def test_a_runner_works_elsewhere_and_the_bar_counts_done_and_failed(tmp_path):
    """audit_batch's runner hook (what --ray plugs in): it surveys elsewhere, the audits are finished and stored
    here, and the bar says done / failed."""
    from app.core.audit import Span
    from audits.batch import Outcome, Survey, audit_batch
    from audits.pipeline import Survey as Surveyed

    files = [tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"]
    for path in files:
        path.write_bytes(b"RIFF")

    def runner(works, *, engine, model, progress):
        assert all(isinstance(work, Survey) for work in works)  # only music: nothing to hear
        for work in works:
            if work.path.name == "b.wav":
                yield Outcome(work.index, work.path, error=f"{work.path}: its Ray worker died, 3 times: not audited")
            else:
                yield Outcome(work.index, work.path, sha256="x", result=Surveyed(
                    duration_s=1.0, segments=[Span(0.0, 1.0, "music")], groups=[], anchors=[], snr_db=[]))

    class Bar:
        def __init__(self):
            self.postfixes, self.lines = [], []

        def update(self, n=1):
            pass

        def set_postfix_str(self, text):
            self.postfixes.append(text)

        def write(self, text, file=None):
            self.lines.append(text)

    bar, db = Bar(), database_with_the_demo_flow(tmp_path / "runner.db")
    results, failures = audit_batch(files, connect(db), engine="faster-whisper", model="tiny.en", progress=bar,
                                    runner=runner)
    assert [r.recording for r in results] == [str(files[0]), str(files[2])]
    assert failures == [(str(files[1]), f"{files[1]}: its Ray worker died, 3 times: not audited")]
    assert bar.postfixes == ["surveyed 1/3", "surveyed 2/3", "0 done, 1 failed", "surveyed 3/3",
                             "1 done, 1 failed", "2 done, 1 failed"]
    assert sorted(row["recording"] for row in connect(db).query("select recording from audits")) == \
        [str(files[0]), str(files[2])]


# ---- a message new to the library, shared by recordings of one batch ---------------------------------

@pytest.fixture(scope="module")
def sharing(tmp_path_factory):
    """Three short holds sharing the Galaxy promo, new to the library: once in the first (the caller owns
    the phone), twice in the second (noisier), and the third's own reassurance before it, in a voice tiny.en
    mishears ("And your thought your patience, your calling important ..."), so that it is heard again with its
    flow script. Which play of the promo is heard decides its wording (and avg_logprob) in every recording
    that gets that hearing."""
    folder = tmp_path_factory.mktemp("sharing")
    return [make_hold(folder, ["music 2", "say galaxy-upgrade", "music 2"], name="one", context=OWNER, seed=51).path,
            make_hold(folder, ["music 2", "say galaxy-upgrade", "music 2", "say galaxy-upgrade", "music 1"],
                      name="two", seed=52, noise_dbfs=-48.0).path,
            make_hold(folder, ["music 1", "say thanks-patience voice=en-gb-scotland", "music 2", "say galaxy-upgrade",
                               "music 1"], name="three", seed=53).path]


# By nature different between runs: when each audit ran (audited_at, and what follows from it for recordings
# with no call: a library entry's first / last heard, a play's heard_at) and the entry's random key.
RUN_TIME_COLUMNS = {"audits": {"audited_at"}, "library_messages": {"entry_key", "first_heard", "last_heard"},
                    "library_plays": {"heard_at"}}


def every_row(db_path: Path) -> dict[str, list]:
    """Every row of the audit and library tables in id (or rowid) order, RUN_TIME_COLUMNS left out."""
    db = connect(db_path)
    rows = {table: [{k: v for k, v in row.items() if k not in RUN_TIME_COLUMNS.get(table, ())}
                    for row in db.query(f'select * from "{table}" order by rowid')]
            for table in ["audits", *AUDIT_CHILD_TABLES, "library_messages", "library_plays"]}
    db.conn.close()
    return rows


class Counted(list):
    """Clips given to Whisper (a count per call), and `scripted`: those heard with a flow script as the prompt."""
    scripted: list[int]

    def clear(self):
        super().clear()
        self.scripted = []


@pytest.fixture
def clips_heard(monkeypatch) -> Counted:
    """Clips given to Whisper, counted where it runs in this process (one process: the engine's
    transcribe_many) and, with workers, as the Hear works sent to them (each decodes its clips once)."""
    from app.core.flows import read_flow_file
    from audits import batch, transcribe
    from audits.ray_batch import RayRunner

    counted, shared_engine = Counted(), transcribe.shared_engine
    counted.clear()
    flow_scripts = {" ".join(segment.say.split()) for segment in read_flow_file(
        Path(__file__).parent.parent / "app" / "demo_data" / "flows.toml").segments if segment.say}

    class Counting:
        def __init__(self, engine):
            self.engine = engine

        def transcribe_many(self, clips, starts_s=None, prompt=None):
            counted.append(len(clips))
            if prompt in flow_scripts:
                counted.scripted.append(len(clips))
            return self.engine.transcribe_many(clips, starts_s, prompt=prompt)

    def counting_runner(call):
        def run(self, works, **options):
            counted.extend(len(work.plays) for work in works if isinstance(work, batch.Hear))
            counted.scripted.extend(len(work.plays) for work in works
                                    if isinstance(work, batch.Hear) and work.scripts is not None)
            return call(self, works, **options)
        return run

    monkeypatch.setattr(transcribe, "shared_engine", lambda *args, **kwargs: Counting(shared_engine(*args, **kwargs)))
    for runner in (batch.WorkerPool, RayRunner):
        monkeypatch.setattr(runner, "__call__", counting_runner(runner.__call__))
    return counted


def test_a_shared_new_message_gives_the_same_reports_and_rows_on_one_process_two_workers_and_ray(sharing, tmp_path,
                                                                                                  clips_heard):
    runs = {}
    for name, options in [("one process", ["--jobs", "1"]), ("two workers", ["--jobs", "2"]),
                          ("ray", ["--jobs", "2", "--ray"])]:
        db_path = database_with_the_demo_flow(tmp_path / f"{name}.db")
        clips_heard.clear()
        result = audit(db_path, sharing, "--model", "tiny.en", *options)
        assert result.exit_code == 0, result.stderr
        runs[name] = (json.loads(result.stdout), every_row(db_path), sum(clips_heard), sum(clips_heard.scripted))
    reports, rows, heard, scripted = runs["one process"]
    assert [r["recording"] for r in reports] == [str(path) for path in sharing]
    assert [[m["category"] for m in r["messages"]] for r in reports] == [["promo"], ["promo"], ["reassurance", "promo"]]
    assert len(rows["library_messages"]) == 2  # the promo once, though three recordings heard it
    # Whisper heard each clip the library keeps once, in the whole batch: the promo's first hearing (and more
    # of its plays if that one was unsure), the reassurance's; fewer than the five plays. And a first hearing
    # that reads like its flow script, not word for word, once more with the script (audits.scripts), which
    # replaces it or not: the library keeps one of the two.
    assert heard - scripted == sum(len(json.loads(row["hearings"])) for row in rows["library_messages"]) < 5
    assert scripted >= 1
    assert runs["two workers"][0] == reports and runs["ray"][0] == reports
    assert runs["two workers"][1] == rows
    assert runs["ray"][1] == rows
    assert runs["two workers"][2] == runs["ray"][2] == heard
    assert runs["two workers"][3] == runs["ray"][3] == scripted

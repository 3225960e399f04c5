"""`holdguard audit --jobs N`: recordings audited in worker processes, stored by the parent, bad files skipped.

Real generated holds, the real faster-whisper engine in real spawned workers, a real SQLite database.
"""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.storage.connect import connect
from app.core.files import file_sha256
from app.storage import audits as store
from audits import batch
from tests.audio_fixtures import make_hold

pytestmark = pytest.mark.slow

OWNER = {"open_issues": [{"id": "CASE-7", "severity": "medium", "summary": "Bill too high"}],
         "owned_products": ["Galaxy S7"]}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two short holds (one with a caller context beside it) and a file that is not audio."""
    folder = tmp_path_factory.mktemp("batch")
    promo = make_hold(folder, ["music 3", "say galaxy-upgrade", "music 3", "say galaxy-upgrade", "music 2"],
                      name="promo", context=OWNER, seed=31)
    thanks = make_hold(folder, ["music 2", "say thanks-patience", "music 3"], name="thanks", seed=32)
    not_audio = folder / "notes.wav"
    not_audio.write_text("minutes of the hold-music meeting, not audio\n")
    return [promo.path, not_audio, thanks.path]


def audit(db_path, files, *options):
    return CliRunner().invoke(main, ["audit", *map(str, files), "--format", "json", "--db", str(db_path), *options],
                              prog_name="holdguard")


def database_with_the_demo_flow(db_path: Path) -> Path:
    """A database as deployed: the hold flow's catalog (which names what each promo sells) loaded.
    Workers get the catalog from the parent, so the two runs below also check that it reaches them."""
    from app.storage.schema import migrate as init_schema
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog

    db = connect(db_path)
    init_schema(db)
    save_catalog(db, read_flow_file(Path(__file__).parent.parent / "app" / "demo_data" / "flows.toml"))
    db.conn.close()
    return db_path


@pytest.fixture(scope="module")
def runs(recordings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dbs")
    databases = {jobs: database_with_the_demo_flow(folder / f"jobs{jobs}.db") for jobs in (1, 2)}
    return {jobs: (audit(db_path, recordings, "--jobs", str(jobs)), db_path) for jobs, db_path in databases.items()}


def test_workers_give_the_same_reports_as_one_process(runs, recordings):
    (in_process, _), (in_workers, _) = runs[1], runs[2]
    assert in_process.exit_code == in_workers.exit_code == 1
    one, two = json.loads(in_process.stdout), json.loads(in_workers.stdout)
    assert [r["recording"] for r in two] == [str(recordings[0]), str(recordings[2])]  # the order given
    assert two == one
    promo = two[0]
    assert [(m["category"], m["plays"]) for m in promo["messages"]] == [("promo", 2)]
    assert {f["rule"] for f in promo["findings"]} == {"promo_during_open_issue", "promo_for_owned_product",
                                                    "promo_share_high"}
    assert [(m["category"], m["plays"]) for m in two[1]["messages"]] == [("reassurance", 1)]


def test_the_bad_file_is_reported_and_the_rest_stored(runs, recordings):
    result, db_path = runs[2]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {recordings[1]}: not an audio file")
    assert "1 of 3 recordings could not be audited" in result.stderr
    db = connect(db_path)
    rows = list(db.query("select id, recording, sha256 from audits order by recording"))
    assert [row["recording"] for row in rows] == sorted([str(recordings[0]), str(recordings[2])])
    reports = {r["recording"]: r for r in json.loads(result.stdout)}
    for row in rows:
        assert store.load(db, row["id"]).to_json() == reports[row["recording"]]
        assert row["sha256"] == file_sha256(row["recording"])


def spawned_workers() -> list[int]:
    """Process ids of this process's multiprocessing workers ("spawn" children running spawn_main)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            parent = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("PPid:"))
            command = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration):
            continue  # the process ended while we looked
        if int(parent) == os.getpid() and b"spawn_main" in command:
            pids.append(int(status.parent.name))
    return pids


def killing_the_first(find_pids, *, within_s: float, settle_s: float = 0.0, poll_s: float = 0.05):
    """A started thread that SIGKILLs the first process `find_pids()` names (after `settle_s`), and
    the list it records the pid in; join the thread after the run."""
    killed = []

    def kill_the_first():
        deadline = time.monotonic() + within_s
        while not killed and time.monotonic() < deadline:
            for pid in find_pids():
                time.sleep(settle_s)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(poll_s)

    killer = threading.Thread(target=kill_the_first)
    killer.start()
    return killer, killed


def test_a_worker_that_dies_costs_no_recording_but_its_own(recordings, tmp_path):
    # settle: loading its model or auditing, either way its recording is in flight
    killer, killed = killing_the_first(spawned_workers, within_s=60, settle_s=1.0)
    result = audit(tmp_path / "crash.db", recordings, "--jobs", "2")
    killer.join()
    assert killed, "no worker process was seen"
    # the recordings the dead worker's pool still held were audited again, one worker each
    assert "an audit worker process died: auditing" in result.stderr
    assert [r["recording"] for r in json.loads(result.stdout)] == [str(recordings[0]), str(recordings[2])]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {recordings[1]}: not an audio file"), result.stderr
    assert result.exit_code == 1


def test_jobs_default_and_thread_share(monkeypatch):
    monkeypatch.setattr(batch, "cpu_count", lambda: 4)
    assert [batch.default_jobs(n) for n in (1, 3, 9)] == [1, 3, 4]
    # the decoder's fixed thread count, whatever the cores and workers: a worker hears what one run hears
    from audits.transcribe import DECODER_THREADS
    assert [batch.threads_per_worker(jobs) for jobs in (1, 2, 3, 4, 8)] == [DECODER_THREADS] * 5


def test_jobs_must_be_positive(recordings, tmp_path):
    result = audit(tmp_path / "x.db", recordings[:1], "--jobs", "0")
    assert result.exit_code == 2 and "--jobs" in result.output

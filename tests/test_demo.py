"""`holdguard demo`, the quick start's one command, run as a newcomer runs it: a fresh folder, a new process."""
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_demo(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys; from app.cli import main; main(sys.argv[1:], prog_name='holdguard')",
               "demo", *extra]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("newcomer")
    return folder, run_demo(folder, "--minutes", "15")


def test_demo_runs_every_step_in_a_fresh_folder(demo):
    folder, run = demo
    assert run.returncode == 0, run.stderr
    for step in ("== 1. database, hold flow, customers", "== 2. a 15-minute hold for +15555550100",
                 "== 3. audit of hold-10min.wav"):
        assert step in run.stdout
    assert "0 promo(s)" in run.stdout  # Dana is mid-issue and owns the phone: no sales pitch
    assert "notice" in run.stdout.split("== 2.")[1].split("== 3.")[0]
    assert (folder / "holdguard.db").is_file() and (folder / "holdguard-demo" / "hold-10min.html").is_file()


def test_demo_output_is_only_what_it_means_to_say(demo):
    _, run = demo
    noise = [line for line in (run.stdout + run.stderr).splitlines()
             if "faster_whisper" in line or "Processing audio" in line or "Traceback" in line]
    assert noise == []


def test_demo_report_and_database_hold_the_audit_and_a_simulated_call(demo):
    folder, _ = demo
    html = (folder / "holdguard-demo" / "hold-10min.html").read_text()
    for rule in ("promo_for_owned_product", "promo_during_open_issue", "repeated_promo", "long_silence"):
        assert rule in html
    with sqlite3.connect(folder / "holdguard.db") as db:
        assert db.execute("select simulated, count(*) from calls group by simulated").fetchall() == [(1, 1)]
        stored = {rule for (rule,) in db.execute("select rule from audit_findings")}
    assert {"promo_for_owned_product", "promo_during_open_issue", "repeated_promo", "long_silence"} <= stored


def test_demo_runs_again_as_one_more_call_without_the_audit(demo):
    folder, _ = demo
    again = run_demo(folder, "--minutes", "5", "--skip-audit")
    assert again.returncode == 0, again.stderr
    assert "== 3." not in again.stdout
    with sqlite3.connect(folder / "holdguard.db") as db:
        assert db.execute("select count(*) from calls where simulated = 1").fetchone() == (2,)


def test_readme_json_example_is_what_the_demo_audit_found(demo):
    """README's `--format json` example carries the figures of a real audit of hold-10min.wav."""
    import json
    import re

    from app.storage import audits as store
    from app.storage.connect import connect

    folder, _ = demo
    example = (ROOT / "README.md").read_text().split('{"recording": "sample_audio/hold-10min.wav"', 1)[1]
    example = example.split("```", 1)[0]
    db = connect(folder / "holdguard.db")
    (audit_id,) = [row["id"] for row in db.query("select id from audits")]
    report = store.load(db, audit_id).to_json()
    db.conn.close()
    assert json.loads(re.search(r'"summary": (\{.*?\})', example).group(1)) == report["summary"]
    assert f'"duration_s": {report["duration_s"]}' in example
    promo, = [m for m in report["messages"] if m["category"] == "promo"]
    assert f'"play_times_s": {json.dumps(promo["play_times_s"])}' in example

"""An audited call is judged by the issues open when the call happened, not by today's.

The database is built the way a deployment builds it: customers through two real
CRM imports (app.storage.crm.import_customers, with their clock given), calls through
the webhook's writer (app.storage.playlog.record_call_start). Dana's story, in UTC:

    2026-11-19 10:00   call EARLY         nothing open yet
    2026-11-20 09:12   CASE-1042 opened   (first import, 09:15)
    2026-11-21 10:00   call DURING        CASE-1042 open
    2026-11-22 12:00   CASE-2000 opened   (second import, 2026-11-23 08:00: its snapshot
    2026-11-23 08:00   CASE-1042 closed    lists only CASE-2000, so CASE-1042 is closed then)
    2026-11-23 09:00   call LATE          CASE-2000 open
    now                                   CASE-2000 open

The command-line test audits a few seconds of generated audio with a promo (real
Whisper, the process's shared engine) for three calls and checks the findings follow.
"""
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.storage.playlog import record_call_start
from app.cli import main
from app.storage.crm import import_customers
from app.storage.connect import connect
from app.storage.schema import migrate as init_schema
from app.core.flows import read_flow_file
from app.storage.catalog import save_catalog
from app.storage.crm import issues_open_at
from audits.context import from_database, resolve, sidecar_path
from tests.audio_fixtures import make_hold

DEMO = Path(__file__).resolve().parents[1] / "app" / "demo_data"
DANA = "+15555550100"  # demo customer C-1001: CASE-1042 (high) opened 2026-11-20T09:12:00Z
FIRST_IMPORT_AT = "2026-11-20T09:15:00Z"
SECOND_IMPORT_AT = "2026-11-23T08:00:00Z"  # closes CASE-1042
CALLS = {  # CallSid -> when the webhook saw the call start
    "CA" + "e" * 32: datetime(2026, 11, 19, 10, 0, tzinfo=timezone.utc),
    "CA" + "d" * 32: datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc),
    "CA" + "1" * 32: datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc),
    # Half a second after CASE-1042 opened: "...09:12:00Z" sorts after "...09:12:00.500Z" as text.
    "CA" + "2" * 32: datetime(2026, 11, 20, 9, 12, 0, 500_000, tzinfo=timezone.utc),
    # The very moment CASE-1042 was closed: no longer open.
    "CA" + "3" * 32: datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc),
}
EARLY, DURING, LATE, JUST_OPENED, JUST_CLOSED = CALLS
DANA_LATER = {"customer_id": "C-1001", "phone": "+1 555 555 0100",
              "open_issues": [{"id": "CASE-2000", "severity": "medium", "summary": "Bill charged twice",
                               "opened_at": "2026-11-22T12:00:00Z"}]}


def build_history(db, folder: Path) -> None:
    """Dana's customers, issues and calls as in the module docstring, plus the demo hold flow."""
    init_schema(db)
    save_catalog(db, read_flow_file(DEMO / "flows.toml"))
    first = import_customers(db, DEMO / "customers.json", now=FIRST_IMPORT_AT)
    later = folder / "crm-later.json"
    later.write_text(json.dumps([DANA_LATER]))
    second = import_customers(db, later, now=SECOND_IMPORT_AT)
    assert not first.errors and not second.errors
    for call_sid, started in CALLS.items():
        record_call_start(db, call_sid, DANA, "C-1001", "support", started)


def issue_ids(context) -> list[str]:
    return [issue.id for issue in context.open_issues]


@pytest.fixture
def db(db_path, tmp_path):
    database = connect(db_path)
    build_history(database, tmp_path)
    yield database
    database.conn.close()


def test_the_story_is_in_the_database(db):
    """The imports did what the other tests rely on: CASE-1042 closed by the second import."""
    rows = {row["id"]: row for row in db.query("select id, opened_at, closed_at from issues")}
    assert rows["CASE-1042"]["opened_at"] == "2026-11-20T09:12:00Z"
    assert rows["CASE-1042"]["closed_at"] == SECOND_IMPORT_AT
    assert rows["CASE-2000"]["closed_at"] is None


def test_an_issue_closed_after_the_call_still_counts(db):
    context = from_database(db, call_sid=DURING)
    assert issue_ids(context) == ["CASE-1042"]
    assert context.open_issues[0].severity == "high"
    assert context.open_issues[0].summary == "Galaxy S7 reboots during calls"


def test_an_issue_closed_before_the_call_does_not_count(db):
    assert issue_ids(from_database(db, call_sid=LATE)) == ["CASE-2000"]
    assert issue_ids(from_database(db, call_sid=JUST_CLOSED)) == ["CASE-2000"]


def test_an_issue_opened_after_the_call_does_not_count(db):
    assert issue_ids(from_database(db, call_sid=EARLY)) == []
    assert issue_ids(from_database(db, call_sid=DURING)) == ["CASE-1042"]  # CASE-2000 came later


def test_times_are_stored_in_one_form_and_compare_as_text(db):
    """The webhook's clock had half a second past the issue's opening: stored in the one form (whole
    seconds, Z), the call started when the issue was already open."""
    started = db["calls"].get(JUST_OPENED)["started_at"]
    assert started == "2026-11-20T09:12:00Z"
    assert issue_ids(from_database(db, call_sid=JUST_OPENED)) == ["CASE-1042"]


@pytest.mark.parametrize("unknown", [None, ""])
def test_an_issue_without_opened_at_always_was(db, unknown):
    db.execute("update issues set opened_at = ? where id = 'CASE-1042'", [unknown])
    assert issue_ids(from_database(db, call_sid=EARLY)) == ["CASE-1042"]
    assert issue_ids(from_database(db, call_sid=LATE)) == ["CASE-2000"]  # its closing still counts


def test_products_are_those_owned_now(db):
    assert from_database(db, call_sid=EARLY).owned_products == ["Galaxy S7", "Unlimited Plus"]
    assert from_database(db, call_sid=EARLY).queue == "support"


def test_only_a_phone_means_the_issues_open_now(db, tmp_path):
    assert issue_ids(from_database(db, phone="(555) 555-0100")) == ["CASE-2000"]
    audio = tmp_path / "hold.wav"
    sidecar_path(audio).write_text(json.dumps({"phone": "+1 555 555 0100"}))
    assert issue_ids(resolve(audio, db=db).context) == ["CASE-2000"]


def test_a_call_without_a_start_time_means_the_issues_open_now(db):
    db["calls"].insert({"call_sid": "CA" + "4" * 32, "caller": DANA, "queue": "support"})
    db["calls"].insert({"call_sid": "CA" + "5" * 32, "caller": DANA, "queue": "support", "started_at": "last week"})
    assert issue_ids(from_database(db, call_sid="CA" + "4" * 32)) == ["CASE-2000"]
    assert issue_ids(from_database(db, call_sid="CA" + "5" * 32)) == ["CASE-2000"]


def test_resolve_finds_the_call_by_name_context_file_and_recording_sid(db, tmp_path):
    assert issue_ids(resolve(tmp_path / f"{DURING}.wav", db=db).context) == ["CASE-1042"]
    given = tmp_path / "caller.json"
    given.write_text(json.dumps({"call_sid": EARLY}))
    assert issue_ids(resolve(tmp_path / "hold.wav", given, db=db).context) == []
    recording_sid = "RE" + "ab" * 16
    db["recordings"].insert({"sid": recording_sid, "call_sid": DURING}, alter=True)
    assert issue_ids(resolve(tmp_path / f"{recording_sid}.wav", db=db).context) == ["CASE-1042"]


def test_a_context_files_own_issues_are_kept_and_the_databases_are_as_of_the_call(db, tmp_path):
    """The file's own issues are the auditor's word; the database's are added as of the call."""
    given = tmp_path / "caller.json"
    given.write_text(json.dumps({"call_sid": EARLY, "open_issues": [{"id": "CASE-9", "severity": "low"}]}))
    assert issue_ids(resolve(tmp_path / "hold.wav", given, db=db).context) == ["CASE-9"]


def test_issues_open_at_covers_every_customer_on_the_number(db, tmp_path):
    """A family plan: a second customer on Dana's number with an issue open at the time counts too."""
    family = tmp_path / "family.json"
    family.write_text(json.dumps([{"customer_id": "C-2001", "phone": DANA, "open_issues": [
        {"id": "CASE-3000", "severity": "low", "opened_at": "2026-11-18T00:00:00Z"}]}]))
    assert not import_customers(db, family, now=FIRST_IMPORT_AT).errors
    assert [i.id for i in issues_open_at(db, DANA, "2026-11-21T10:00:00Z")] == ["CASE-1042", "CASE-3000"]
    assert [i.id for i in issues_open_at(db, DANA, "2026-11-19T10:00:00+02:00")] == ["CASE-3000"]


# --- the command line, on real audio ------------------------------------------------------------

@pytest.fixture(scope="module")
def audit_run(tmp_path_factory) -> tuple[dict[str, dict], Path]:
    """`holdguard audit` of one short promo as three calls: by CallSid file name, by a sidecar's
    call_sid, and by a sidecar with only the phone. Returns the JSON reports by file stem, and the
    database they were stored in."""
    work = tmp_path_factory.mktemp("context-time")
    db = connect(work / "holdguard.db")
    build_history(db, work)
    db.conn.close()
    generated = work / "generated"  # the generator's truth file stays out of the audited folder
    generated.mkdir()
    hold = make_hold(generated, ["music 2", "say galaxy-upgrade", "music 2"], name="promo", seed=21)
    calls = work / "calls"
    calls.mkdir()
    for stem, context in [(DURING, None), ("early", {"call_sid": EARLY}), ("phone-only", {"phone": DANA})]:
        shutil.copy(hold.path, calls / f"{stem}.wav")
        if context:
            sidecar_path(calls / f"{stem}.wav").write_text(json.dumps(context))
    out = work / "reports"
    result = CliRunner().invoke(main, ["audit", str(calls), "--out", f"{out}/", "--format", "json", "--jobs", "1",
                                       "--db", str(work / "holdguard.db")], prog_name="holdguard")
    assert result.exit_code == 0, result.output
    reports = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json") if path.stem != "index"}
    return reports, work / "holdguard.db"


@pytest.fixture(scope="module")
def audited(audit_run) -> dict[str, dict]:
    return audit_run[0]


@pytest.fixture(scope="module")
def audited_db(audit_run):
    return connect(audit_run[1])


def open_issue_findings(report: dict) -> list[dict]:
    assert [m["category"] for m in report["messages"]] == ["promo"], report["messages"]
    return [finding for finding in report["findings"] if finding["rule"] == "promo_during_open_issue"]


def test_cli_call_by_file_name_is_judged_by_the_issue_open_then(audited):
    (finding,) = open_issue_findings(audited[DURING])
    assert "CASE-1042 (high) is open" in finding["evidence"] and "CASE-2000" not in finding["evidence"]
    assert finding["severity"] == "high"


def test_cli_call_before_any_issue_has_no_open_issue_finding(audited):
    assert open_issue_findings(audited["early"]) == []


def test_cli_phone_only_is_judged_by_the_issues_open_now(audited):
    (finding,) = open_issue_findings(audited["phone-only"])
    assert "CASE-2000 (medium) is open" in finding["evidence"] and "CASE-1042" not in finding["evidence"]


def test_the_context_says_when_its_issues_were_open(db):
    assert from_database(db, call_sid=DURING).issues_as_of == db["calls"].get(DURING)["started_at"]
    assert from_database(db, phone=DANA).issues_as_of is None  # open now: nothing to say


def stored_context_line(stem: str, audited_db) -> str:
    from app.storage import audits as store
    from audits import report

    (row,) = [row for row in audited_db["audits"].rows if Path(row["path"]).stem == stem]
    return report.context_line(store.load(audited_db, row["id"]))


def test_the_report_says_the_issues_are_those_open_when_the_call_started(audited_db):
    during_at = audited_db["calls"].get(DURING)["started_at"]
    assert stored_context_line(DURING, audited_db).startswith(
        f"Caller: open issues when the call started ({during_at}) CASE-1042 (high")
    early_at = audited_db["calls"].get(EARLY)["started_at"]
    assert stored_context_line("early", audited_db).startswith(
        f"Caller: no open issues when the call started ({early_at}); owns Galaxy S7")
    assert stored_context_line("phone-only", audited_db).startswith("Caller: open issues CASE-2000 (medium")

"""`holdguard audit`: context resolution, argument handling, formats and outputs, search.

The recordings here hold music and dead air only (generated, real audio): the
command runs for real, engine included, but never needs Whisper to transcribe.
Speech and the rules on real Whisper output are in test_audit_e2e.py.
"""
import json
from pathlib import Path

import pytest

from app.cli import main
from app.storage.connect import connect
from app.storage import audits as store
from app.cli.audit import ENGINES, decide_format, is_folder_target
from audits.context import ContextError, parse_context, read_context_file, resolve, sidecar_path
from app.core.audit import AuditResult, Context, Issue, Message, Span
from tests.audio_fixtures import make_hold

DANA = {"open_issues": [{"id": "CASE-1042", "severity": "high", "summary": "Galaxy S7 reboots during calls"}],
        "owned_products": ["Galaxy S7"], "queue": "support"}
CALL_SID = "CA" + "0123456789abcdef" * 2


# --- context -----------------------------------------------------------------------------------

def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_sidecar_is_next_to_the_audio():
    assert sidecar_path("/calls/hold.wav") == Path("/calls/hold.context.json")


def test_context_file_exact_shape(tmp_path):
    resolved = read_context_file(write_json(tmp_path / "c.json", DANA))
    assert resolved.context == Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")],
                                       owned_products=["Galaxy S7"], queue="support")
    assert resolved.sources == [str(tmp_path / "c.json")]
    assert parse_context({}).context == Context()
    assert parse_context({"open_issues": [{"id": "C-1"}]}).context.open_issues == [Issue("C-1", "medium", "")]


@pytest.mark.parametrize("data, error", [
    ("{not json", r"c\.json: not valid JSON \(Expecting property name"),
    ([], r"c\.json: expected a JSON object, got a list"),
    ({"owned_product": ["x"]}, r"c\.json: unknown key 'owned_product' \(expected open_issues, owned_products"),
    ({"open_issues": {"id": "C"}}, r"c\.json: open_issues: expected a list, got an object"),
    ({"open_issues": ["C-1"]}, r"c\.json: open_issues\[0\]: expected an object with id, severity, summary"),
    ({"open_issues": [{"severity": "high"}]}, r"c\.json: open_issues\[0\]\.id: missing"),
    ({"open_issues": [{"id": "C", "severity": "urgent"}]},
     r"c\.json: open_issues\[0\]\.severity: expected one of low, medium, high, critical, got \"urgent\""),
    ({"open_issues": [{"id": "C", "summary": 3}]}, r"c\.json: open_issues\[0\]\.summary: expected a string, got a number"),
    ({"owned_products": ["ok", 7]}, r"c\.json: owned_products\[1\]: expected a non-empty string, got 7"),
    ({"queue": ["support"]}, r"c\.json: queue: expected a non-empty string"),
])
def test_bad_context_files_name_the_file_and_field(tmp_path, data, error):
    with pytest.raises(ContextError, match=error) as raised:
        read_context_file(write_json(tmp_path / "c.json", data))
    assert "\n" not in str(raised.value)


def test_every_problem_of_a_context_file_on_one_line(tmp_path):
    bad = {"open_issues": [{"id": "C-1", "severity": "urgent"}, "C-2"], "owned_products": [""], "queu": "x"}
    with pytest.raises(ContextError) as raised:
        read_context_file(write_json(tmp_path / "c.json", bad))
    assert str(raised.value) == (
        f"{tmp_path / 'c.json'}: open_issues[0].severity: expected one of low, medium, high, critical, got \"urgent\"; "
        "open_issues[1]: expected an object with id, severity, summary, got a string; "
        "owned_products[0]: expected a non-empty string, got \"\"; "
        "unknown key 'queu' (expected open_issues, owned_products, queue, call_sid, phone)")


def test_missing_context_file(tmp_path):
    with pytest.raises(ContextError, match=r"nope\.json: context file does not exist"):
        read_context_file(tmp_path / "nope.json")


def test_resolve_prefers_the_given_file_over_the_sidecar(tmp_path):
    audio = tmp_path / "hold.wav"
    write_json(sidecar_path(audio), DANA)
    assert resolve(audio).context.open_issues[0].id == "CASE-1042"
    given = write_json(tmp_path / "other.json", {"queue": "billing"})
    assert resolve(audio, given).context == Context(queue="billing")
    assert resolve(tmp_path / "stranger.wav").context == Context()


@pytest.fixture
def crm_db(db_path):
    """The demo customers imported, and one call from Dana (C-1001) logged by the webhook."""
    from app.storage.crm import import_customers

    db = connect(db_path)
    import_customers(db, Path("app/demo_data/customers.json"))
    db["calls"].insert({"call_sid": CALL_SID, "caller": "+15555550100", "queue": "support"})
    return db


def test_database_context_by_call_sid_in_the_file_name(tmp_path, crm_db):
    resolved = resolve(tmp_path / f"{CALL_SID}.wav", db=crm_db)
    assert resolved.call_sid == CALL_SID
    assert [i.id for i in resolved.context.open_issues] == ["CASE-1042"]
    assert resolved.context.owned_products == ["Galaxy S7", "Unlimited Plus"]
    assert resolved.context.queue == "support"


def test_database_context_merges_into_the_sidecar(tmp_path, crm_db):
    audio = tmp_path / "hold.wav"
    write_json(sidecar_path(audio), {"phone": "(555) 555-0101", "owned_products": ["Fiber 1G"],
                                     "open_issues": [{"id": "CASE-9", "severity": "low"}]})
    context = resolve(audio, db=crm_db).context
    assert [i.id for i in context.open_issues] == ["CASE-9"]  # Sam has no open issue in the CRM
    assert context.owned_products == ["Fiber 1G", "galaxy s7"]


def test_unknown_call_changes_nothing(tmp_path, crm_db):
    audio = tmp_path / ("CA" + "f" * 32 + ".wav")
    assert resolve(audio, db=crm_db).context == Context()


# --- command line --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, out, terminal, expected", [
    ("html", None, False, "html"), (None, "r.html", True, "html"), (None, "r.JSON", True, "json"),
    (None, "r.md", False, "md"), (None, None, True, "md"), (None, None, False, "json"), (None, "reports/", True, "md"),
])
def test_format_default(fmt, out, terminal, expected):
    assert decide_format(fmt, Path(out) if out else None, terminal) == expected


def test_folder_targets(tmp_path):
    assert is_folder_target(tmp_path) and is_folder_target(Path("reports/")) and is_folder_target(Path("reports"))
    assert not is_folder_target(Path("report.html"))
    # a trailing slash always means a folder, whatever the name (issue #13): given as typed, a str
    assert is_folder_target("out.v2/") and is_folder_target("report.html/") and not is_folder_target("out.v2")


def test_engine_choices_match_the_transcribe_stage():
    from app.cli import audit as cli
    from audits import transcribe

    assert ENGINES == transcribe.ENGINES
    assert cli.DEFAULT_ENGINE == transcribe.DEFAULT_ENGINE
    assert cli.DEFAULT_MODEL == transcribe.DEFAULT_MODEL


@pytest.fixture(scope="module")
def music_only(tmp_path_factory):
    """18 s of hold music with 4 s of dead air: real audio that holds no speech."""
    return make_hold(tmp_path_factory.mktemp("music"), ["music 8", "silence 4", "music 6"], name="music-only",
                     format="pcm-16k", seed=3).path


def audit(runner, *args):
    return runner.invoke(main, ["audit", *map(str, args)], prog_name="holdguard")


def test_audit_help_shows_both_forms(runner):
    result = audit(runner, "--help")
    assert result.exit_code == 0
    assert "Usage: holdguard audit [OPTIONS] PATH..." in result.output
    assert "or: holdguard audit search QUERY" in result.output
    assert "--context FILE" in result.output and "search  Full-text search" in result.output
    bare = audit(runner)  # no arguments: the help (click exits 2, as for a usage error)
    assert "Usage: holdguard audit [OPTIONS] PATH..." in bare.output


def test_audit_prints_json_into_a_pipe_and_stores_it(runner, music_only, db_path):
    result = audit(runner, music_only)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["recording"] == str(music_only)
    assert report["messages"] == [] and report["findings"] == []
    assert {s["kind"] for s in report["segments"]} <= {"music", "silence"}
    db = connect(db_path)
    (row,) = db.query("select * from audits")
    assert row["recording"] == str(music_only) and len(row["sha256"]) == 64
    assert store.load(db, row["id"]).to_json() == report


@pytest.mark.parametrize("fmt, marker", [("md", "# Hold audit: "), ("html", "<!doctype html>")])
def test_audit_formats_to_stdout(runner, music_only, fmt, marker):
    result = audit(runner, music_only, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(marker)


def test_audit_out_file_picks_format_by_extension(runner, music_only, tmp_path):
    out = tmp_path / "report.html"
    result = audit(runner, music_only, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!doctype html>") and result.stdout == ""
    assert f"wrote {out}" in result.stderr


def test_audit_out_folder_one_report_per_recording_and_an_index(runner, music_only, tmp_path):
    twin = tmp_path / "elsewhere" / "music-only.wav"  # same file name, other folder
    twin.parent.mkdir()
    twin.write_bytes(music_only.read_bytes())
    out = tmp_path / "reports"
    result = audit(runner, music_only, twin, "--out", f"{out}/", "--format", "md")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "music-only-2.md", "music-only.md"]
    assert (out / "index.md").read_text().startswith("# Hold audits: 2 recordings")


def test_audit_out_with_a_trailing_slash_is_a_folder_whatever_its_name(runner, music_only, tmp_path):
    out = tmp_path / "out.v2"
    result = audit(runner, music_only, "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == ["index.json", "music-only.json"]


def test_search_is_a_subcommand_and_a_path_named_search_still_works(runner, music_only, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("search").write_bytes(music_only.read_bytes())
    result = audit(runner, "./search", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recording"] == "search"


def test_missing_and_bad_files_are_reported_and_the_batch_goes_on(runner, music_only, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    result = audit(runner, tmp_path / "gone.wav", not_audio, music_only, "--format", "json")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 2
    assert errors[0] == f"Error: {tmp_path / 'gone.wav'}: no such file or folder"
    assert errors[1].startswith(f"Error: {not_audio}: ")
    assert "2 of 3 recordings could not be audited" in result.stderr
    reports = json.loads(result.stdout)
    assert [r["recording"] for r in reports] == [str(music_only)]


def test_bad_context_file_stops_before_any_work(runner, music_only, tmp_path, db_path):
    bad = write_json(tmp_path / "ctx.json", {"open_issues": [{"id": "C-1", "severity": "urgent"}]})
    result = audit(runner, music_only, "--context", bad)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {bad}: open_issues[0].severity: expected one of low, medium, high, "
                                     "critical, got \"urgent\"")
    assert list(connect(db_path).query("select count(*) as n from audits")) in ([{"n": 0}], [])


def test_unknown_model_is_one_line(runner, music_only):
    result = audit(runner, music_only, "--model", "no-such-model")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1


# --- search -------------------------------------------------------------------------------------

def stored(db_path, recording, text, category="promo"):
    db = connect(db_path)
    result = AuditResult(recording, 60.0, [Span(0.0, 60.0, "speech")],
                         [Message("m1", text, [5.0, 35.0], [12.0, 42.0], category=category)], [],
                         {"speech_s": 60.0, "music_s": 0.0, "silence_s": 0.0, "promo_s": 14.0,
                          "promo_share": 0.23, "findings": 0})
    store.save(db, result)


def test_search_lists_matching_messages(runner, db_path):
    stored(db_path, "a.wav", "Upgrade to the brand new Galaxy S7 today.")
    stored(db_path, "b.wav", "Thank you for your patience.", category="reassurance")
    result = audit(runner, "search", "upgrades")  # stemmed: finds "Upgrade"
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["a.wav  m1  promo  2× first at 00:05  Upgrade to the brand new Galaxy S7 today."]
    as_json = json.loads(audit(runner, "search", "patience", "--json").stdout)
    assert [(m["recording"], m["category"]) for m in as_json] == [("b.wav", "reassurance")]


def test_search_with_odd_syntax_and_no_matches(runner, db_path):
    stored(db_path, "a.wav", "Upgrade to the brand new Galaxy S7 today.")
    assert "a.wav" in audit(runner, "search", '"galaxy').stdout  # unbalanced quote: searched as words
    result = audit(runner, "search", "fiber")
    assert result.exit_code == 0 and result.stdout == "" and "no stored transcript matches 'fiber'" in result.stderr


def test_search_without_a_database(runner, tmp_path):
    result = audit(runner, "search", "x", "--db", tmp_path / "none.db")
    assert result.exit_code == 1 and "none.db: database file does not exist" in result.stderr


def test_a_single_bad_recording_writes_no_report(runner, tmp_path):
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("not audio either")
    out = tmp_path / "report.html"
    result = audit(runner, not_audio, "--out", out)
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.startswith(f"Error: {not_audio}: ")


def test_database_context_by_recording_sid_linked_to_its_call(tmp_path, crm_db):
    recording_sid = "RE" + "ab" * 16
    crm_db["recordings"].insert({"sid": recording_sid, "call_sid": CALL_SID}, alter=True)
    resolved = resolve(tmp_path / f"{recording_sid}.wav", db=crm_db)
    assert resolved.call_sid == CALL_SID and resolved.context.open_issues[0].id == "CASE-1042"
    assert resolve(tmp_path / ("RE" + "cd" * 16 + ".wav"), db=crm_db).call_sid is None


def test_catalog_from_the_loaded_hold_flow(crm_db):
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog
    from audits.context import load_catalog

    assert load_catalog(crm_db) == []
    save_catalog(crm_db, read_flow_file(Path("app/demo_data/flows.toml")))
    products = {entry.products for entry in load_catalog(crm_db)}
    assert ("Galaxy S7",) in products and ("Fiber 1G",) in products

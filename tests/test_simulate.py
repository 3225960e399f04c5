"""`holdguard simulate` and simulate_call(): the real webhook, signed requests, a simulated clock."""
import json
import re

import pytest

from app.cli import main
from app.core.times import parse_utc
from app.web.simulate import AdhocCaller, SimulateError, simulate_call
from app.storage.connect import connect

from test_personas import DANA, NIA, insert_demo_customers, load_demo_flow

TIMELINE_KEYS = {"at_s", "segment_id", "kind", "duration_s", "reason"}


@pytest.fixture
def demo_db(db_path):
    load_demo_flow(db_path)
    insert_demo_customers(db_path)
    return db_path


def run_json(runner, *args):
    result = runner.invoke(main, ["simulate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_shape_is_exactly_the_contract(runner, demo_db):
    result = run_json(runner, "--from", "+15555550100", "--minutes", "45")

    assert set(result) == {"call_sid", "caller", "timeline", "summary"}
    assert re.fullmatch(r"CA[0-9a-f]{32}", result["call_sid"])
    assert result["caller"] == DANA
    assert all(set(play) == TIMELINE_KEYS for play in result["timeline"])
    assert {"promo_plays", "promo_share"} <= set(result["summary"])


def test_the_wait_announcement_has_one_name_the_audits_category(demo_db):
    """kind `wait` in the timeline and the play log, as an audit classifies the same message;
    `announcement_plays` stays one release as the deprecated name of `wait_plays`."""
    result = simulate_call(demo_db, caller_phone=DANA, minutes=45)

    waits = [play for play in result["timeline"] if play["segment_id"] == "wait-announcement"]
    assert waits and {play["kind"] for play in waits} == {"wait"}
    assert result["summary"]["wait_plays"] == result["summary"]["announcement_plays"] == len(waits)
    kinds = {row[0] for row in connect(demo_db).execute("select distinct kind from plays")}
    assert "wait" in kinds and "announcement" not in kinds


def test_queue_time_grows_by_each_answer_and_the_call_ends_bridged(demo_db):
    result = simulate_call(demo_db, caller_phone=DANA, minutes=30)

    timeline = result["timeline"]
    for before, after in zip(timeline, timeline[1:]):
        assert after["at_s"] == int(before["at_s"] + before["duration_s"])
    end_s = timeline[-1]["at_s"] + timeline[-1]["duration_s"]
    assert end_s >= 30 * 60 > timeline[-1]["at_s"]
    call = connect(demo_db)["calls"].get(result["call_sid"])
    assert call["queue_result"] == "bridged" and call["queue_time_s"] == int(end_s)
    assert result["summary"]["hold_s"] == end_s


def test_the_play_log_follows_the_simulated_clock(demo_db):
    result = simulate_call(demo_db, caller_phone=DANA, minutes=20)

    rows = list(connect(demo_db).query(
        "SELECT at, at_s FROM plays WHERE call_sid = ? ORDER BY id", [result["call_sid"]]))
    start = parse_utc(rows[0]["at"])
    for row in rows:  # wall-clock `at` advanced exactly with the hold, not with real time
        assert abs((parse_utc(row["at"]) - start).total_seconds() - row["at_s"]) < 1


def test_consecutive_runs_are_consecutive_calls(demo_db):
    first = simulate_call(demo_db, caller_phone=NIA, minutes=45)
    second = simulate_call(demo_db, caller_phone=NIA, minutes=45)

    db = connect(demo_db)
    last_of_first = max(r["at"] for r in db.query("SELECT at FROM plays WHERE call_sid = ?", [first["call_sid"]]))
    first_of_second = min(r["at"] for r in db.query("SELECT at FROM plays WHERE call_sid = ?", [second["call_sid"]]))
    assert first_of_second > last_of_first
    assert first["call_sid"] != second["call_sid"]
    assert first["summary"]["promos"] != second["summary"]["promos"]


def test_table_output(runner, demo_db):
    result = runner.invoke(main, ["simulate", "--from", "+1 555 555 0100", "--minutes", "10"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("call CA") and "from +15555550100 (customer C-1001), queue support" in lines[0]
    assert lines[1].split() == ["at", "segment", "kind", "duration", "reason"]
    assert re.match(r"\s+0:00\s+outage-northeast\s+notice\s+11s\s+notice outage-northeast", lines[2])
    assert "promo skipped: open issue CASE-1042 (high)" in result.output
    assert lines[-1].startswith(f"{len(lines) - 3} answers over")


def test_queue_option_and_missing_flow_show_as_fallback(runner, demo_db):
    result = runner.invoke(main, ["simulate", "--from", "+15555550100", "--minutes", "3", "--queue", "sales", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["summary"]["queue"] == "sales"
    assert {p["segment_id"] for p in data["timeline"]} == {"fallback-music"}
    assert data["summary"]["fallback_answers"] == len(data["timeline"])
    assert "warning: " in result.stderr and "no hold flow for queue 'sales'" in result.stderr


def test_without_a_twilio_token_simulate_signs_with_an_ephemeral_one(runner, demo_db, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    result = run_json(runner, "--from", "+15555550101", "--minutes", "5")
    assert result["timeline"]


def test_an_app_can_be_the_target(app, demo_db):
    result = simulate_call(app, caller_phone=NIA, minutes=5)
    assert result["summary"]["customer_id"] == "C-1003"


def test_unknown_caller_hears_no_promo(demo_db):
    result = simulate_call(demo_db, caller_phone="+15555559999", minutes=45)
    assert result["summary"]["promo_plays"] == 0 and result["summary"]["customer_id"] is None


@pytest.mark.parametrize("adhoc, never", [
    ({"open_issue_severity": "high"}, {"galaxy-upgrade", "fiber-offer"}),
    ({"products": ["GALAXY S7"]}, {"galaxy-upgrade"}),
    ({"marketing_opt_out": True}, {"galaxy-upgrade", "fiber-offer"}),
])
def test_adhoc_callers_run_on_a_scratch_copy(demo_db, adhoc, never):
    db = connect(demo_db)
    plays_before, customers_before = db["plays"].count, list(db["customers"].rows)

    result = simulate_call(demo_db, adhoc_caller=adhoc, minutes=45)

    assert not never & {p["segment_id"] for p in result["timeline"]}
    assert result["timeline"][0]["segment_id"] == "outage-northeast"
    assert (db["plays"].count, list(db["customers"].rows)) == (plays_before, customers_before)


def test_adhoc_caller_without_blocks_hears_a_promo(demo_db):
    result = simulate_call(demo_db, adhoc_caller=AdhocCaller(), minutes=45)
    assert result["summary"]["promo_plays"] == 1


@pytest.mark.parametrize("args, message", [
    (["--from", "not a phone"], "Error: 'not a phone' is not a valid phone number"),
    (["--from", "+15555550100", "--minutes", "0"], "Invalid value for '--minutes'"),
])
def test_bad_input_is_one_clear_line(runner, demo_db, args, message):
    result = runner.invoke(main, ["simulate", *args])
    assert result.exit_code != 0 and message in result.output


def test_missing_database(runner, tmp_path):
    result = runner.invoke(main, ["simulate", "--from", "+15555550100", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert "database file does not exist" in result.output
    assert not (tmp_path / "none.db").exists()


def test_library_errors(demo_db):
    with pytest.raises(SimulateError, match="give caller_phone or adhoc_caller"):
        simulate_call(demo_db)
    with pytest.raises(SimulateError, match="minutes must be above 0"):
        simulate_call(demo_db, caller_phone=DANA, minutes=0)

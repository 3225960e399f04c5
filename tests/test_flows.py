"""Hold flow files: parsing, every validation error named, and loading as one transaction."""
import json
from datetime import timezone

import pytest

from app.cli import main
from app.storage.connect import connect
from app.core.flows import Flow, FlowError, parse_flow, read_flow_file
from app.storage.catalog import load_catalog, save_catalog
from app.core.policy import Segment

from test_personas import DEMO_DIR

DEMO_FLOW = DEMO_DIR / "flows.toml"
QUEUE = """
[queue.support]
music = ["https://cdn.example.com/calm-1.mp3"]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(FlowError) as raised:
        parse_flow(text)
    return raised.value.errors


def segment(**keys) -> str:
    """A [[segment]] table from keyword values (TOML-quoted as JSON, which TOML accepts for these)."""
    lines = ["[[segment]]"] + [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


GOOD_PROMO = dict(id="galaxy-upgrade", kind="promo", play="https://cdn.example.com/galaxy.mp3", duration_s=14,
                  products=["Galaxy S7"], queues=["support"])


def test_demo_flow_parses_with_every_key():
    flow = read_flow_file(DEMO_FLOW)

    queue = flow.queues["support"]
    assert len(queue.music) == 3 and queue.music_chunk_s == 45 and queue.promos_per_call_max == 1
    assert queue.promo_share_max == 0.10 and queue.promo_repeat_days == 7
    assert queue.reassurance_every_s == 300 and queue.reassurance_per_call_max == 2
    assert queue.wait_announce_every_s == 180 and queue.suppress_min_severity == "low"
    assert [s.id for s in flow.segments] == ["outage-northeast", "galaxy-upgrade", "fiber-offer",
                                            "thanks-patience", "tip-online-billing"]
    notice = flow.segments[0]
    assert notice.active_from.tzinfo == timezone.utc and notice.queues == ("support",)
    assert flow.segments[2].queues == ()  # absent: every queue


def test_unquoted_toml_datetimes_and_quoted_ones_both_work():
    flow = parse_flow(QUEUE + segment(**GOOD_PROMO, active_from="2026-11-01T00:00:00Z")
                      + "active_until = 2026-12-01T00:00:00Z\n")
    promo = flow.segments[0]
    assert (promo.active_from.month, promo.active_until.month) == (11, 12)


@pytest.mark.parametrize("text, expected", [
    (QUEUE + segment(**{**GOOD_PROMO, "kind": "promoo"}),
     "segment 'galaxy-upgrade': kind 'promoo' is not one of music|promo|reassurance|notice|tip"),
    (QUEUE + segment(**{k: v for k, v in GOOD_PROMO.items() if k != "duration_s"}),
     "segment 'galaxy-upgrade': duration_s is missing"),
    (QUEUE + segment(**GOOD_PROMO, say="Buy it"),
     "segment 'galaxy-upgrade': needs exactly one of play (an audio URL) or say (text to speak)"),
    (QUEUE + segment(**{**GOOD_PROMO, "duration_s": 0}),
     "segment 'galaxy-upgrade': duration_s must be a number above 0, got 0 (int)"),
    (QUEUE + segment(**{**GOOD_PROMO, "play": "galaxy.mp3"}),
     "segment 'galaxy-upgrade': play must be an http(s) URL Twilio can fetch, got 'galaxy.mp3' (str)"),
    (QUEUE + segment(**{**GOOD_PROMO, "queues": ["sales"]}),
     "segment 'galaxy-upgrade': queues names 'sales', which has no [queue.sales] table"),
    (QUEUE + segment(**GOOD_PROMO, duraton_s=3),
     "segment 'galaxy-upgrade': unknown key 'duraton_s' (did you mean 'duration_s'?)"),
    (QUEUE + segment(**GOOD_PROMO, active_from="2026-11-01T00:00:00"),
     "segment 'galaxy-upgrade': active_from 2026-11-01T00:00:00 needs a time zone offset, e.g. 2026-11-01T00:00:00Z"),
    (QUEUE + segment(**GOOD_PROMO, active_from="2026-12-01T00:00:00Z", active_until="2026-11-01T00:00:00Z"),
     "segment 'galaxy-upgrade': active_from 2026-12-01T00:00:00+00:00 is not before active_until 2026-11-01T00:00:00+00:00"),
    (QUEUE + segment(**GOOD_PROMO) + segment(**GOOD_PROMO),
     "segment 'galaxy-upgrade': id is used by more than one segment"),
    (QUEUE + segment(kind="tip", say="Pay online", duration_s=5),
     "segment #1: id is missing"),
    (QUEUE + segment(id="music-1", kind="music", play="https://cdn.example.com/x.mp3", duration_s=5),
     "segment 'music-1': id 'music-1' is reserved for what holdguard plays itself"),
    (QUEUE + segment(id="calm", kind="music", say="la la", duration_s=5),
     "segment 'calm': a music segment needs play = URL, not say"),
    (QUEUE + "promo_share_max = 1.5\n", "queue 'support': promo_share_max must be a number from 0 to 1, got 1.5 (float)"),
    (QUEUE + "promos_per_call_max = 1.5\n",
     "queue 'support': promos_per_call_max must be a whole number at least 0, got 1.5 (float)"),
    (QUEUE + "suppress_min_severity = \"urgent\"\n",
     "queue 'support': suppress_min_severity 'urgent' is not one of low|medium|high|critical"),
    (QUEUE + "music_chunk_s = 0\n", "queue 'support': music_chunk_s must be a number above 0, got 0 (int)"),
    (QUEUE + "musik_chunk_s = 45\n", "queue 'support': unknown key 'musik_chunk_s' (did you mean 'music_chunk_s'?)"),
    ("[queue.support]\nmusic_chunk_s = 45\n", "queue 'support': music is missing (a list of music URLs played in rotation)"),
    ("[queue.support]\nmusic = []\n", "queue 'support': music must list at least one URL"),
    (segment(**{**GOOD_PROMO, "queues": []}), "flow: no [queue.NAME] table (a flow needs at least one queue)"),
    (QUEUE + "[[segments]]\nid = 'x'\n", "flow: unknown key 'segments' (did you mean 'segment'?)"),
])
def test_each_error_names_the_key_or_segment_and_the_problem(text, expected):
    assert expected in errors_of(text)


def test_toml_syntax_errors_give_the_line():
    (error,) = errors_of("[queue.support]\nmusic = [\"a\"]\nmusic_chunk_s = = 4\n")
    assert error.startswith("not valid TOML:") and "line" in error


def test_all_errors_are_collected_not_just_the_first():
    text = (QUEUE + "promo_share_max = 2\n" + segment(**{**GOOD_PROMO, "kind": "ad"})
            + segment(id="thanks", kind="reassurance", duration_s=-1))
    errors = errors_of(text)
    assert len(errors) == 4
    assert [e.split(":")[0] for e in errors] == ["queue 'support'", "segment 'galaxy-upgrade'",
                                                 "segment 'thanks'", "segment 'thanks'"]


def test_check_cli_reports_ok(runner):
    result = runner.invoke(main, ["flows", "check", str(DEMO_FLOW)])
    assert result.exit_code == 0, result.output
    assert "ok, 1 queue(s) (support), 5 segment(s)" in result.output


def test_check_cli_lists_errors_prefixed_with_the_file_and_exits_1(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(QUEUE + segment(**{**GOOD_PROMO, "kind": "promoo"}) + segment(id="x", kind="tip", duration_s=3))
    result = runner.invoke(main, ["flows", "check", str(bad)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{bad}: segment 'galaxy-upgrade': kind 'promoo' is not one of music|promo|reassurance|notice|tip",
        f"{bad}: segment 'x': needs exactly one of play (an audio URL) or say (text to speak)",
    ]


def test_check_cli_never_writes(runner, tmp_path, monkeypatch):
    unused_db = tmp_path / "never.db"
    monkeypatch.setenv("HOLDGUARD_DB", str(unused_db))
    assert runner.invoke(main, ["flows", "check", str(DEMO_FLOW)]).exit_code == 0
    assert not unused_db.exists()


def test_check_cli_unreadable_file(runner, tmp_path):
    result = runner.invoke(main, ["flows", "check", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert result.output.strip() == f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory"


def catalog_rows(db_path):
    db = connect(db_path)
    return list(db["queues"].rows), list(db["segments"].rows)


def test_load_cli_writes_the_catalog(runner, db_path):
    result = runner.invoke(main, ["flows", "load", str(DEMO_FLOW)])
    assert result.exit_code == 0, result.output

    queues, segments = catalog_rows(db_path)
    assert [q["name"] for q in queues] == ["support"]
    assert json.loads(queues[0]["music"])[0].endswith("Borghestral.mp3")
    galaxy = next(s for s in segments if s["id"] == "galaxy-upgrade")
    assert json.loads(galaxy["products"]) == ["Galaxy S7"] and json.loads(galaxy["queues"]) == ["support"]
    notice = next(s for s in segments if s["id"] == "outage-northeast")
    assert notice["active_from"] == "2026-01-01T00:00:00Z"
    assert load_catalog(connect(db_path)) == read_flow_file(DEMO_FLOW)


def test_load_replaces_the_whole_catalog(runner, db_path, tmp_path):
    runner.invoke(main, ["flows", "load", str(DEMO_FLOW)])
    smaller = tmp_path / "small.toml"
    smaller.write_text(QUEUE.replace("support", "sales") + segment(id="t", kind="tip", say="Hi", duration_s=2))
    assert runner.invoke(main, ["flows", "load", str(smaller)]).exit_code == 0

    queues, segments = catalog_rows(db_path)
    assert [q["name"] for q in queues] == ["sales"] and [s["id"] for s in segments] == ["t"]


def test_an_invalid_file_leaves_the_old_catalog(runner, db_path, tmp_path):
    runner.invoke(main, ["flows", "load", str(DEMO_FLOW)])
    before = catalog_rows(db_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(QUEUE + segment(**{**GOOD_PROMO, "kind": "promoo"}))

    result = runner.invoke(main, ["flows", "load", str(bad)])
    assert result.exit_code == 1 and "kind 'promoo'" in result.output
    assert catalog_rows(db_path) == before


def test_a_failed_write_rolls_back_the_whole_replacement(db_path):
    db = connect(db_path)
    save_catalog(db, read_flow_file(DEMO_FLOW))
    before = catalog_rows(db_path)
    broken = read_flow_file(DEMO_FLOW)
    # Two segments with one id get past no validation; the database refuses the second mid-write.
    twin = Segment("dup", "tip", 3, say="x")
    broken = Flow({"other": broken.queues["support"]}, [twin, twin])

    with pytest.raises(Exception):
        save_catalog(db, broken)
    assert catalog_rows(db_path) == before


def test_show_cli(runner, db_path):
    runner.invoke(main, ["flows", "load", str(DEMO_FLOW)])
    result = runner.invoke(main, ["flows", "show"])
    assert result.exit_code == 0
    assert "[queue.support] 3 music URL(s)" in result.output
    assert "galaxy-upgrade" in result.output and "2026-01-01T00:00:00Z" in result.output


def test_show_cli_without_a_flow(runner, db_path):
    result = runner.invoke(main, ["flows", "show"])
    assert result.exit_code == 1 and "no hold flow loaded" in result.output


@pytest.mark.sqlite_only  # a SQLite file's own lock
def test_load_into_a_locked_database_is_a_clear_error(runner, db_path):
    import sqlite3
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = runner.invoke(main, ["flows", "load", str(DEMO_FLOW)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "could not replace the catalog, nothing changed (database is locked)" in result.output
    assert catalog_rows(db_path) == ([], [])

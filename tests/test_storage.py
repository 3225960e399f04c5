"""The storage layer under real use: writers that wait instead of failing while the webhook serves
calls, one answer per wait request, an old database migrated, hot queries on their indexes, and
one product identity for the webhook and the audit."""
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from app.core.audit import Context, Message
from app.core.flows import parse_flow
from app.core.policy import Caller, CallSoFar, Play, QueueData, decide
from app.core.products import ProductNames, product_key, same_product
from app.storage.catalog import save_catalog
from app.storage.connect import connect
from app.storage.schema import MIGRATIONS, migrate, open_database
from audits.rules import promo_for_owned_product
from conftest import API_TOKEN, sign
from test_webhook import WAIT, demo, wait_params  # noqa: F401 - fixture

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
NIA = "+15555550102"


# ---- writers under webhook load -----------------------------------------------------------------

class WaitLoad:
    """A thread posting signed /twilio/wait requests at about `rate` per second, each a new request
    (its own QueueTime) of one of a few calls, counting the answers."""

    def __init__(self, app, rate: float = 60.0):
        self.client, self.interval_s = app.test_client(), 1.0 / rate
        self.answers, self.errors, self.stop = 0, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        queue_time = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            queue_time += 1
            params = {**wait_params(queue_time), "CallSid": "CA" + f"{queue_time % 7:032x}"}
            response = self.client.post(WAIT, data=params, headers={"X-Twilio-Signature": sign(WAIT, params)})
            if response.status_code != 200 or b"fallback" in response.data:
                self.errors.append(response.status_code)
            self.answers += 1
            next_at += self.interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.seconds = time.monotonic() - self.started


def test_a_customer_import_completes_while_the_webhook_serves_calls(demo, db_path, tmp_path):
    customers = [{"customer_id": f"L-{n:05d}", "phone": f"+1555{n:07d}", "name": f"Load {n}",
                  "products": ["Galaxy S7"] if n % 2 else [],
                  "open_issues": [{"id": f"LC-{n}", "severity": "high"}] if n % 3 == 0 else []}
                 for n in range(3000)]
    crm_file = tmp_path / "crm.json"
    crm_file.write_text(json.dumps(customers))
    with WaitLoad(demo) as load:
        time.sleep(0.3)  # calls already on hold when the import starts
        imported = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "customers", "import",
                                   str(crm_file), "--db", str(db_path)], capture_output=True, text=True,
                                  cwd=ROOT, timeout=600)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3000, updated 0, rejected 0" in imported.stdout
    db = connect(db_path)
    assert db.execute("select count(*) from customers where customer_id like 'L-%'").fetchone()[0] == 3000
    assert db.execute("select count(*) from issues where id like 'LC-%'").fetchone()[0] == 1000
    assert load.answers >= 20 and load.errors == []  # the webhook answered throughout, never fallback
    assert db.execute("select count(*) from plays").fetchone()[0] == load.answers


def test_crm_api_writes_under_webhook_load_are_never_refused(demo, db_path):
    api = demo.test_client()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    statuses = []
    with WaitLoad(demo):
        for n in range(150):
            statuses.append(api.put(f"/api/customers/W-{n}", json={"phone": f"+1666{n:07d}", "name": f"W {n}"},
                                    headers=headers).status_code)
            statuses.append(api.post(f"/api/customers/W-{n}/issues", json={"id": f"WI-{n}", "severity": "high"},
                                     headers=headers).status_code)
    assert statuses.count(201) == 300, sorted(set(statuses))
    db = connect(db_path)
    assert db.execute("select count(*) from issues where id like 'WI-%' and closed_at is null").fetchone()[0] == 150


@pytest.mark.sqlite_only
def test_a_write_waits_for_another_writer_instead_of_failing(db_path):
    """BEGIN IMMEDIATE: a read-then-write transaction waits out a lock another connection holds."""
    holder, writer = connect(db_path), connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("insert into queues (name, music) values ('held', '[]')")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    from app.storage.connect import transaction
    started = time.monotonic()
    with transaction(writer):
        assert writer.execute("select count(*) from queues").fetchone()[0] == 1  # read first, after the wait
        writer.execute("insert into queues (name, music) values ('second', '[]')")
    assert time.monotonic() - started >= 0.2
    assert writer.execute("select count(*) from queues").fetchone()[0] == 2


# ---- one answer per wait request ----------------------------------------------------------------

def test_a_retried_wait_request_gets_the_same_answer_and_one_row(demo, db_path, twilio_post):
    answers = [twilio_post(WAIT, wait_params(t)).data for t in (0, 45, 90, 135)]
    retried = twilio_post(WAIT, wait_params(135))  # Twilio's retry after a worker died mid-response
    assert retried.status_code == 200 and retried.data == answers[-1]
    other_worker = demo.test_client()  # another process's connection finds the same row
    again = other_worker.post(WAIT, data=wait_params(90), headers={"X-Twilio-Signature": sign(WAIT, wait_params(90))})
    assert again.data == answers[2]
    db = connect(db_path)
    rows = db.execute("select queue_time, count(*) from plays group by queue_time order by 1").fetchall()
    assert rows == [("0", 1), ("135", 1), ("45", 1), ("90", 1)]


def test_the_unique_request_key_is_enforced_by_the_database(db_path):
    db = connect(db_path)
    row = {"call_sid": "CA1", "queue_time": "30", "segment_id": "music-1", "kind": "music", "reason": "x"}
    db["plays"].insert(row)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        db["plays"].insert(row)


# ---- an old database ----------------------------------------------------------------------------

OLD_SCHEMA = """
create table customers (customer_id text primary key, phone_e164 text, name text, products text,
                        marketing_opt_out integer, updated_at text);
create table issues (id text primary key, customer_id text, severity text, summary text, opened_at text,
                     closed_at text, updated_at text);
create table queues (name text primary key, music text, music_chunk_s float, promos_per_call_max integer,
                     promo_share_max float, promo_repeat_days float, reassurance_every_s float,
                     reassurance_per_call_max integer, wait_announce_every_s float, suppress_min_severity text);
create table segments (id text primary key, kind text, play text, say text, duration_s float, products text,
                       queues text, active_from text, active_until text);
create table calls (call_sid text primary key, caller text, customer_id text, queue text, started_at text,
                    ended_at text, queue_result text, queue_time_s float, last_position_told integer);
create table plays (id integer primary key, call_sid text, caller text, customer_id text, queue text,
                    segment_id text, kind text, at text, at_s float, duration_s float, reason text);
insert into customers values ('C-1', '+15555550102', 'Nia', '[]', 0, '2026-11-20T09:12:00Z');
insert into issues values ('I-1', 'C-1', 'high', 'x', '2026-11-20T10:12:00+01:00', null, '2026-11-20T09:12:00Z');
insert into calls values ('CA1', '+15555550102', 'C-1', 'support', '2026-11-24T08:37:30.251Z', null, null, null, null);
insert into plays values (1, 'CA1', '+15555550102', 'C-1', 'support', 'music-1', 'music',
                          '2026-11-24T08:37:30.251Z', 0, 45, 'music: the hold has just begun');
insert into plays values (2, 'CA1', '+15555550102', 'C-1', 'support', 'music-1', 'music',
                          'not a time', 45, 45, 'music: promo skipped: open issue I-1 (high)');
insert into plays values (3, 'CA1', '+15555550102', 'C-1', 'support', 'wait-announcement', 'announcement',
                          '2026-11-24T08:39:00Z', 90, 8, 'wait announcement: position 3');
"""


@pytest.mark.sqlite_only  # PostgreSQL databases start at this version (`db copy` migrates the source first)
def test_an_old_database_is_migrated_in_place_keeping_every_row(tmp_path, runner):
    from app.cli import main

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
    for _ in range(2):  # idempotent
        result = runner.invoke(main, ["db", "init", "--db", str(path)])
        assert result.exit_code == 0, result.output
    db = connect(path)
    assert [r[0] for r in db.execute("select version from schema_migrations order by version")] == \
        [version for version, _, _ in MIGRATIONS]
    assert db.execute("select at from plays order by id").fetchall() == \
        [("2026-11-24T08:37:30Z",), (None,), ("2026-11-24T08:39:00Z",)]
    assert [r[0] for r in db.execute("select kind from plays order by id")] == ["music", "music", "wait"]
    assert db["calls"].get("CA1")["started_at"] == "2026-11-24T08:37:30Z"
    assert db["issues"].get("I-1")["opened_at"] == "2026-11-20T09:12:00Z"  # +01:00 -> UTC
    assert {"cause", "queue_time", "play_url", "say_text"} <= set(db["plays"].columns_dict)
    assert db["calls"].get("CA1")["simulated"] == 0 and db["customers"].count == 1


# ---- hot queries use their indexes --------------------------------------------------------------

def plan(db, sql: str, params) -> str:
    """The query plan, one line per step. PostgreSQL would scan the tiny test tables whole whatever
    the indexes: it is asked to avoid that, so the plan shows whether an index could serve."""
    if db.dialect == "postgresql":
        db.execute("SET enable_seqscan = off")
        return " | ".join(row[0] for row in db.execute(f"EXPLAIN {sql}", params).fetchall())
    return " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())


@pytest.mark.parametrize("sql, params, index", [
    ("SELECT segment_id FROM plays WHERE call_sid = ? ORDER BY id", ["CA1"], "plays_request"),
    ("SELECT at FROM plays WHERE caller = ? AND kind = 'promo' AND at >= ? AND call_sid != ? ORDER BY at",
     ["+1", "2026-11-01T00:00:00Z", "CA1"], "idx_plays_caller_kind_at"),
    ("SELECT count(*) FROM plays WHERE segment_id = ? AND at >= ?", ["galaxy-upgrade", "2026-11-01T00:00:00Z"],
     "idx_plays_segment_id_at"),
    ("SELECT queue, count(*) FROM plays WHERE cause IN ('open_issue', 'opt_out') AND at >= ? GROUP BY queue",
     ["2026-11-01T00:00:00Z"], "idx_plays_cause_at"),
    ("SELECT reason FROM plays WHERE call_sid = ? AND queue_time = ?", ["CA1", "30"], "plays_request"),
    ("SELECT count(*) FROM play_skips WHERE segment_id = ?", ["galaxy-upgrade"], "idx_play_skips_segment_id"),
])
def test_hot_queries_use_their_indexes(db_path, sql, params, index):
    steps = plan(connect(db_path), sql, params)
    assert index in steps and "Seq Scan" not in steps


def test_the_play_log_queries_of_the_code_use_indexes(db_path):
    """The queries the webhook and /campaigns run, as written in app.storage.playlog, search no table whole."""
    from app.storage import playlog

    db = connect(db_path)
    statements = []
    for method in ("execute", "query"):
        run = getattr(db, method)
        setattr(db, method, lambda sql, params=(), run=run: statements.append((sql, list(params))) or run(sql, params))
    since = datetime(2026, 11, 1, tzinfo=timezone.utc)
    playlog.load_call(db, "CA1")
    playlog.load_history(db, NIA, "CA1", since)
    playlog.promo_played(db, "galaxy-upgrade", "2026-11-01T00:00:00Z")
    playlog.caller_blocks(db, "2026-11-01T00:00:00Z")
    playlog.logged_answer(db, "CA1", "30")
    checked = [(sql, params) for sql, params in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(checked) >= 6
    for sql, params in checked:
        steps = plan(db, sql, params)
        assert not re.search(r"SCAN (plays|play_skips)\b(?! USING)|Seq Scan on (plays|play_skips)", steps), (sql, steps)


# ---- one product identity -----------------------------------------------------------------------

FLOW = """
[queue.support]
music = ["https://cdn.example.com/a.mp3"]
promo_share_max = 1.0

[[segment]]
id = "galaxy-upgrade"
kind = "promo"
say = "Upgrade to the Galaxy S7."
duration_s = 8
products = ["Galaxy S7"]

[product."Galaxy S7"]
aliases = ["S7", "the Seven"]
"""
# (what the caller owns, what the promo sells, one product?)
VARIANTS = [
    ("Galaxy S7", "Galaxy S7", True),
    ("galaxy  s7", "Galaxy S7", True),
    ("GalaxyS7", "Galaxy S7", True),
    ("Galaxy S-7", "Galaxy S7", True),
    ("Galaxy S seven", "Galaxy S7", True),
    ("GALAXY S SEVEN", "Galaxy S7", True),
    ("S7", "Galaxy S7", True),  # an alias in the flow
    ("the seven", "Galaxy S7", True),  # an alias, case-insensitive
    ("Galaxy S8", "Galaxy S7", False),
    ("Galaxy S", "Galaxy S7", False),
    ("Galaxy S70", "Galaxy S7", False),
    ("Galaxy Tab S7", "Galaxy S7", False),
]


@pytest.mark.parametrize("owned, sold, same", VARIANTS)
def test_webhook_and_audit_agree_on_the_same_product(owned, sold, same):
    flow = parse_flow(FLOW)
    names = flow.product_names()
    now = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    caller = Caller("+15555550102", "C-1", products=(owned,))
    after_music = CallSoFar((Play("music-1", "music", now - timedelta(seconds=60), 0.0, 45.0),))
    decision = decide(caller, after_music, (), flow.queues["support"], flow.segments,
                      QueueData(queue_time_s=60.0), now, names)
    webhook_skips_it = decision.segment.kind != "promo"
    assert webhook_skips_it == same
    if same:
        assert ("galaxy-upgrade", "owned_product") in [tuple(skip) for skip in decision.skipped]

    # The audit, with the same flow's aliases (as audits.context reads them from the database).
    promo = Message("m1", "Upgrade to the Galaxy S7.", [0.0, 60.0], [8.0, 68.0], category="promo", products=[sold])
    context = Context(owned_products=[names.canonical(owned)])
    audit_flags_it = bool(promo_for_owned_product([promo], context))
    assert audit_flags_it == same


def test_product_keys():
    assert product_key("Galaxy S-7") == product_key("galaxy s seven") == "galaxys7"
    assert same_product("Fiber One Gig", "fiber 1 gig")
    assert not same_product("S7", "Galaxy S7")  # only an alias in the flow makes these one
    assert ProductNames.from_pairs([("Galaxy S7", "S7")]).same("S7", "galaxy s-7")


def test_a_flow_alias_naming_two_products_is_refused():
    from app.core.flows import FlowError

    with pytest.raises(FlowError, match="alias 'S7' already names product 'Galaxy S7'"):
        parse_flow(FLOW + '\n[product."Galaxy S8"]\naliases = ["S7"]\n')


def test_a_wait_announcement_logged_by_a_host_not_yet_upgraded_counts_as_wait(db_path):
    """While a fleet upgrades host by host, an old host still logs kind `announcement`: the
    policy on a new host must see it as the wait announcement it is (or it would speak again early)."""
    from app.storage.playlog import load_call

    db = open_database(db_path)
    db["plays"].insert({"call_sid": "CA1", "caller": "+15555550102", "queue": "support",
                        "segment_id": "wait-announcement", "kind": "announcement", "at": "2026-11-24T08:39:00Z",
                        "at_s": 90.0, "duration_s": 8.0, "reason": "wait announcement: position 3"})
    call, _, _ = load_call(db, "CA1")
    assert [play.kind for play in call.plays] == ["wait"]


def test_aliases_are_stored_with_the_catalog(db_path):
    from app.storage.catalog import load_catalog, load_product_names

    db = open_database(db_path)
    save_catalog(db, parse_flow(FLOW))
    assert load_catalog(db).aliases == {"Galaxy S7": ("S7", "the Seven")}
    assert load_product_names(db).canonical("the seven") == "Galaxy S7"
    assert migrate(db) == []  # nothing left to apply

"""Several webhook hosts on one PostgreSQL server, as behind Twilio's url + fallbackUrl: real gunicorn
servers, a real server stopped and started mid-call, and `holdguard db copy` from SQLite.

Each test here starts what it needs: its own PostgreSQL server where it stops one (the run's
shared server stays up), gunicorn processes on free loopback ports.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from app.cli import main
from app.storage.connect import connect
from app.storage.postgres import close_pools
from app.storage.schema import open_database
from conftest import API_TOKEN, AUTH_TOKEN, BASE_URL, TEMPLATE_DB
from pg_server import PostgresServer, free_port
from test_personas import DANA, NIA, insert_demo_customers, load_demo_flow

ROOT = Path(__file__).resolve().parents[1]
WAIT = "/twilio/wait?queue=support"
DEMO_FLOW_PROMOS = {"galaxy-upgrade", "fiber-offer"}


@pytest.fixture
def pg_url(postgres_server):
    """A fresh PostgreSQL database of the run's server, with the demo flow and customers."""
    name = f"hosts_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template=TEMPLATE_DB)
    load_demo_flow(url)
    insert_demo_customers(url)
    yield url
    close_pools(url)
    postgres_server.drop_database(name)


class Host:
    """One webhook host: gunicorn with the holdguard app, on a free port."""

    def __init__(self, db_url: str, workers: int = 1):
        self.port = free_port()
        env = {**os.environ, "HOLDGUARD_DB": db_url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": BASE_URL,
               "HOLDGUARD_API_TOKEN": API_TOKEN}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--timeout", "30",
             "app:create_app()"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).connect()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start: {self.process.stderr.read1().decode()}")

    def post(self, path: str, params: dict) -> tuple[int, bytes, float]:
        """A signed POST as Twilio makes it; (status, body, seconds)."""
        signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + path, params)
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        connection.request("POST", path, body=urlencode(params), headers={
            "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, body, time.monotonic() - started

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def hosts(pg_url):
    started = [Host(pg_url), Host(pg_url)]
    yield started
    for host in started:
        host.stop()


def wait_params(call_sid: str, caller: str, queue_time_s: int) -> dict:
    return {"CallSid": call_sid, "AccountSid": "AC" + "1" * 32, "From": caller, "To": "+15555550000",
            "QueueSid": "QU" + "2" * 32, "QueueTime": str(queue_time_s), "QueuePosition": "5",
            "AvgQueueTime": "600", "CurrentQueueSize": "7"}


def answer(body: bytes) -> tuple[str, str]:
    """(verb, what it plays or says) of a single-verb TwiML answer."""
    verbs = list(ElementTree.fromstring(body))
    assert len(verbs) == 1 and verbs[0].tag in ("Play", "Say"), body
    return verbs[0].tag, verbs[0].text


def hold(call_sid: str, caller: str, minutes: float, host_for, url: str) -> list[dict]:
    """A whole hold, each wait request sent to host_for(n); the call's play rows at the end."""
    queue_time_s, answers = 0, 0
    while queue_time_s < minutes * 60:
        status, body, _ = host_for(answers).post(WAIT, wait_params(call_sid, caller, queue_time_s))
        assert status == 200
        answer(body)
        answers += 1
        rows = plays(url, call_sid)
        assert len(rows) == answers  # every answer logged once, whichever host gave it
        queue_time_s += int(rows[-1]["duration_s"])
    return plays(url, call_sid)


def plays(url: str, call_sid: str) -> list[dict]:
    db = connect(url)
    try:
        return db.query("SELECT * FROM plays WHERE call_sid = ? ORDER BY id", [call_sid])
    finally:
        db.close()


def test_caps_and_the_repeat_window_hold_across_two_hosts(hosts, pg_url):
    alternate = lambda n: hosts[n % 2]  # noqa: E731 - as after a failover, request by request
    first = hold("CA" + "a" * 32, NIA, 30, alternate, pg_url)
    promos = [row["segment_id"] for row in first if row["kind"] == "promo"]
    assert len(promos) == 1 and promos[0] in DEMO_FLOW_PROMOS  # promos_per_call_max = 1, across both hosts
    hold_s = sum(row["duration_s"] for row in first)
    assert sum(row["duration_s"] for row in first if row["kind"] == "promo") / hold_s <= 0.10

    second = hold("CA" + "b" * 32, NIA, 30, alternate, pg_url)  # the next day's call, other host first
    assert promos[0] not in [row["segment_id"] for row in second if row["kind"] == "promo"]
    assert any(row["segment_id"] != promos[0] and row["kind"] == "promo" for row in second) or \
        any(f"promo {promos[0]} skipped: heard" in row["reason"] for row in second)

    mid_issue = hold("CA" + "c" * 32, DANA, 20, alternate, pg_url)
    assert not [row for row in mid_issue if row["kind"] == "promo"]
    assert {row["cause"] for row in mid_issue if row["kind"] == "music" and row["cause"]} <= {"open_issue"}


def test_one_host_killed_mid_call_the_other_serves_the_rest(hosts, pg_url):
    call_sid, answers = "CA" + "d" * 32, 0
    for queue_time_s in range(0, 600, 45):
        if queue_time_s == 270:
            hosts[0].kill()  # the first host dies mid-call; Twilio's fallbackUrl is the second
        host = hosts[0] if queue_time_s < 270 and answers % 2 == 0 else hosts[1]
        status, body, _ = host.post(WAIT, wait_params(call_sid, NIA, queue_time_s))
        assert status == 200
        answer(body)
        answers += 1
    assert len(plays(pg_url, call_sid)) == answers  # play rows = answers given, none twice


def test_a_retry_on_the_other_host_gets_the_same_answer(hosts, pg_url):
    call_sid = "CA" + "e" * 32
    for queue_time_s in (0, 45, 90):
        _, first, _ = hosts[0].post(WAIT, wait_params(call_sid, NIA, queue_time_s))
        _, retried, _ = hosts[1].post(WAIT, wait_params(call_sid, NIA, queue_time_s))
        assert retried == first
    assert len(plays(pg_url, call_sid)) == 3


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own, to stop and start."""
    server = PostgresServer().start()
    url = server.create_database("holdguard")
    open_database(url).close()
    load_demo_flow(url)
    insert_demo_customers(url)
    yield server, url
    close_pools(url)
    server.stop()


def test_postgres_stopped_mid_call_answers_music_then_recovers_by_itself(own_server):
    server, url = own_server
    host = Host(url)
    try:
        call_sid = "CA" + "f" * 32
        for queue_time_s in (0, 45):
            assert host.post(WAIT, wait_params(call_sid, NIA, queue_time_s))[0] == 200
        server.stop_server()
        for queue_time_s in (90, 135, 180):
            status, body, seconds = host.post(WAIT, wait_params(call_sid, NIA, queue_time_s))
            assert status == 200 and answer(body)[0] == "Play"  # music only, failing closed
            assert seconds < 3  # within about a second (connect timeout), with room for a loaded machine
        server.start_again()
        deadline, logged = time.monotonic() + 20, False
        queue_time_s = 225
        while time.monotonic() < deadline and not logged:
            time.sleep(1.1)  # past the breaker's second
            host.post(WAIT, wait_params(call_sid, NIA, queue_time_s))
            logged = any(row["queue_time"] == str(queue_time_s) for row in plays(url, call_sid))
            queue_time_s += 45
        assert logged  # normal, logged answers again without restarting the app
    finally:
        host.stop()


def test_db_copy_from_sqlite_then_simulate_gives_the_same_hold(tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    runner = CliRunner()
    sqlite_db = tmp_path / "start.db"
    open_database(sqlite_db).close()
    load_demo_flow(sqlite_db)
    insert_demo_customers(sqlite_db)
    simulate = ["simulate", "--from", NIA, "--minutes", "20", "--json"]
    assert runner.invoke(main, [*simulate, "--db", str(sqlite_db)]).exit_code == 0  # some play log to move

    name = f"copy_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    target = postgres_server.url(name)
    try:
        copied = runner.invoke(main, ["db", "copy", str(sqlite_db), target])
        assert copied.exit_code == 0, copied.output
        assert "copied" in copied.output and "plays" in copied.output
        source, copy = connect(sqlite_db), connect(target)
        for table in ("customers", "issues", "queues", "segments", "calls", "plays", "play_skips"):
            assert copy[table].count == source[table].count, table
        copy.close()
        refused = runner.invoke(main, ["db", "copy", str(sqlite_db), target])
        assert refused.exit_code == 1 and "--into-non-empty" in refused.output
        again = runner.invoke(main, ["db", "copy", str(sqlite_db), target, "--into-non-empty"])
        assert again.exit_code == 0 and "copied 0 rows" in again.output  # idempotent

        holds = []
        for db in (str(sqlite_db), target):
            result = runner.invoke(main, [*simulate, "--db", db])
            assert result.exit_code == 0, result.output
            holds.append(json.loads(result.output))
        strip = lambda hold: [(p["segment_id"], p["kind"], p["reason"]) for p in hold["timeline"]]  # noqa: E731
        assert strip(holds[0]) == strip(holds[1])  # the second call hears the same on either database
    finally:
        close_pools(target)
        postgres_server.drop_database(name)


def test_the_api_answers_503_with_retry_after_while_postgres_is_down(own_server):
    from app import create_app

    server, url = own_server
    client = create_app({"TESTING": True, "HOLDGUARD_DB": url, "HOLDGUARD_API_TOKEN": API_TOKEN,
                         "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": BASE_URL}).test_client()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert client.get("/api/customers/C-1001", headers=auth).status_code == 200
    server.stop_server()
    down = client.post("/api/customers/C-1001/issues", json={"id": "CASE-7", "severity": "high"}, headers=auth)
    assert down.status_code == 503 and down.headers["Retry-After"] == "1"
    assert "database unavailable" in down.get_json()["error"]
    server.start_again()
    deadline = time.monotonic() + 10
    while (status := client.post("/api/customers/C-1001/issues", json={"id": "CASE-7", "severity": "high"},
                                 headers=auth).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 201  # recovered without a restart

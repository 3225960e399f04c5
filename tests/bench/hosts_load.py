"""Wait-request load over one and two webhook hosts, on SQLite and on PostgreSQL, in one run.

    python tests/bench/hosts_load.py [--calls 50 200 500] [--answers 8] [--workers 2]

For each database (a SQLite file; a private PostgreSQL server started for the run) and each number
of hosts (1 or 2 gunicorn servers on loopback, sharing the database), N simulated calls run at
once, each sending its wait requests one after another to the hosts in turn (as after a
failover), QueueTime growing. 1,000 customers: a third mid-issue, a third owning the promoted
phone. Prints per configuration: requests/s, p50/p99 ms, errors (non-200 or not one <Play>/<Say>),
unsafe promos (a promo to a caller mid-issue or owning its product: must be 0) and play-log rows
against answers given (must be equal). Stops its servers itself, also on Ctrl-C.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from app.core.flows import read_flow_file  # noqa: E402
from app.core.products import same_product  # noqa: E402
from app.storage.catalog import save_catalog  # noqa: E402
from app.storage.connect import connect  # noqa: E402
from app.storage.postgres import close_pools  # noqa: E402
from app.storage.schema import open_database  # noqa: E402
from pg_server import PostgresServer, free_port  # noqa: E402

TOKEN, BASE_URL, WAIT = "bench-token", "https://hold.example.com", "/twilio/wait?queue=support"
CUSTOMERS = 1000


def prepare(url: str) -> None:
    db = open_database(url)
    save_catalog(db, read_flow_file(REPO / "app" / "demo_data" / "flows.toml"))
    db["customers"].insert_all({"customer_id": f"B-{n}", "phone_e164": phone(n), "name": f"Bench {n}",
                                "products": '["Galaxy S7"]' if n % 3 == 1 else "[]", "marketing_opt_out": 0,
                                "updated_at": "2026-11-20T00:00:00Z"} for n in range(CUSTOMERS))
    db["issues"].insert_all({"id": f"BI-{n}", "customer_id": f"B-{n}", "severity": "high", "summary": "bench",
                             "opened_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-20T00:00:00Z"}
                            for n in range(0, CUSTOMERS, 3))
    db.close()


def phone(n: int) -> str:
    return f"+1555{n:07d}"


class Hosts:
    def __init__(self, url: str, count: int, workers: int):
        env = {**os.environ, "HOLDGUARD_DB": url, "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_BASE_URL": BASE_URL}
        self.ports = [free_port() for _ in range(count)]
        self.servers = [subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(workers), "-b",
                                          f"127.0.0.1:{port}", "--timeout", "30", "--log-level", "warning",
                                          "app:create_app()"], cwd=REPO, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for port in self.ports]
        for port in self.ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("gunicorn did not start")
                    time.sleep(0.1)

    def stop(self):
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.wait(timeout=30)


def one_call(call: int, answers: int, ports: list[int], results: list, validator: RequestValidator) -> None:
    caller, call_sid = phone(call % CUSTOMERS), f"CA{uuid.uuid4().hex}"
    for answer in range(answers):
        params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": "+15555550000",
                  "QueueSid": "QU" + "0" * 32, "QueueTime": str(answer * 45), "QueuePosition": "5",
                  "AvgQueueTime": "900", "CurrentQueueSize": "9"}
        headers = {"X-Twilio-Signature": validator.compute_signature(BASE_URL + WAIT, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", ports[answer % len(ports)], timeout=20)
            connection.request("POST", WAIT, body=urlencode(params), headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            ok = response.status == 200 and [v.tag for v in ElementTree.fromstring(body)] in (["Play"], ["Say"])
        except (OSError, ElementTree.ParseError):
            ok = False
        results.append(((time.perf_counter() - started) * 1000, ok))


def unsafe_promos(url: str) -> int:
    db = connect(url)
    try:
        mid_issue = {row["customer_id"] for row in db.query("SELECT customer_id FROM issues WHERE closed_at IS NULL")}
        owned = {row["customer_id"]: row["products"] for row in db.query("SELECT customer_id, products FROM customers")}
        sells = {row["id"]: row["products"] for row in db.query("SELECT id, products FROM segments WHERE kind = 'promo'")}
        unsafe = 0
        for play in db.query("SELECT customer_id, segment_id FROM plays WHERE kind = 'promo'"):
            owns = json.loads(owned.get(play["customer_id"]) or "[]")
            sold = json.loads(sells.get(play["segment_id"]) or "[]")
            unsafe += play["customer_id"] in mid_issue or any(same_product(a, b) for a in owns for b in sold)
        return unsafe
    finally:
        db.close()


def run(url: str, hosts: int, calls: int, answers: int, workers: int) -> dict:
    prepare(url)
    servers = Hosts(url, hosts, workers)
    results: list = []
    validator = RequestValidator(TOKEN)
    try:
        warm_up: list = []  # each worker's first requests load the app: not what is measured
        for port in servers.ports:
            for _ in range(4 * workers):
                one_call(CUSTOMERS - 1, 1, [port], warm_up, validator)
        threads = [threading.Thread(target=one_call, args=(n, answers, servers.ports, results, validator))
                   for n in range(calls)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        servers.stop()
    db = connect(url)
    rows = db.execute("SELECT count(*) FROM plays WHERE caller != ?", [phone(CUSTOMERS - 1)]).fetchone()[0]
    db.close()
    times = sorted(ms for ms, _ in results)
    return {"requests/s": len(results) / seconds, "p50": times[len(times) // 2],
            "p99": times[min(len(times) - 1, int(0.99 * len(times)))],
            "errors": sum(not ok for _, ok in results), "unsafe": unsafe_promos(url), "rows": rows,
            "answers": sum(ok for _, ok in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--answers", type=int, default=8, help="wait requests per call")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per host")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="holdguard-bench-"))
    server = PostgresServer().start()
    print(f"{os.cpu_count()} CPUs, gunicorn -w {args.workers} per host, {args.answers} wait requests per call, "
          f"{CUSTOMERS} customers")
    print(f"{'database':<11} {'hosts':>5} {'calls':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} "
          f"{'unsafe':>6} {'rows':>6} {'answers':>7}")
    try:
        for database in ("sqlite", "postgresql"):
            for hosts in (1, 2):
                for calls in args.calls:
                    name = f"bench_{uuid.uuid4().hex[:8]}"
                    url = str(folder / f"{name}.db") if database == "sqlite" else server.create_database(name)
                    result = run(url, hosts, calls, args.answers, args.workers)
                    if database == "postgresql":
                        close_pools(url)
                    print(f"{database:<11} {hosts:>5} {calls:>5} {result['requests/s']:>7.0f} {result['p50']:>7.1f} "
                          f"{result['p99']:>8.1f} {result['errors']:>6} {result['unsafe']:>6} {result['rows']:>6} "
                          f"{result['answers']:>7}", flush=True)
    finally:
        close_pools()
        server.stop()


if __name__ == "__main__":
    main()

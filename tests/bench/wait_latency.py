"""Wait-URL latency under gunicorn, against a bare static-TwiML route in the same server and run.

    python tests/bench/wait_latency.py [--requests 2000] [--max-seconds 120] [--workers 2]

Starts gunicorn on a free loopback port with the holdguard app on a temporary
database (demo flow and demo customers) plus one bench-only route that returns
fixed TwiML without signature check or database. Sends the same signed Twilio
POST to each route, one request at a time, alternating the routes so both see
the same machine noise, over many simulated calls and callers. Prints p50/p99 of each and the p99 ratio (target:
at most 1.5x). Stops its server itself, also on Ctrl-C.
"""
import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parents[2]
STATIC_PATH = "/bench/static-twiml"
WAIT_PATH = "/twilio/wait?queue=support"
CALLERS = ["+15555550100", "+15555550101", "+15555550102", "+15555550103", "+15555559999"]
ANSWERS_PER_CALL = 60  # about 45 minutes of hold
P99_TARGET_RATIO = 1.5


def bench_app():
    """The gunicorn entry point: holdguard plus the bare static-TwiML baseline route."""
    from flask import Response
    from twilio.twiml.voice_response import VoiceResponse

    from app import create_app

    static = VoiceResponse()
    static.play("http://com.twilio.sounds.music.s3.amazonaws.com/ClockworkWaltz.mp3")
    static_twiml = str(static)
    app = create_app()
    app.add_url_rule(STATIC_PATH, "bench_static", lambda: Response(static_twiml, mimetype="text/xml"),
                     methods=["POST"])
    return app


def prepare_db(db_path: Path) -> None:
    """A database with the demo flow and the demo customers."""
    from app.storage.crm import save_caller
    from app.core.times import format_utc
    from app.storage.connect import connect
    from app.storage.schema import migrate as init_schema
    from app.core.flows import read_flow_file
    from app.storage.catalog import save_catalog
    from app.core.phones import to_e164
    from app.core.policy import Caller, Issue

    demo = REPO / "app" / "demo_data"
    db = connect(db_path)
    init_schema(db)
    save_catalog(db, read_flow_file(demo / "flows.toml"))
    for row in json.loads((demo / "customers.json").read_text()):
        issues = tuple(Issue(i["id"], i["severity"], i["summary"]) for i in row["open_issues"])
        save_caller(db, Caller(to_e164(row["phone"]), row["customer_id"], row["name"], tuple(row["products"]),
                               issues, row["marketing_opt_out"]), format_utc(datetime.now(timezone.utc)))
    db.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, server: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not listen on port {port} within {timeout_s:.0f} s")


def post_ms(port: int, path: str, body: str, headers: dict) -> tuple[float, int, bytes]:
    """One POST on a fresh connection (as Twilio makes them): milliseconds, status, body."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return (time.perf_counter() - started) * 1000, response.status, data


class WaitRequests:
    """Signed Twilio wait requests over many calls: QueueTime grows, QueuePosition falls."""

    def __init__(self, base_url: str, token: str):
        self.base_url, self.validator = base_url, RequestValidator(token)
        self.count = 0

    def next(self) -> tuple[str, dict]:
        call, answer = divmod(self.count, ANSWERS_PER_CALL)
        self.count += 1
        params = {"CallSid": f"CA{call:032x}", "AccountSid": "AC" + "0" * 32, "From": CALLERS[call % len(CALLERS)],
                  "To": "+15555550000", "CallStatus": "in-progress", "QueueSid": "QU" + "0" * 32,
                  "QueueTime": str(answer * 45), "QueuePosition": str(max(1, 12 - answer // 5)),
                  "AvgQueueTime": "1500", "CurrentQueueSize": "14"}
        signature = self.validator.compute_signature(self.base_url + WAIT_PATH, params)
        body = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in params.items())
        return body, {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


def percentile(sorted_ms: list[float], fraction: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(fraction * len(sorted_ms)))]


def measure(port: int, wait_requests: WaitRequests, count: int, max_seconds: float) -> tuple[list, list]:
    static_ms, wait_ms = [], []
    deadline = time.monotonic() + max_seconds
    for _ in range(count):
        if time.monotonic() > deadline:
            print(f"stopped after {max_seconds:.0f} s", file=sys.stderr)
            break
        body, headers = wait_requests.next()
        # The same bytes to both routes: the baseline differs only in what it does with them.
        ms, status, _ = post_ms(port, STATIC_PATH, body, headers)
        assert status == 200, f"static route answered {status}"
        static_ms.append(ms)
        ms, status, data = post_ms(port, WAIT_PATH, body, headers)
        assert status == 200 and (b"<Play>" in data or b"<Say>" in data), f"wait answered {status}: {data[:200]}"
        wait_ms.append(ms)
    return static_ms, wait_ms


def fallback_answers(db_path: Path) -> int:
    import sqlite3
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT count(*) FROM plays WHERE reason LIKE 'fallback%'").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per route")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per route first")
    parser.add_argument("--max-seconds", type=float, default=120, help="stop measuring after this long")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (production: 2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="holdguard-bench-") as scratch:
        db_path = Path(scratch) / "bench.db"
        prepare_db(db_path)
        port, token = free_port(), secrets.token_hex(16)
        base_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": token, "PUBLIC_BASE_URL": base_url,
               "HOLDGUARD_QUEUE": "support", "PYTHONPATH": f"{REPO}{os.pathsep}{Path(__file__).parent}"}
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "wait_latency:bench_app()"], env=env, cwd=scratch)
        try:
            wait_until_listening(port, server)
            wait_requests = WaitRequests(base_url, token)
            measure(port, wait_requests, args.warmup, args.max_seconds)
            static_ms, wait_ms = measure(port, wait_requests, args.requests, args.max_seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        fallbacks = fallback_answers(db_path)
        wal = db_path.with_name(db_path.name + "-wal")
        wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0

    static_ms.sort()
    wait_ms.sort()
    print(f"gunicorn -w {args.workers}, loopback, sequential POSTs on fresh connections, "
          f"{len(wait_ms)} per route after {args.warmup} warm-up, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'route':<28} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, samples in (("static TwiML (baseline)", static_ms), ("/twilio/wait (holdguard)", wait_ms)):
        print(f"{name:<28} {percentile(samples, 0.50):>8.2f} {percentile(samples, 0.90):>8.2f} "
              f"{percentile(samples, 0.99):>8.2f} {samples[-1]:>8.2f}")
    ratio = percentile(wait_ms, 0.99) / percentile(static_ms, 0.99)
    verdict = "within" if ratio <= P99_TARGET_RATIO else "OVER"
    print(f"p99 ratio wait/static: {ratio:.2f}x ({verdict} the {P99_TARGET_RATIO}x target)")
    print(f"fallback answers during the run: {fallbacks} (0 means every answer went through the policy); "
          f"WAL {wal_mb:.1f} MB at the end (checkpointed in the background)")


if __name__ == "__main__":
    main()

"""Reliability under load and faults: N calls on hold at once against gunicorn, phase by phase.

    python tests/bench/reliability.py [--calls 50 200 500] [--answers 12] [--phase-seconds 10] [--workers 2]

For each number of concurrent calls and each phase: a fresh copy of a database with the demo flow
and the demo customers, a fresh gunicorn (`-w 2`, loopback, a free port), and for --phase-seconds
N calls on hold at once, each asking for its next answer as soon as the last one came (hold time
compressed: QueueTime advances by what was played), signed as Twilio signs; a call that has had
--answers answers hangs up and a new one (a new CallSid) takes its place. Callers rotate over the
demo customers (mid-issue, owns the Galaxy S7, eligible, opted out) and an unknown number. Phases:

  normal   nothing wrong
  locked   another connection holds the database's write lock for the whole phase
  deleted  the database file and its -wal/-shm deleted after the workers connected
  full     the database on a small tmpfs filled to the last byte after the workers connected
           (mounting needs root; skipped with the reason otherwise)
  killed   one gunicorn worker SIGKILLed every KILL_EVERY_S (the master starts another)

Prints one table (Markdown): answers (HTTP 200), non-200 (another status, a reset connection, a
response cut short of its Content-Length, or Twilio's 15 s timeout), invalid TwiML (not exactly
one <Play> URL or one <Say> text), unsafe promos (to a caller with an open issue, owning the
product, opted out or unknown, or over the per-call cap or the promo share), promos heard,
play-log rows against answers, p50/p99/max ms of the answers. Bounded: each phase stops after
--phase-seconds (answers in flight are still awaited, at most Twilio's 15 s); servers are
stopped and the tmpfs unmounted on the way out, Ctrl-C included. Loopback only.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wait_latency import REPO, free_port, percentile, prepare_db, wait_until_listening  # noqa: E402

sys.path.insert(0, str(REPO))
from app.core.flows import read_flow_file  # noqa: E402
from app.core.phones import to_e164  # noqa: E402
from app.core.policy import SEVERITY_RANK, spoken_duration_s  # noqa: E402

PHASES = ("normal", "locked", "deleted", "full", "killed")
WAIT_PATH = "/twilio/wait?queue=support"
QUEUE = "support"
UNKNOWN_CALLER = "+15555559999"
TWILIO_TIMEOUT_S = 15.0
WARMUP_CALLS, WARMUP_S = 20, 0.5  # every worker opens its connection before a fault
FULL_FS_BYTES = 8 * 1024 * 1024
KILL_EVERY_S = 0.5
DEMO = REPO / "app" / "demo_data"


# ---- what the callers may hear ----------------------------------------------------------------

@dataclass(frozen=True)
class Expectations:
    """The demo flow and customers, read independently of the server: what each answer is and
    whether a promo may go to a caller."""
    queue: object
    by_text: dict  # say text -> Segment
    music_urls: frozenset
    names: object  # ProductNames
    customers: dict  # e164 -> customer row

    @classmethod
    def load(cls):
        flow = read_flow_file(DEMO / "flows.toml")
        customers = {to_e164(row["phone"]): row for row in json.loads((DEMO / "customers.json").read_text())}
        return cls(flow.queues[QUEUE], {s.say: s for s in flow.segments if s.say},
                   frozenset([*flow.queues[QUEUE].music, *(s.play for s in flow.segments if s.play)]),
                   flow.product_names(), customers)

    def promo_forbidden(self, caller: str, promo) -> str:
        """Why this promo must never reach this caller ("" if it may)."""
        customer = self.customers.get(caller)
        if customer is None:
            return "unknown caller"
        if customer["marketing_opt_out"]:
            return "opted out"
        threshold = SEVERITY_RANK[self.queue.suppress_min_severity]
        if any(SEVERITY_RANK.get(i["severity"], len(SEVERITY_RANK)) >= threshold for i in customer["open_issues"]):
            return "open issue"
        if any(self.names.same(sold, owned) for sold in promo.products for owned in customer["products"]):
            return "owns the product"
        return ""


def read_answer(twiml: bytes, expect: Expectations):
    """(kind, segment or None, seconds it plays) of a valid one-verb answer; None if the TwiML is not."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return None
    if root.tag != "Response" or len(root) != 1 or not (root[0].text or "").strip():
        return None
    verb, text = root[0].tag, root[0].text.strip()
    if verb == "Play":
        return ("music", None, expect.queue.music_chunk_s) if text.startswith("http") else None
    if verb != "Say":
        return None
    segment = expect.by_text.get(text)
    if segment is not None:
        return segment.kind, segment, segment.duration_s
    return "wait", None, spoken_duration_s(text)  # made up by the policy: position / wait


# ---- one phase ------------------------------------------------------------------------------------

@dataclass
class Tally:
    requests: int = 0
    answers: int = 0
    not_ok: int = 0
    invalid: int = 0
    unsafe: int = 0
    promos: int = 0
    latencies_ms: list = field(default_factory=list)
    unsafe_examples: list = field(default_factory=list)
    invalid_examples: list = field(default_factory=list)


async def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    """One POST on a fresh connection, as Twilio makes them: (status, body); status 0 = no answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n{head}\r\n".encode() + body)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    lengths = [line.split(b":", 1)[1] for line in header_lines if line.lower().startswith(b"content-length:")]
    if lengths and len(body) < int(lengths[0]):
        return 0, body  # cut off (the worker died while writing): Twilio gets no usable answer
    return status, body


def form(params: dict) -> bytes:
    from urllib.parse import urlencode
    return urlencode(params).encode()


async def hold_calls(port, base_url, validator, expect, tally, tag, slot, caller, answers, deadline):
    """Calls on hold one after another in one slot until the deadline, `answers` answers each."""
    for sequence in range(1 << 20):
        if time.monotonic() > deadline:
            return
        await hold_call(port, base_url, validator, expect, tally, f"CA{tag:04x}{slot:08x}{sequence:020x}", caller,
                        answers, deadline)


async def hold_call(port, base_url, validator, expect, tally, call_sid, caller, answers, deadline):
    """One call on hold: its answers one after another, each checked."""
    queue_time_s, promo_s, promo_plays = 0.0, 0.0, 0
    for answer in range(answers):
        if time.monotonic() > deadline:
            return
        params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": "+15555550000",
                  "CallStatus": "in-progress", "QueueSid": "QU" + "0" * 32, "QueueTime": str(int(queue_time_s)),
                  "QueuePosition": str(max(1, 20 - answer)), "AvgQueueTime": "900", "CurrentQueueSize": "20"}
        headers = {"X-Twilio-Signature": validator.compute_signature(base_url + WAIT_PATH, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        tally.requests += 1
        started = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(post(port, WAIT_PATH, form(params), headers), TWILIO_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            status, body = 0, b""
        if status != 200:
            tally.not_ok += 1
            queue_time_s += 45.0
            continue
        tally.answers += 1
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        heard = read_answer(body, expect)
        if heard is None:
            tally.invalid += 1
            tally.invalid_examples.append(f"{call_sid}: {body[:120]!r}")
            queue_time_s += 45.0
            continue
        kind, segment, duration_s = heard
        if kind == "promo":
            tally.promos += 1
            why = (expect.promo_forbidden(caller, segment)
                   or ("over the per-call cap" if promo_plays + 1 > expect.queue.promos_per_call_max else "")
                   or ("over the promo share" if (promo_s + duration_s) / (int(queue_time_s) + duration_s)
                       > expect.queue.promo_share_max + 1e-9 else ""))
            if why:
                tally.unsafe += 1
                tally.unsafe_examples.append(f"{call_sid} {caller} {segment.id}: {why}")
            promo_plays, promo_s = promo_plays + 1, promo_s + duration_s
        queue_time_s += duration_s


async def run_calls(port, base_url, token, expect, calls, answers, phase_s, tag, during=None) -> Tally:
    tally, validator = Tally(), RequestValidator(token)
    callers = [*expect.customers, UNKNOWN_CALLER]
    deadline = time.monotonic() + phase_s
    side = asyncio.ensure_future(during(deadline)) if during else None
    await asyncio.gather(*(hold_calls(port, base_url, validator, expect, tally, tag, slot,
                                      callers[slot % len(callers)], answers, deadline) for slot in range(calls)))
    if side is not None:
        side.cancel()
    return tally


class Server:
    """gunicorn on a free loopback port over `db_path`, stopped on exit."""

    def __init__(self, db_path: Path, workers: int, log_path: Path):
        self.port, self.token = free_port(), os.urandom(16).hex()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HOLDGUARD_DB": str(db_path), "TWILIO_AUTH_TOKEN": self.token,
               "PUBLIC_BASE_URL": self.base_url, "HOLDGUARD_QUEUE": QUEUE, "PYTHONPATH": str(REPO)}
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
             "--backlog", "2048", "--log-level", "warning", "app:create_app()"],
            env=env, cwd=db_path.parent, stdout=self.log, stderr=self.log)

    def __enter__(self):
        wait_until_listening(self.port, self.process)
        return self

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def play_rows(db_path: Path, tag: int) -> int | None:
    """Rows the play log holds for this phase's calls; None when there is no database to read."""
    if not db_path.exists():
        return None
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute("SELECT count(*) FROM plays WHERE call_sid LIKE ?", [f"CA{tag:04x}%"]).fetchone()[0]


def hold_write_lock(db_path: Path, release: threading.Event) -> threading.Thread:
    """Another writer (an import, a migration) holding the write lock until `release`."""
    held = threading.Event()

    def holder():
        db = sqlite3.connect(db_path, isolation_level=None, timeout=10)
        db.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait()
        db.rollback()
        db.close()
    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    held.wait(10)
    return thread


def fill_filesystem(folder: Path) -> None:
    """Write a filler file until the filesystem has not one byte left."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        for chunk in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    filler.write(b"\0" * chunk)
            except OSError:
                pass


def mount_small_filesystem(folder: Path) -> str:
    """Mount a FULL_FS_BYTES tmpfs on `folder`; the reason it could not be done, or ""."""
    folder.mkdir()
    if os.geteuid() != 0:
        return "needs root to mount a small filesystem (tmpfs)"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_FS_BYTES}", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    return "" if result.returncode == 0 else f"mount -t tmpfs failed: {result.stderr.strip()}"


def run_phase(phase, calls, args, scratch: Path, pristine: Path, expect, tag) -> dict:
    folder = scratch / f"{phase}-{calls}"
    note = ""
    if phase == "full":
        reason = mount_small_filesystem(folder)
        if reason:
            return {"phase": phase, "calls": calls, "skipped": reason}
    else:
        folder.mkdir()
    db_path = folder / "holdguard.db"
    shutil.copy(pristine, db_path)
    release = threading.Event()
    try:
        with Server(db_path, args.workers, scratch / "gunicorn.log") as server:
            # Warm-up: every worker opens its connection (and the -shm exists) before the fault.
            asyncio.run(run_calls(server.port, server.base_url, server.token, expect, WARMUP_CALLS, 1, WARMUP_S, 0xffff))
            during = None
            if phase == "locked":
                hold_write_lock(db_path, release)
            elif phase == "deleted":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            elif phase == "full":
                fill_filesystem(folder)
            elif phase == "killed":
                kills = []

                async def kill_workers(deadline):
                    while time.monotonic() < deadline:
                        await asyncio.sleep(KILL_EVERY_S)
                        pids = server.workers()
                        if pids:
                            kills.append(pids[len(kills) % len(pids)])
                            os.kill(kills[-1], signal.SIGKILL)
                during = kill_workers
            started = time.monotonic()
            tally = asyncio.run(run_calls(server.port, server.base_url, server.token, expect, calls, args.answers,
                                          args.phase_seconds, tag, during))
            elapsed_s = time.monotonic() - started
            if phase == "killed":
                note = f"{len(kills)} workers killed"
        release.set()
        rows = play_rows(db_path, tag)
    finally:
        release.set()
        if phase == "full":
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    return {"phase": phase, "calls": calls, "tally": tally, "rows": rows, "elapsed_s": elapsed_s, "note": note}


# ---- the table --------------------------------------------------------------------------------------

def table(results: list[dict]) -> str:
    lines = ["| phase | calls | requests | answers | non-200 | invalid TwiML | unsafe promos | promos | "
             "play rows / answers | p50 ms | p99 ms | max ms | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        if "skipped" in result:
            lines.append(f"| {result['phase']} | {result['calls']} | skipped: {result['skipped']} |"
                         + " |" * 10)
            continue
        tally = result["tally"]
        latencies = sorted(tally.latencies_ms) or [float("nan")]
        rows = "no database" if result["rows"] is None else f"{result['rows']} / {tally.answers}"
        lines.append(f"| {result['phase']} | {result['calls']} | {tally.requests} | {tally.answers} | "
                     f"{tally.not_ok} | {tally.invalid} | {tally.unsafe} | {tally.promos} | {rows} | "
                     f"{percentile(latencies, 0.50):.0f} | {percentile(latencies, 0.99):.0f} | "
                     f"{latencies[-1]:.0f} | {result['elapsed_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200, 500], help="calls on hold at once")
    parser.add_argument("--answers", type=int, default=12, help="wait answers per call")
    parser.add_argument("--phase-seconds", type=float, default=10, help="how long each phase runs")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (production: 2)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    args = parser.parse_args()

    expect = Expectations.load()
    results = []
    with tempfile.TemporaryDirectory(prefix="holdguard-reliability-") as scratch:
        scratch = Path(scratch)
        pristine = scratch / "pristine.db"
        prepare_db(pristine)
        for calls in args.calls:
            for tag, phase in enumerate(args.phases, 1):
                result = run_phase(phase, calls, args, scratch, pristine, expect, tag)
                results.append(result)
                tally = result.get("tally")
                print(f"{phase} x {calls}: " + (result.get("skipped") or
                      f"{tally.answers} answers, {tally.not_ok} non-200, {tally.unsafe} unsafe "
                      f"{result['note']}".rstrip()), file=sys.stderr, flush=True)
                for label, examples in (("unsafe", tally.unsafe_examples), ("invalid", tally.invalid_examples)) \
                        if tally else ():
                    for example in examples[:5]:
                        print(f"  {label}: {example}", file=sys.stderr)
    print(f"gunicorn -w {args.workers}, loopback, {args.answers} answers per call back to back, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(table(results))


if __name__ == "__main__":
    main()

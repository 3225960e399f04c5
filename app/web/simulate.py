"""What a caller will hear: one simulated call through the real webhook.

`simulate_call()` builds its own app instance on the same database, then plays
Twilio: a signed POST to /twilio/voice, the wait URL the <Enqueue> answer names
again and again (QueueTime growing, QueuePosition falling, AvgQueueTime,
CurrentQueueSize, a fresh CallSid), and the Enqueue action URL at the end. The
answers, reasons and durations come from the play log the webhook wrote.

Time is simulated: the app instance reads its clock from config HOLDGUARD_CLOCK
(see app.web.twilio_hold.app_now), which here is a `SimClock` that advances by each
answer's duration. A call starts after the caller's last logged play, so
consecutive simulations of one caller are consecutive calls, in order, and the
cross-call promo rule shows.

The app instance also has config HOLDGUARD_SIMULATION, so its calls are logged
with calls.simulated = 1: they hear the caller's real history plus earlier
simulations, but real calls' promo history and the /campaigns digest leave them out.
"""
import math
import secrets
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from flask import Flask
from twilio.request_validator import RequestValidator

from app.core.config import load_config
from app.core.phones import to_e164
from app.core.policy import WAIT_KIND, Caller, Issue
from app.core.times import format_utc, parse_utc
from app.storage import playlog
from app.storage.catalog import load_catalog, save_catalog
from app.storage.connect import DatabaseMissing, open_existing
from app.storage.crm import save_caller
from app.storage.schema import open_database
from app.web import twilio_hold

GAP_BETWEEN_CALLS_S = 60.0
MAX_ANSWERS = 20000  # a runaway guard: 45 minutes take about 70 answers
ADHOC_PHONE = "+15555550199"
ADHOC_CUSTOMER_ID = "ADHOC"


class SimulateError(Exception):
    """The simulation could not run; the message says why."""


@dataclass
class SimClock:
    """A clock the app reads through config HOLDGUARD_CLOCK; the simulation moves it."""
    now_utc: datetime

    def __call__(self) -> datetime:
        return self.now_utc

    def advance(self, seconds: float) -> None:
        self.now_utc += timedelta(seconds=seconds)


@dataclass
class AdhocCaller:
    """A made-up caller (e.g. from a web form): simulated on a scratch copy of the catalog."""
    products: list[str] = field(default_factory=list)
    open_issue_severity: str | None = None  # e.g. "high"; None: no open issue
    marketing_opt_out: bool = False
    name: str = "Ad-hoc caller"
    phone: str = ADHOC_PHONE

    def as_caller(self) -> Caller:
        issues = (Issue("ADHOC-ISSUE", self.open_issue_severity, "ad-hoc open issue"),) \
            if self.open_issue_severity else ()
        return Caller(self.phone, ADHOC_CUSTOMER_ID, self.name, tuple(self.products), issues,
                      self.marketing_opt_out)


def simulate_call(target, *, caller_phone: str | None = None, adhoc_caller: AdhocCaller | dict | None = None,
                  minutes: float = 45.0, queue: str | None = None) -> dict:
    """Simulate one call of `minutes` on hold and return what the caller heard.

    `target` is a Flask app (its config names the database, token, base URL) or a
    database path. Give either `caller_phone` (a customer in that database, or an
    unknown number) or `adhoc_caller` (an AdhocCaller or a dict of its fields: the
    call then runs on a scratch database holding a copy of the catalog, so the real
    customers and play log are untouched). Returns
    {"call_sid", "caller", "timeline": [{"at_s", "segment_id", "kind", "duration_s", "reason"}],
    "summary": {...}}. Raises SimulateError with a one-line reason.
    """
    config = _config_of(target)
    if minutes <= 0:
        raise SimulateError(f"minutes must be above 0, got {minutes}")
    if adhoc_caller is None:
        if not caller_phone:
            raise SimulateError("give caller_phone or adhoc_caller")
        return _simulate(config, caller_phone, minutes, queue)
    if isinstance(adhoc_caller, dict):
        adhoc_caller = AdhocCaller(**adhoc_caller)
    with tempfile.TemporaryDirectory(prefix="holdguard-simulate-") as scratch:
        scratch_db = Path(scratch) / "adhoc.db"
        _copy_catalog_with_caller(config["HOLDGUARD_DB"], scratch_db, adhoc_caller.as_caller())
        try:
            return _simulate({**config, "HOLDGUARD_DB": str(scratch_db)}, adhoc_caller.phone, minutes, queue)
        finally:
            playlog.discard_webhook_db()  # the webhook's connection to the scratch file


def _config_of(target) -> dict:
    if hasattr(target, "config"):
        config = {key: target.config[key] for key in load_config()}
    else:
        config = load_config({"HOLDGUARD_DB": str(target)})
    if not config["TWILIO_AUTH_TOKEN"]:
        # Nothing real is signed here: an ephemeral token for this app instance and its requests.
        config["TWILIO_AUTH_TOKEN"] = secrets.token_hex(16)
    return config


def _copy_catalog_with_caller(source_db: str, scratch_db: Path, caller: Caller) -> None:
    source = _open_existing(source_db)
    try:
        flow = load_catalog(source)
    finally:
        source.close()
    scratch = open_database(scratch_db)
    try:
        save_catalog(scratch, flow)
        save_caller(scratch, caller, format_utc(datetime.now(timezone.utc)))
    finally:
        scratch.close()


def _open_existing(db_path: str):
    try:
        return open_existing(db_path)
    except DatabaseMissing as error:
        raise SimulateError(str(error)) from None


def _call_start(db_path: str, caller_e164: str) -> datetime:
    """Now, or just after this caller's last logged answer if that is later (a previous simulation)."""
    db = _open_existing(db_path)
    try:
        last = playlog.last_play_of(db, caller_e164)
    finally:
        db.close()
    start = datetime.now(timezone.utc)
    if last:
        after_last = parse_utc(last["at"]) + timedelta(seconds=(last["duration_s"] or 0) + GAP_BETWEEN_CALLS_S)
        start = max(start, after_last)
    return start


def webhook_app(config: dict) -> Flask:
    """An app with only the Twilio webhooks, on `config`: what a simulated call talks to."""
    app = Flask("app")
    app.config.update(config)
    app.register_blueprint(twilio_hold.bp)
    return app


class _FakeTwilio:
    """Signs and posts what Twilio would, to one app instance."""

    def __init__(self, app, token: str, base_url: str):
        self.client = app.test_client()
        self.validator = RequestValidator(token)
        self.base_url = base_url.rstrip("/")

    def post(self, url_or_path: str, params: dict) -> ElementTree.Element:
        """POST a signed request; return the parsed TwiML <Response>."""
        path = self._path(url_or_path)
        signature = self.validator.compute_signature(self.base_url + path, params)
        response = self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        if response.status_code != 200:
            raise SimulateError(f"POST {path} answered {response.status_code}")
        return ElementTree.fromstring(response.data)

    def _path(self, url_or_path: str) -> str:
        if not url_or_path.startswith(self.base_url):
            if url_or_path.startswith("http"):
                raise SimulateError(f"the app sent Twilio to {url_or_path}, outside PUBLIC_BASE_URL {self.base_url}")
            return url_or_path
        parts = urlsplit(url_or_path)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def _simulate(config: dict, caller_phone: str, minutes: float, queue: str | None) -> dict:
    try:
        caller_e164 = to_e164(caller_phone, config["HOLDGUARD_DEFAULT_REGION"])
    except ValueError as error:
        raise SimulateError(str(error)) from None
    clock = SimClock(_call_start(config["HOLDGUARD_DB"], caller_e164))
    app = webhook_app({**config, "TESTING": True, "HOLDGUARD_CLOCK": clock, "HOLDGUARD_SIMULATION": True})
    twilio = _FakeTwilio(app, config["TWILIO_AUTH_TOKEN"], config["PUBLIC_BASE_URL"])
    call_sid = "CA" + secrets.token_hex(16)
    call_params = {"CallSid": call_sid, "AccountSid": "AC" + secrets.token_hex(16), "From": caller_e164,
                   "To": "+15555550000", "CallStatus": "in-progress", "Direction": "inbound",
                   "ApiVersion": "2010-04-01"}
    started_at = clock()

    voice_path = "/twilio/voice" + (f"?{urlencode({'queue': queue})}" if queue else "")
    enqueue = twilio.post(voice_path, call_params).find("Enqueue")
    if enqueue is None:
        raise SimulateError("/twilio/voice did not answer with <Enqueue>")
    queue_name = enqueue.text
    wait_params = {**call_params, "QueueSid": "QU" + secrets.token_hex(16)}

    log = _PlayLog(config["HOLDGUARD_DB"], call_sid)
    total_s, elapsed_s = minutes * 60, 0.0
    try:
        while elapsed_s < total_s:
            if len(log.timeline) >= MAX_ANSWERS:
                raise SimulateError(f"more than {MAX_ANSWERS} answers for {minutes} minutes")
            twiml = twilio.post(enqueue.get("waitUrl"), {**wait_params, **_queue_params(elapsed_s, total_s)})
            _check_one_answer(twiml)
            duration_s = log.next_play(elapsed_s)["duration_s"]
            elapsed_s += duration_s
            clock.advance(duration_s)
        twilio.post(enqueue.get("action"), {**wait_params, "QueueResult": "bridged",
                                            "QueueTime": str(int(elapsed_s))})
    finally:
        log.close()
    return {"call_sid": call_sid, "caller": caller_e164, "timeline": log.timeline,
            "summary": _summary(log.timeline, log.causes, elapsed_s, queue_name, started_at, log.customer_id)}


def _queue_params(elapsed_s: float, total_s: float) -> dict:
    """Twilio's wait parameters at `elapsed_s` of a hold that ends at `total_s`: a queue moving steadily."""
    first_position = max(2, round(total_s / 240))
    position = max(1, math.ceil(first_position * (1 - elapsed_s / total_s)))
    return {"QueueTime": str(int(elapsed_s)), "QueuePosition": str(position),
            "AvgQueueTime": str(int(total_s)), "CurrentQueueSize": str(position + 2)}


def _check_one_answer(twiml: ElementTree.Element) -> None:
    verbs = [child.tag for child in twiml]
    if verbs not in (["Play"], ["Say"]):
        raise SimulateError(f"/twilio/wait answered {verbs}, not a single <Play> or <Say>")


class _PlayLog:
    """Reads back the rows the webhook logged for one call, in order."""

    def __init__(self, db_path: str, call_sid: str):
        self.db = _open_existing(db_path)
        self.call_sid = call_sid
        self.last_id = 0
        self.timeline: list[dict] = []
        self.customer_id = None
        self.causes: list[str | None] = []  # the play log's cause of each answer, beside the timeline

    def next_play(self, elapsed_s: float) -> dict:
        rows = playlog.plays_after(self.db, self.call_sid, self.last_id)
        if len(rows) != 1:
            raise SimulateError(f"the webhook logged {len(rows)} plays for the wait request at "
                                f"{elapsed_s:.0f} s, not 1 (is the database writable?)")
        row = rows[0]
        self.last_id, self.customer_id = row.pop("id"), row.pop("customer_id")
        self.causes.append(row.pop("cause"))
        self.timeline.append(row)
        return row

    def close(self) -> None:
        self.db.close()


def _summary(timeline: list[dict], causes: list[str | None], hold_s: float, queue_name: str,
             started_at: datetime, customer_id: str | None) -> dict:
    def seconds(kind):
        return sum(play["duration_s"] for play in timeline if play["kind"] == kind)

    def count(kind):
        return sum(play["kind"] == kind for play in timeline)

    promo_s, wait_plays = seconds("promo"), count(WAIT_KIND)
    return {
        "queue": queue_name,
        "customer_id": customer_id,
        "started_at": format_utc(started_at),
        "hold_s": hold_s,
        "answers": len(timeline),
        "promo_plays": count("promo"),
        "promo_s": promo_s,
        "promo_share": round(promo_s / hold_s, 4) if hold_s else 0.0,
        "promos": [play["segment_id"] for play in timeline if play["kind"] == "promo"],
        "notice_plays": count("notice"),
        "wait_plays": wait_plays,
        "announcement_plays": wait_plays,  # deprecated name of wait_plays, kept for one release
        "reassurance_plays": count("reassurance"),
        "tip_plays": count("tip"),
        "music_s": seconds("music"),
        "fallback_answers": causes.count("fault"),
    }


def _clock_text(seconds: float) -> str:
    return f"{int(seconds) // 60:>3}:{int(seconds) % 60:02d}"


def format_timeline(result: dict) -> str:
    """The timeline as a table a person reads, with a summary line."""
    summary = result["summary"]
    who = f"customer {summary['customer_id']}" if summary["customer_id"] else "unknown caller"
    later = parse_utc(summary["started_at"]) > datetime.now(timezone.utc)
    lines = [f"call {result['call_sid']} from {result['caller']} ({who}), queue {summary['queue']}, "
             f"starting {summary['started_at']}"
             + (" (simulated time: after this caller's previous call ended)" if later else ""),
             f"{'at':>6}  {'segment':<22} {'kind':<12} {'duration':>8}  reason"]
    for play in result["timeline"]:
        lines.append(f"{_clock_text(play['at_s']):>6}  {play['segment_id']:<22} {play['kind']:<12} "
                     f"{play['duration_s']:>7g}s  {play['reason']}")
    lines.append(f"{summary['answers']} answers over {summary['hold_s'] / 60:.1f} min: "
                 f"{summary['promo_plays']} promo(s) ({summary['promo_share']:.1%} of the hold), "
                 f"{summary['notice_plays']} notice(s), {summary['wait_plays']} wait announcement(s), "
                 f"{summary['reassurance_plays']} reassurance(s), {summary['tip_plays']} tip(s)")
    return "\n".join(lines)

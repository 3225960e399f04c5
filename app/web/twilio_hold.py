"""Twilio webhooks: put a call in a queue, choose each hold answer, record how the wait ended.

    POST /twilio/voice         <Enqueue> into the queue (config HOLDGUARD_QUEUE, or ?queue=NAME)
    POST /twilio/wait          one short answer per request, chosen by app.policy.decide
    POST /twilio/queue-result  QueueResult / QueueTime of a finished wait

Every request must carry a valid X-Twilio-Signature for PUBLIC_BASE_URL + path
(+ query string); otherwise 403 and nothing is logged as played.

An app instance with config HOLDGUARD_SIMULATION (the one `holdguard simulate`
builds) logs its calls as simulated; nothing in a request can ask for that.

/twilio/wait fails closed: whatever goes wrong (database missing, locked or
corrupt, queue without a flow, a bug) it answers music only, within about a
second, and logs the fault. Each answer is a single <Play> or <Say>. Twilio
plays a <Play> URL to its end and then requests the wait URL again, so a
"music chunk" is one track: queue music files should be about music_chunk_s
long. Longer tracks are still safe: the policy measures hold time with
Twilio's QueueTime, so a long track only delays its next decision.
"""
import functools
import hmac
import logging
import math
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from app.core.phones import normalize_phone
from app.core.policy import QueueData, decide, fallback_decision
from app.storage import playlog
from app.storage.connect import DATABASE_ERRORS, is_unavailable

bp = Blueprint("twilio_hold", __name__, url_prefix="/twilio")
log = logging.getLogger(__name__)

SORRY_TEXT = "We are sorry, we cannot take your call right now. Please call again later."
FAILED_QUEUE_RESULTS = ("queue-full", "error", "system-error")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def app_now() -> datetime:
    """The app's clock: config HOLDGUARD_CLOCK if set (`holdguard simulate` sets a simulated one)."""
    return current_app.config.get("HOLDGUARD_CLOCK", utc_now)()


def simulating() -> bool:
    """Whether this app instance runs simulated calls: config only, never a request parameter."""
    return bool(current_app.config.get("HOLDGUARD_SIMULATION"))


def public_url(path: str) -> str:
    """The URL Twilio uses for `path` (signatures are computed on it, not on what Flask sees)."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path


def _requested_public_url() -> str:
    query = request.query_string.decode("latin-1")
    return public_url(request.path + (f"?{query}" if query else ""))


def twilio_signed(view):
    """Refuse (403) a request whose X-Twilio-Signature is missing or wrong."""
    @functools.wraps(view)
    def checked(*args, **kwargs):
        token = current_app.config.get("TWILIO_AUTH_TOKEN")
        signature = request.headers.get("X-Twilio-Signature")
        url = _requested_public_url()
        if not token:
            log.error("TWILIO_AUTH_TOKEN is not set: every Twilio webhook is refused")
            abort(403)
        if not signature or not _signature_valid(token, url, signature):
            log.warning("403: %s signature for %s", "wrong" if signature else "no", url)
            abort(403)
        return view(*args, **kwargs)
    return checked


def _signature_valid(token: str, url: str, signature: str) -> bool:
    """RequestValidator's check, trying the URL exactly as configured first.

    validate() always signs two URL variants (with and without the default port);
    the exact URL is what Twilio signs for a PUBLIC_BASE_URL without a port, so
    one HMAC usually settles it.
    """
    validator = RequestValidator(token)
    expected = validator.compute_signature(url, request.form)
    return (hmac.compare_digest(expected.encode(), signature.encode())
            or validator.validate(url, request.form, signature))


def twiml(response: VoiceResponse | str) -> Response:
    return Response(str(response), mimetype="text/xml")


QUEUE_NAME_MAX = 64  # Twilio's limit for a queue's name


def requested_queue() -> str:
    """The queue named by `?queue=` on the webhook's URL, else HOLDGUARD_QUEUE. A name Twilio could
    not take (over 64 characters, control characters: not even valid XML) is logged and not used."""
    name = request.args.get("queue")
    if name and (len(name) > QUEUE_NAME_MAX or not name.isprintable()):
        log.warning("%s: ignoring ?queue=%r (not a Twilio queue name)", request.path, name[:QUEUE_NAME_MAX])
        name = None
    return name or current_app.config["HOLDGUARD_QUEUE"]


def _caller_e164() -> str | None:
    return normalize_phone(request.form.get("From"), current_app.config["HOLDGUARD_DEFAULT_REGION"])


def _raw_caller() -> str:
    """How the log names a caller whose caller id is no phone number ("anonymous", empty)."""
    return request.form.get("From") or "unknown"


def form_number(*names: str) -> float | None:
    """The first of these form fields that holds a finite number."""
    for name in names:
        try:
            number = float(request.form[name])
        except (KeyError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


def queue_data_from_request() -> QueueData:
    """Twilio's live queue parameters (AvgQueueTime was AverageQueueTime in older docs)."""
    position = form_number("QueuePosition")
    size = form_number("CurrentQueueSize")
    return QueueData(
        queue_time_s=form_number("QueueTime"),
        avg_queue_time_s=form_number("AvgQueueTime", "AverageQueueTime"),
        position=int(position) if position is not None else None,
        queue_size=int(size) if size is not None else None,
    )


@functools.lru_cache(maxsize=1024)
def one_verbtwiml(play_url: str | None, say_text: str | None) -> str:
    """The TwiML for one answer: a single <Play> or <Say>."""
    # Hold answers repeat (music URLs, catalog messages): build each document once per process.
    response = VoiceResponse()
    if play_url:
        response.play(play_url)
    else:
        response.say(say_text)
    return str(response)


def record_quietly(what: str, record, *args) -> None:
    """Write for a webhook that must answer anyway: a failure is logged, never raised."""
    try:
        record(playlog.webhook_db(current_app.config["HOLDGUARD_DB"]), *args, simulated=simulating())
    except Exception:
        log.exception("%s %s: could not record it", what, request.form.get("CallSid"))
        playlog.discard_webhook_db()


@bp.post("/voice")
@twilio_signed
def voice():
    """Answer an incoming call by putting it in the hold queue."""
    queue_name = requested_queue()
    caller_key = _caller_e164() or _raw_caller()
    record_quietly("voice", playlog.record_call_start, request.form.get("CallSid", ""), caller_key, None,
                   queue_name, app_now())
    query = "?" + urlencode({"queue": queue_name})
    response = VoiceResponse()
    response.enqueue(queue_name, wait_url=public_url("/twilio/wait" + query), wait_url_method="POST",
                     action=public_url("/twilio/queue-result" + query), method="POST")
    return twiml(response)


@bp.post("/wait")
@twilio_signed
def wait():
    """The next hold answer for this call, logged with its reason; music only if anything fails.

    A retried request (same CallSid and QueueTime) gets the answer already logged for it.
    """
    call_sid, queue_name, caller_key = request.form.get("CallSid", ""), requested_queue(), _raw_caller()
    queue_time = request.form.get("QueueTime")
    db = inputs = queue_data = now = None
    try:
        now = app_now()
        caller_e164 = _caller_e164()
        caller_key = caller_e164 or caller_key
        queue_data = queue_data_from_request()
        if not call_sid:
            raise ValueError("wait request without CallSid")
        if lock_breaker().open():
            raise DatabaseBusy("the database was locked moments ago: not waiting on it again yet")
        db = playlog.webhook_db(current_app.config["HOLDGUARD_DB"])
        with playlog.decision_lock(db, caller_e164):
            inputs = playlog.load_inputs(db, call_sid, caller_e164, queue_name, now, playlog.catalog_cache(),
                                         simulating(), queue_time)
            logged = inputs.logged
            if logged is None:
                decision = decide(inputs.caller, inputs.call, inputs.history, inputs.queue, inputs.catalog,
                                  queue_data, now, inputs.products)
                logged = playlog.record_play(db, call_sid, caller_key, _customer_id(inputs), queue_name, decision,
                                             now, _at_s(queue_data, inputs), queue_time, inputs.call_row,
                                             simulating())
        return twiml(one_verbtwiml(logged.play_url, logged.say_text))
    except Exception as error:
        if not isinstance(error, DatabaseBusy):  # those are counted (LockBreaker), not each logged
            log.exception("wait %s: answering fallback music", call_sid or "(no CallSid)")
        now = now or utc_now()
        decision = fallback_decision(inputs.queue if inputs else None,
                                     f"fallback music: {type(error).__name__}: {error}")
        if is_unavailable(error):
            lock_breaker().trip()
        _log_fallback(db, error, call_sid, caller_key, inputs, queue_name, decision, now, queue_data, queue_time)
        if isinstance(error, (*DATABASE_ERRORS, OSError)):
            playlog.discard_webhook_db()  # the next request reconnects afresh
    return twiml(one_verbtwiml(decision.segment.play, decision.segment.say))


class DatabaseBusy(Exception):
    """The wait did not touch a database that was locked moments ago."""


class LockBreaker:
    """After a wait request found the database locked or unreachable, the next ones answer music at
    once for OPEN_S instead of each waiting out the timeout: with many callers on hold, waiting ones
    would hold every worker and push answers towards Twilio's 15 s limit. One per process and database."""
    OPEN_S = 1.0

    def __init__(self):
        self.open_until = 0.0
        self.skipped = 0  # answers given without the database while open (their log rows are dropped)

    def open(self) -> bool:
        if time.monotonic() < self.open_until:
            self.skipped += 1
            return True
        if self.skipped:
            log.warning("the database was locked: %d wait answer(s) were music without a log row", self.skipped)
            self.skipped = 0
        return False

    def trip(self) -> None:
        self.open_until = time.monotonic() + self.OPEN_S


_lock_breakers: dict[str, LockBreaker] = {}


def lock_breaker() -> LockBreaker:
    """The breaker of this app's database."""
    return _lock_breakers.setdefault(str(current_app.config["HOLDGUARD_DB"]), LockBreaker())


def _customer_id(inputs) -> str | None:
    return inputs.caller.customer_id if inputs and inputs.caller else None


def _at_s(queue_data: QueueData | None, inputs) -> float:
    """How far into the hold this answer starts: QueueTime, else the logged durations so far."""
    if queue_data is not None and queue_data.queue_time_s is not None:
        return queue_data.queue_time_s
    return sum(p.duration_s for p in inputs.call.plays) if inputs else 0.0


def _log_fallback(db, error, call_sid, caller_key, inputs, queue_name, decision, now, queue_data,
                  queue_time) -> None:
    """Log the fallback answer if the database can take it; a lock would only make Twilio wait."""
    locked = is_unavailable(error) or isinstance(error, DatabaseBusy)
    database_fault = isinstance(error, (*DATABASE_ERRORS, OSError))
    if locked or not call_sid or (db is None and database_fault):
        return
    try:
        db = db or playlog.webhook_db(current_app.config["HOLDGUARD_DB"])
        playlog.record_play(db, call_sid, caller_key, _customer_id(inputs), queue_name, decision, now,
                            _at_s(queue_data, inputs), queue_time, simulated=simulating())
    except Exception:
        log.exception("wait %s: could not log the fallback answer either", call_sid)


@bp.post("/queue-result")
@twilio_signed
def queue_result():
    """Record how the wait ended; apologise if Twilio could not queue the call."""
    result = request.form.get("QueueResult", "")
    record_quietly("queue-result", playlog.record_queue_result, request.form.get("CallSid", ""), result,
                   form_number("QueueTime"), app_now())
    response = VoiceResponse()
    if result in FAILED_QUEUE_RESULTS:
        response.say(SORRY_TEXT)
    return twiml(response)

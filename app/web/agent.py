"""The agent whisper: what the caller heard on hold, told to the agent who picks up.

Three Twilio webhooks, all signed like the others (403 otherwise):

POST /twilio/agent-connect   the AGENT's own call (recommended). Its TwiML says the
    whisper, then dequeues the caller: `<Say>…</Say><Dial><Queue>support</Queue></Dial>`.
    Only the agent hears it: it runs on the agent's call before the bridge. The
    caller is the one TaskRouter reserved (`?reservation=WR…&caller=CA…`, exact) or,
    on a plain queue, the longest-waiting call on hold in that queue as the play log
    knows it (Twilio's queues are first in, first out); the <Queue url> then checks
    that the caller put through is the one the agent was told about.
POST /twilio/agent-check     that <Queue url>. Twilio runs it on the CALLER's end, so
    it says nothing (an empty <Response/>); it marks the call as leaving the queue
    (queue result `bridging-in-process`, until Twilio's own result when the bridged
    call ends) and logs whether the dequeued call is the one whispered about.
POST /twilio/assignment      a TaskRouter Workflow's assignment callback: answers the
    `call` instruction that rings the worker with /twilio/agent-connect as its TwiML.
POST /twilio/agent-whisper   the `<Dial><Queue url="…">` whisper the issue first asked
    for. Twilio documents that url as run on the queued CALLER's end, so the caller
    may hear it too: see the README (Agent whisper) before using it.

The text is app.core.agent_whisper's summary: name, open issues, wait, notices,
promos, reassurances. Per queue: with the flow's `agent_whisper = false` (the
default) nothing is said and the parties are connected at once. Nothing here
fails or waits: an unknown caller gets a short line without CRM data, and any
fault (database missing, locked or corrupt, a bug) the generic line, from reads
bounded by the webhook connection's 0.5 s busy timeout; the agent's call always
gets its <Dial>.
"""
import json
import logging
import re
import sqlite3

from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Dial, VoiceResponse

from app.core.agent_whisper import GENERIC_WHISPER, whisper_text
from app.storage import live, playlog
from app.web.twilio_hold import (app_now, form_number, public_url, record_quietly, requested_queue, twiml,
                                 twilio_signed)

bp = Blueprint("agent", __name__, url_prefix="/twilio")
log = logging.getLogger(__name__)

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
RESERVATION_SID = re.compile(r"WR[0-9a-f]{32}")


def _queue_time_s() -> float | None:
    seconds = form_number("QueueTime")
    return seconds if seconds is not None and seconds >= 0 else None


def _read_or(fallback, what: str, read):
    """`read(db)` on this thread's webhook connection; on any fault `fallback`, logged with `what` (a
    broken SQLite connection is dropped, so the next request reconnects afresh)."""
    try:
        return read(playlog.webhook_db(current_app.config["HOLDGUARD_DB"]))
    except Exception as error:
        log.exception("%s", what)
        if isinstance(error, (sqlite3.Error, OSError)):
            playlog.discard_webhook_db()
        return fallback


def _whisper(db, call_sid: str, queue_name: str, queue_time_s: float | None = None) -> str | None:
    """The line for the agent about `call_sid`; None when the call's queue has the whisper off."""
    record = live.load_call_record(db, call_sid, queue_name, playlog.catalog_cache())
    if record.queue is None:
        raise LookupError(f"no hold flow for the call's queue ({(record.row or {}).get('queue') or 'unknown'})")
    if not record.queue.agent_whisper:
        log.info("agent whisper %s: off for queue %s (agent_whisper = false)", call_sid, record.queue.name)
        return None
    return whisper_text(record.caller, record.plays, record.segments, app_now(), queue_time_s, record.products)


def _whisper_or_generic(call_sid: str, queue_name: str, queue_time_s: float | None = None) -> str | None:
    return _read_or(GENERIC_WHISPER, f"agent whisper {call_sid}: answering the generic line",
                    lambda db: _whisper(db, call_sid, queue_name, queue_time_s))


def _valid(value: str, pattern: re.Pattern, what: str) -> str:
    """`value` if it has the form of a Twilio SID, else "" (logged): a bad URL must not stop the bridge."""
    if value and not pattern.fullmatch(value):
        log.warning("agent connect: ignoring %s %r (not a Twilio SID)", what, value[:64])
        return ""
    return value


def _front_of_queue(queue_name: str) -> str:
    """The longest-waiting real call on hold in `queue_name` ("" when none, or the log cannot be read)."""
    def front(db) -> str:
        on_hold = [row for row in live.calls_on_hold(db, app_now()) if row["queue"] == queue_name]
        return on_hold[0]["call_sid"] if on_hold else ""

    return _read_or("", f"agent connect: cannot read who is on hold in {queue_name}", front)


@bp.post("/agent-connect")
@twilio_signed
def agent_connect():
    """The agent's call: the whisper (to the agent alone), then the caller dequeued."""
    queue_name = requested_queue()
    reservation = _valid(request.args.get("reservation", ""), RESERVATION_SID, "reservation")
    caller_sid = _valid(request.args.get("caller", ""), CALL_SID, "caller")
    if not caller_sid and not reservation:
        caller_sid = _front_of_queue(queue_name)
    text = _whisper_or_generic(caller_sid, queue_name) if caller_sid else None
    response = VoiceResponse()
    if text:
        response.say(text)
    dial = Dial()
    if reservation:
        dial.queue(None, reservation_sid=reservation)
    else:
        check = url_for("agent.agent_check", told=caller_sid or None, queue=request.args.get("queue"))
        dial.queue(queue_name, url=public_url(check))
    response.append(dial)
    log.info("agent connect (agent call %s, queue %s%s): told about %s: %r; the call's timeline: /calls/%s",
             request.form.get("CallSid", "?"), queue_name, f", reservation {reservation}" if reservation else "",
             caller_sid or "nobody (no caller on hold)", text, caller_sid)
    return twiml(response)


@bp.post("/agent-check")
@twilio_signed
def agent_check():
    """Runs on the dequeued caller's end: says nothing; records that the caller left the queue; logs
    whether the agent was told about this caller."""
    told = request.args.get("told", "")
    dequeued = request.form.get("CallSid", "")
    agent_call = request.form.get("DequeingCallSid", "?")
    if not CALL_SID.fullmatch(dequeued):
        log.warning("agent check: no valid CallSid (%r): nothing recorded", dequeued[:64])
        return twiml(VoiceResponse())
    # Twilio sends the queue result only when the bridged call ends: until then the caller would
    # still look on hold to /live and to the next agent's whisper
    record_quietly("agent-check", playlog.record_queue_result, dequeued, "bridging-in-process", _queue_time_s(),
                   app_now())
    if told and told != dequeued:
        log.warning("agent connect: agent call %s was told about %s but was put through to %s (the queue's "
                    "front changed while the whisper played); see /calls/%s", agent_call, told[:64], dequeued,
                    dequeued)
    elif not told:
        log.info("agent connect: agent call %s put through to %s, told nothing (no caller was on hold)",
                 agent_call, dequeued)
    return twiml(VoiceResponse())


def _json_attribute(name: str) -> dict:
    try:
        value = json.loads(request.form.get(name) or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: not a JSON object")
    return value


@bp.post("/assignment")
@twilio_signed
def assignment():
    """TaskRouter's assignment callback: ring the worker; their call runs /twilio/agent-connect for this task."""
    try:
        task, worker = _json_attribute("TaskAttributes"), _json_attribute("WorkerAttributes")
    except ValueError as error:
        return Response(f"{error}\n", status=400, mimetype="text/plain")
    reservation = request.form.get("ReservationSid", "")
    contact = worker.get("contact_uri")
    caller_id = request.args.get("from") or task.get("to")
    for field, value, ok in (("ReservationSid", reservation, RESERVATION_SID.fullmatch(reservation)),
                             ("WorkerAttributes.contact_uri", contact, isinstance(contact, str) and contact),
                             ("TaskAttributes.to (or ?from=)", caller_id, isinstance(caller_id, str) and caller_id)):
        if not ok:
            return Response(f"{field}: missing or not valid ({value!r})\n", status=400, mimetype="text/plain")
    call_sid = task.get("call_sid") if CALL_SID.fullmatch(str(task.get("call_sid"))) else ""
    connect = url_for("agent.agent_connect", reservation=reservation, caller=call_sid or None,
                      queue=request.args.get("queue"))
    instruction = {"instruction": "call", "to": contact, "from": caller_id, "url": public_url(connect),
                   "accept": True}
    log.info("assignment: reservation %s for call %s: ringing %s", reservation, call_sid or "?", contact)
    return Response(json.dumps(instruction), mimetype="application/json")


@bp.post("/agent-whisper")
@twilio_signed
def agent_whisper():
    """One <Say> telling what the dequeued caller heard on hold; the generic line if anything fails."""
    call_sid = request.form.get("CallSid", "")
    if not call_sid:
        log.error("agent whisper: request without CallSid: answering the generic line")
        text = GENERIC_WHISPER
    else:
        text = _whisper_or_generic(call_sid, requested_queue(), _queue_time_s())
    response = VoiceResponse()
    if text:
        response.say(text)
    log.info("agent whisper %s (agent call %s): %r; the call's timeline: /calls/%s",
             call_sid or "(no CallSid)", request.form.get("DequeingCallSid") or "?", text, call_sid)
    return twiml(response)

"""The agent whisper: POST /twilio/agent-whisper, for `<Dial><Queue url="…/twilio/agent-whisper">support</Queue></Dial>`.

Twilio requests the <Queue> url when a caller is dequeued, before the two
parties are connected, with the standard parameters plus `CallSid` (the
dequeued caller's call), `QueueSid`, `QueueTime` (seconds that caller waited)
and `DequeingCallSid` (the call that dequeued them). The answer is one short
<Say>, app.core.agent_whisper's summary of the hold: name, open issues, wait,
notices, promos, reassurances.

Signed like the other webhooks (403 otherwise). Per queue: with the flow's
`agent_whisper = false` (the default) the answer is an empty <Response/> and
the parties are connected at once. It never fails and never waits: an unknown
caller gets a short line without CRM data, and any fault (database missing,
locked or corrupt, a bug) the generic line, from reads bounded by the webhook
connection's 0.5 s busy timeout.

Twilio documents the <Queue> url as TwiML run *on the queued caller's end*;
see the README (Agent whisper) before turning it on for a queue.
"""
import logging
import math
import sqlite3

from flask import Blueprint, Response, current_app, request
from twilio.twiml.voice_response import VoiceResponse

from app.core.agent_whisper import GENERIC_WHISPER, whisper_text
from app.storage import live, playlog
from app.web.twilio_hold import app_now, twilio_signed

bp = Blueprint("agent", __name__, url_prefix="/twilio")
log = logging.getLogger(__name__)


def _queue_time_s() -> float | None:
    try:
        seconds = float(request.form["QueueTime"])
    except (KeyError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _say(text: str) -> Response:
    response = VoiceResponse()
    response.say(text)
    return Response(str(response), mimetype="text/xml")


@bp.post("/agent-whisper")
@twilio_signed
def agent_whisper():
    """One <Say> telling what the dequeued caller heard on hold; the generic line if anything fails."""
    call_sid = request.form.get("CallSid", "")
    agent_call = request.form.get("DequeingCallSid", "")
    try:
        if not call_sid:
            raise ValueError("whisper request without CallSid")
        db = playlog.webhook_db(current_app.config["HOLDGUARD_DB"])
        record = live.load_call_record(db, call_sid, request.args.get("queue") or current_app.config["HOLDGUARD_QUEUE"],
                                       playlog.catalog_cache())
        if record.queue is None:
            raise LookupError(f"no hold flow for the call's queue ({(record.row or {}).get('queue') or 'unknown'})")
        if not record.queue.agent_whisper:
            log.info("agent whisper %s: off for queue %s (agent_whisper = false)", call_sid, record.queue.name)
            return Response(str(VoiceResponse()), mimetype="text/xml")
        text = whisper_text(record.caller, record.plays, record.segments, app_now(), _queue_time_s(),
                            record.products)
    except Exception as error:
        log.exception("agent whisper %s: answering the generic line", call_sid or "(no CallSid)")
        if isinstance(error, (sqlite3.Error, OSError)):
            playlog.discard_webhook_db()  # the next request reconnects afresh
        return _say(GENERIC_WHISPER)
    log.info("agent whisper %s (agent call %s): %r; the call's timeline: /calls/%s",
             call_sid, agent_call or "?", text, call_sid)
    return _say(text)

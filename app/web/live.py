"""The live hold view and one call's record, for supervisors and the agent who picks up.

    GET /live            calls on hold now, per queue; the page refreshes itself (app/static/live.js)
    GET /live.json       the same, for wallboards
    GET /calls/<CallSid> everything one call heard, answer by answer, with the reasons

Same access rule as the other pages (app.web.pages.require_access). A call is on
hold from its first wait answer until its queue result, or until no wait request
came for app.storage.live.ON_HOLD_SILENCE_S; simulated calls are not shown.
"""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, jsonify, render_template, request, url_for

from app.core.agent_whisper import HeardSoFar, heard_so_far, waited_s, whisper_text
from app.core.times import format_utc
from app.storage import live
from app.storage.catalog import load_catalog
from app.web import pages
from app.web.db import get_db

bp = Blueprint("live", __name__)
bp.before_request(pages.require_access)
bp.after_request(pages.forbid_framing)
bp.register_error_handler(404, pages.error_page)
bp.register_error_handler(400, pages.error_page)

REFRESH_S_DEFAULT = 5
REFRESH_S_RANGE = (1, 300)
# The play log's causes as the pages word them.
CAUSE_LABELS = {"open_issue": "open issue", "owned_product": "owns the product", "per_call_cap": "promo cap reached",
                "share_cap": "promo share cap", "repeat_days": "heard it recently", "heard_this_call": "heard this call",
                "opt_out": "opted out", "unknown_caller": "unknown caller", "no_promo": "no promo for this queue",
                "fault": "fault (music only)"}


def heard_json(heard: HeardSoFar) -> dict:
    return {"notices": list(heard.notices),
            "promos": [{"segment_id": promo.segment_id, "products": list(promo.products), "owned": list(promo.owned)}
                       for promo in heard.promos],
            "reassurances": heard.reassurances, "waits": heard.waits, "tips": list(heard.tips),
            "music_s": round(heard.music_s, 1),
            "announcements": heard.waits}  # the deprecated name of "waits", kept for one release


def _issues_json(caller) -> list[dict]:
    return [{"id": issue.id, "severity": issue.severity, "summary": issue.summary}
            for issue in (caller.open_issues if caller else ())]


def on_hold_call(db, row: dict, now: datetime, cache: dict) -> dict:
    """One call on hold, as /live.json gives it (and /live shows it)."""
    record = live.load_call_record(db, row["call_sid"], cache=cache)
    waited = waited_s(record.plays, now)
    return {
        "call_sid": row["call_sid"],
        "caller": row["caller"],
        "customer_id": record.caller.customer_id if record.caller else None,
        "name": record.caller.name if record.caller else None,
        "queue": row["queue"],
        "started_at": row["started_at"],
        "waited_s": round(waited, 1) if waited is not None else None,
        "open_issues": _issues_json(record.caller),
        "heard": heard_json(heard_so_far(record.plays, record.segments, record.caller, record.products)),
        "skipped": [skip | {"label": CAUSE_LABELS.get(skip["cause"], skip["cause"])}
                    for skip in live.skips_of_call(db, row["call_sid"])],
        "last_answer": {"segment_id": row["last_segment_id"], "kind": row["last_kind"], "at": row["last_at"],
                        "reason": row["last_reason"]},
        "url": url_for("live.call_page", call_sid=row["call_sid"]),
    }


def live_view(db, now: datetime) -> dict:
    """Calls on hold now, grouped by queue: every loaded queue (empty ones too), then any other."""
    cache: dict = {}
    calls = [on_hold_call(db, row, now, cache) for row in live.calls_on_hold(db, now)]
    names = list(load_catalog(db).queues)
    names += sorted({call["queue"] or "" for call in calls} - set(names))
    return {"as_of": format_utc(now), "on_hold_silence_s": live.ON_HOLD_SILENCE_S, "calls_on_hold": len(calls),
            "queues": [{"name": name, "calls": [call for call in calls if (call["queue"] or "") == name]}
                       for name in names]}


def _refresh_s() -> int:
    raw = request.args.get("refresh", "").strip()
    if not raw:
        return REFRESH_S_DEFAULT
    low, high = REFRESH_S_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        abort(400, f"refresh: {raw!r} is not a whole number of seconds from {low} to {high}.")
    return int(raw)


@bp.route("/live")
def live_page():
    refresh_s = _refresh_s()
    return render_template("pages/live.html", view=live_view(get_db(), pages.utc_now()), refresh_s=refresh_s)


@bp.route("/live.json")
def live_json():
    return jsonify(live_view(get_db(), pages.utc_now()))


@bp.route("/calls/<call_sid>")
def call_page(call_sid: str):
    db, now = get_db(), pages.utc_now()
    record = live.load_call_record(db, call_sid)
    timeline = live.call_timeline(db, call_sid)
    if record.row is None and not timeline:
        abort(404, f"There is no call {call_sid} in the play log.")
    on_hold = (record.row is not None and not record.row["queue_result"] and not record.row["simulated"]
               and bool(record.plays)
               and (now - record.plays[-1].at).total_seconds() < live.ON_HOLD_SILENCE_S)
    heard = heard_so_far(record.plays, record.segments, record.caller, record.products)
    whisper = whisper_text(record.caller, record.plays, record.segments, now, products=record.products) \
        if on_hold else None
    return render_template("pages/call.html", call_sid=call_sid, call=record.row or {}, caller=record.caller,
                           timeline=timeline, heard=heard, on_hold=on_hold, whisper=whisper,
                           waited_s=waited_s(record.plays, now) if on_hold else None,
                           skipped=[skip | {"label": CAUSE_LABELS.get(skip["cause"], skip["cause"])}
                                    for skip in live.skips_of_call(db, call_sid)],
                           audits=live.audits_of_call(db, call_sid), cause_labels=CAUSE_LABELS)

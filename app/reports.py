"""Pages for CX leads and telephony teams: audits, flows, suppression, campaigns.

Server-rendered Jinja templates (autoescaped: transcripts and CRM data may be
hostile), a little CSS and JavaScript in app/static, no front-end build.

Access: with no HOLDGUARD_PAGES_TOKEN set, the pages answer only requests from
the loopback address that no proxy or tunnel relayed (the public URL Twilio
calls must not expose them); with it set, every page needs that token, as `?token=`
(which sets a cookie and redirects to the clean URL), the cookie, or an
`Authorization: Bearer` header.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from flask import (Blueprint, abort, current_app, make_response, redirect, render_template,
                   request, send_file)
from markupsafe import Markup

from app.customers import SEVERITIES as ISSUE_SEVERITIES
from app.db import get_db
from app.flows import load_catalog
from app.policy import format_utc, parse_utc
from app.schema import REAL_PLAY
from app.suppression import suppression_csv, suppression_rows
from audits import store
from audits.timeline import format_mmss, timeline_svg

bp = Blueprint("reports", __name__)

TOKEN_COOKIE = "holdguard_pages_token"
AUDIT_RULES = ("repeated_promo", "promo_during_open_issue", "promo_for_owned_product",
               "repeated_reassurance", "promo_share_high", "long_silence")
SEVERITIES = ("high", "medium", "low")
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".m4a", ".webm"}
AUDITS_SHOWN = 200
SEARCH_MATCHES_MAX = 500
QUERY_CHARS_MAX = 200


# ---- access -----------------------------------------------------------------------------------

def pages_token() -> str:
    """The pages' login token from the app config or the environment ("" = localhost only)."""
    return current_app.config.get("HOLDGUARD_PAGES_TOKEN") or os.environ.get("HOLDGUARD_PAGES_TOKEN", "")


FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def _is_local_request() -> bool:
    """From this machine, and not relayed by a proxy or tunnel (ngrok, nginx) running on it."""
    if any(header in request.headers for header in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _presented_token() -> tuple[str, str]:
    """(token, where it came from) from the query string, the cookie or a bearer header."""
    authorization = request.headers.get("Authorization", "")
    for source, value in (("query", request.args.get("token", "")),
                          ("cookie", request.cookies.get(TOKEN_COOKIE, "")),
                          ("bearer", authorization[7:] if authorization.lower().startswith("bearer ") else "")):
        if value:
            return value, source
    return "", ""


def _cross_site_post() -> bool:
    """A form post from another site (a page the user visits driving their browser at ours)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")
    return origin.rstrip("/") != request.host_url.rstrip("/")


@bp.before_request
def require_access():
    if _cross_site_post():
        return _access_page(403, "Forms on these pages only accept posts from these pages.")
    token = pages_token()
    if not token:
        if _is_local_request():
            return None
        return _access_page(403, "These pages are open only from this machine (localhost). "
                                 "Set HOLDGUARD_PAGES_TOKEN to open them to others with a token.")
    presented, source = _presented_token()
    if presented and hmac.compare_digest(presented.encode(), token.encode()):
        if source == "query" and request.method == "GET":
            # Keep the token out of the address bar, history and logs: cookie it, drop it from the URL.
            clean_args = {k: v for k, v in request.args.items(multi=True) if k != "token"}
            response = redirect(_url_with(request.path, clean_args))
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict",
                                secure=request.is_secure)
            return response
        return None
    message = "That access token is not right." if presented else "These pages need an access token."
    return _access_page(401, message)


def _access_page(status: int, message: str):
    response = make_response(render_template("pages/login.html", message=message,
                                             ask_token=status == 401), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="holdguard pages"'
    return response


def _url_with(path: str, args: dict) -> str:
    query = urlencode(list(args.items()))
    return f"{path}?{query}" if query else path


@bp.after_request
def forbid_framing(response):
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@bp.errorhandler(400)
@bp.errorhandler(404)
def error_page(error):
    return render_template("pages/error.html", code=error.code, title=error.name,
                           message=error.description), error.code


# ---- template helpers -------------------------------------------------------------------------

@bp.app_template_filter("mmss")
def mmss_filter(seconds) -> str:
    return format_mmss(float(seconds or 0))


@bp.app_template_filter("percent")
def percent_filter(share) -> str:
    return f"{float(share or 0) * 100:.1f} %"


@bp.app_template_filter("utc")
def utc_filter(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("when")
def when_filter(timestamp) -> str:
    """ "2026-11-24T04:46:40.686Z" -> "2026-11-24 04:46 UTC"; anything unreadable as it is."""
    try:
        return utc_filter(parse_utc(str(timestamp)))
    except ValueError:
        return str(timestamp or "")


@bp.app_template_filter("day")
def day_filter(timestamp) -> str:
    return (timestamp or "")[:10]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@bp.route("/")
def index():
    return render_template("pages/index.html")


# ---- /audits ----------------------------------------------------------------------------------

def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name}: {raw!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-20.")


def audit_filters() -> dict:
    """The /audits query string, validated: bad values stop here with a 400 that says why."""
    rule = request.args.get("rule", "").strip()
    if rule and rule not in AUDIT_RULES:
        abort(400, f"rule: {rule!r} is not an audit rule; use one of {', '.join(AUDIT_RULES)}.")
    from_day, to_day = _date_arg("from"), _date_arg("to")
    if from_day and to_day and from_day > to_day:
        abort(400, f"from ({from_day}) is after to ({to_day}).")
    query = request.args.get("q", "").strip()
    if len(query) > QUERY_CHARS_MAX:
        abort(400, f"q: a search of {len(query)} characters is too long (at most {QUERY_CHARS_MAX}).")
    return {"rule": rule, "from": from_day, "to": to_day, "q": query}


def transcript_matches(db, query: str) -> list[dict]:
    """Messages whose transcript matches every word of `query` (any order, word stems)."""
    return store.search(db, db.quote_fts(query), limit=SEARCH_MATCHES_MAX)


def list_audits(db, filters: dict, only_ids: set[int] | None) -> list[dict]:
    """Recent audits matching the filters, newest first, each with its findings counted by severity."""
    where, params = [], []
    if filters["rule"]:
        where.append("id in (select audit_id from audit_findings where rule = ?)")
        params.append(filters["rule"])
    if filters["from"]:
        where.append("julianday(audited_at) >= julianday(?)")
        params.append(filters["from"].isoformat())
    if filters["to"]:
        where.append("julianday(audited_at) < julianday(?)")
        params.append((filters["to"] + timedelta(days=1)).isoformat())
    if only_ids is not None:
        where.append(f"id in ({', '.join('?' * len(only_ids))})" if only_ids else "0")
        params.extend(sorted(only_ids))
    sql = ("select id, recording, audited_at, duration_s, promo_share, findings, call_sid from audits"
           + (" where " + " and ".join(where) if where else "")
           + " order by audited_at desc, id desc limit ?")
    audits = [dict(row) for row in db.query(sql, params + [AUDITS_SHOWN])]
    counts = _severity_counts(db, [audit["id"] for audit in audits])
    for audit in audits:
        audit["by_severity"] = counts.get(audit["id"], {})
        audit["name"] = Path(audit["recording"]).name
    return audits


def _severity_counts(db, audit_ids: list[int]) -> dict[int, dict[str, int]]:
    if not audit_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for row in db.query(f"select audit_id, severity, count(*) as n from audit_findings "
                        f"where audit_id in ({', '.join('?' * len(audit_ids))}) group by audit_id, severity",
                        audit_ids):
        counts.setdefault(row["audit_id"], {})[row["severity"]] = row["n"]
    return counts


@bp.route("/audits")
def audits_page():
    filters = audit_filters()
    db = get_db()
    matches = transcript_matches(db, filters["q"]) if filters["q"] else None
    only_ids = {match["audit_id"] for match in matches} if matches is not None else None
    audits = list_audits(db, filters, only_ids)
    shown_ids = {audit["id"] for audit in audits}
    if matches is not None:
        matches = [match for match in matches if match["audit_id"] in shown_ids]
    return render_template("pages/audits.html", audits=audits, filters=filters, matches=matches,
                           rules=AUDIT_RULES, severities=SEVERITIES)


# ---- /audits/<id> -----------------------------------------------------------------------------

def _audit_row(db, audit_id: int) -> dict:
    rows = list(db.query("select id, recording, coalesce(path, recording) as path, audited_at, call_sid, sha256 "
                         "from audits where id = ?",
                         [audit_id]))
    if not rows:
        abort(404, f"There is no audit {audit_id}.")
    return dict(rows[0])


def recording_file(recording: str) -> Path | None:
    """The stored audit's recording on disk, if it is still there and is an audio file."""
    path = Path(recording)
    if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
        return None
    return path


def transcript_lines(result) -> list[dict]:
    """Every play of every message in time order: the hold as it was heard."""
    lines = [{"start_s": start_s, "end_s": end_s, "message": message}
             for message in result.messages
             for start_s, end_s in zip(message.play_times_s, message.play_ends_s)]
    return sorted(lines, key=lambda line: line["start_s"])


def call_plays(db, call_sid: str | None) -> list[dict]:
    """What the webhook decided for the audited call, answer by answer, with its reasons."""
    if not call_sid:
        return []
    return [dict(row) for row in db.query(
        "select at_s, segment_id, kind, duration_s, reason from plays where call_sid = ? order by id",
        [call_sid])]


@bp.route("/audits/<int:audit_id>")
def audit_page(audit_id: int):
    db = get_db()
    audit = _audit_row(db, audit_id)
    result = store.load(db, audit_id)
    return render_template(
        "pages/audit.html", audit=audit, result=result,
        timeline=Markup(timeline_svg(result)),  # timeline_svg escapes every text it draws
        has_audio=recording_file(audit["path"]) is not None,
        transcript=transcript_lines(result), plays=call_plays(db, audit["call_sid"]))


@bp.route("/audits/<int:audit_id>/audio")
def audit_audio(audit_id: int):
    """The audited recording, with HTTP Range support so the player can seek.

    Only the file an audit was made from is ever served: the path comes from the
    audits table, never from the request.
    """
    audit = _audit_row(get_db(), audit_id)
    path = recording_file(audit["path"])  # absolute: the server may run from another folder
    if path is None:
        abort(404, f"The recording of audit {audit_id} is no longer on disk.")
    return send_file(path.resolve(), conditional=True, max_age=0)


# ---- /campaigns -------------------------------------------------------------------------------

DIGEST_DAYS = 7
RECENT_PROMO_PLAYS = 25
# A per-promo skip in the policy's reasons reads "promo <id> skipped: <why>"; a caller-wide block
# (open issue, opt-out, unknown caller) reads "promo skipped: <why>" and names no promo.
PROMO_SKIP_TEXT = "promo {promo_id} skipped"
CALLER_BLOCK_TEXT = "promo skipped: "
BLOCK_CAUSES = ("open issue", "opted out", "unknown caller")


def window_status(segment, now: datetime) -> str:
    """live | scheduled | ended, from the segment's optional active window."""
    if segment.active_from and now < segment.active_from:
        return "scheduled"
    if segment.active_until and now >= segment.active_until:
        return "ended"
    return "live"


# Every count and list on /campaigns is of real callers' plays: simulated calls are left out.

def promo_digest(db, now: datetime, days: int = DIGEST_DAYS) -> list[dict]:
    """Every promo in the catalog: where and when it may play, how often it played and was skipped."""
    since = format_utc(now - timedelta(days=days))
    flow = load_catalog(db)
    digest = []
    for promo in (segment for segment in flow.segments if segment.kind == "promo"):
        played = _one(db, f"""select count(*) as answers, count(distinct call_sid) as calls,
                                     count(distinct caller) as callers, max(at) as last_at
                              from plays where segment_id = ? and julianday(at) >= julianday(?)
                               and {REAL_PLAY}""",
                      [promo.id, since])
        skipped = _one(db, f"""select count(*) as answers, count(distinct call_sid) as calls from plays
                               where instr(reason, ?) > 0 and julianday(at) >= julianday(?) and {REAL_PLAY}""",
                       [PROMO_SKIP_TEXT.format(promo_id=promo.id), since])
        digest.append({"segment": promo, "queues": list(promo.queues) or list(flow.queues),
                       "every_queue": not promo.queues, "status": window_status(promo, now),
                       "played": played, "skipped": skipped})
    return digest


def caller_blocks(db, now: datetime, days: int = DIGEST_DAYS) -> list[dict]:
    """Answers where no promo could play for this caller at all, by queue and cause."""
    since = format_utc(now - timedelta(days=days))
    rows = db.query(f"""select queue, reason, call_sid from plays
                        where instr(reason, ?) > 0 and julianday(at) >= julianday(?) and {REAL_PLAY}""",
                    [CALLER_BLOCK_TEXT, since])
    blocks: dict[tuple[str, str], dict] = {}
    for row in rows:
        cause = _block_cause(row["reason"])
        block = blocks.setdefault((row["queue"] or "", cause),
                                  {"queue": row["queue"], "cause": cause, "answers": 0, "calls": set()})
        block["answers"] += 1
        block["calls"].add(row["call_sid"])
    return [block | {"calls": len(block["calls"])} for _, block in sorted(blocks.items())]


def _block_cause(reason: str) -> str:
    """ "music: promo skipped: open issue CASE-1042 (high)" -> "open issue" (ids vary, causes don't)."""
    cause = reason.split(CALLER_BLOCK_TEXT, 1)[1].split(";")[0].strip()
    return next((kind for kind in BLOCK_CAUSES if kind in cause), cause)


def recent_promo_plays(db, caller: str | None, limit: int = RECENT_PROMO_PLAYS) -> list[dict]:
    """The latest promo plays (optionally for one caller): what a caller just heard."""
    where, params = f"kind = 'promo' and {REAL_PLAY}", []
    if caller:
        where += " and caller = ?"
        params.append(caller)
    return [dict(row) for row in db.query(
        f"select at, caller, queue, call_sid, segment_id, at_s from plays where {where} "
        f"order by julianday(at) desc, id desc limit ?", params + [limit])]


def _one(db, sql: str, params: list) -> dict:
    return dict(next(iter(db.query(sql, params))))


def _caller_arg() -> str:
    raw = request.args.get("caller", "").strip()
    if not raw:
        return ""
    from app.phones import to_e164
    try:
        return to_e164(raw, current_app.config.get("HOLDGUARD_DEFAULT_REGION", "US"))
    except ValueError as error:
        abort(400, f"caller: {error}.")


@bp.route("/campaigns")
def campaigns_page():
    db, now = get_db(), utc_now()
    caller = _caller_arg()
    return render_template("pages/campaigns.html", promos=promo_digest(db, now),
                           blocks=caller_blocks(db, now), recent=recent_promo_plays(db, caller),
                           caller=caller, raw_caller=request.args.get("caller", ""), days=DIGEST_DAYS,
                           now=format_utc(now))


# ---- /flows -----------------------------------------------------------------------------------

SIMULATION_MINUTES_MAX = 240
# The play log's kinds as the timeline picture's message categories.
KIND_CATEGORIES = {"promo": "promo", "reassurance": "reassurance", "announcement": "wait",
                   "notice": "notice", "tip": "tip"}


class FormError(ValueError):
    """A simulation form field that cannot be used; the message names the field."""


def simulation_request(form, queue_names: list[str]) -> dict:
    """The simulate form, checked: keyword arguments for app.simulate.simulate_call."""
    from app.simulate import AdhocCaller

    try:
        minutes = float(form.get("minutes", ""))
    except ValueError:
        raise FormError(f"Minutes: {form.get('minutes', '')!r} is not a number.") from None
    if not 0 < minutes <= SIMULATION_MINUTES_MAX:
        raise FormError(f"Minutes: must be above 0 and at most {SIMULATION_MINUTES_MAX}, got {minutes:g}.")
    queue = form.get("queue", "")
    if queue not in queue_names:
        raise FormError(f"Queue: {queue!r} is not a loaded queue ({', '.join(queue_names) or 'none loaded'}).")
    request_args = {"minutes": minutes, "queue": queue}
    mode = form.get("caller", "")
    if mode == "phone":
        phone = form.get("phone", "").strip()
        if not phone:
            raise FormError("Phone: give the caller's phone number, or choose an ad-hoc caller.")
        return request_args | {"caller_phone": phone}
    if mode != "adhoc":
        raise FormError("Caller: choose a phone number or an ad-hoc caller.")
    severity = None
    if form.get("open_issue") == "yes":
        severity = form.get("severity", "")
        if severity not in ISSUE_SEVERITIES:
            raise FormError(f"Severity: {severity!r} is not one of {', '.join(ISSUE_SEVERITIES)}.")
    products = [p.strip() for p in form.get("products", "").split(",") if p.strip()]
    return request_args | {"adhoc_caller": AdhocCaller(products=products, open_issue_severity=severity,
                                                        marketing_opt_out=form.get("opt_out") == "yes")}


def simulated_hold(timeline: list[dict], hold_s: float, catalog) -> "AuditResult":
    """A simulated call as an AuditResult, so it gets the same timeline picture as an audit."""
    from audits.data import AuditResult, Message, Segment as HeardSpan

    texts = {segment.id: segment.say or segment.play or segment.id for segment in catalog}
    spans, messages = [], {}
    for play in timeline:
        start_s, end_s = play["at_s"], play["at_s"] + play["duration_s"]
        if play["kind"] not in KIND_CATEGORIES:
            spans.append(HeardSpan(start_s, end_s, "music"))
            continue
        spans.append(HeardSpan(start_s, end_s, "speech"))
        message = messages.setdefault(play["segment_id"], Message(
            id=play["segment_id"], text=texts.get(play["segment_id"], play["reason"]),
            play_times_s=[], play_ends_s=[], category=KIND_CATEGORIES[play["kind"]]))
        message.play_times_s.append(start_s)
        message.play_ends_s.append(end_s)
    return AuditResult(recording="simulated call", duration_s=hold_s, segments=spans,
                       messages=list(messages.values()), findings=[], summary={})


def _render_flows(status: int = 200, **simulation):
    db, now = get_db(), utc_now()
    flow = load_catalog(db)
    segments = [{"segment": segment, "status": window_status(segment, now)} for segment in flow.segments]
    form = simulation.pop("form", None) or {"caller": "phone", "minutes": "45", "open_issue": "no",
                                            "queue": current_app.config.get("HOLDGUARD_QUEUE", "")}
    return render_template("pages/flows.html", flow=flow, segments=segments, form=form,
                           severities=ISSUE_SEVERITIES, minutes_max=SIMULATION_MINUTES_MAX,
                           **simulation), status


@bp.route("/flows")
def flows_page():
    return _render_flows()


@bp.route("/flows", methods=["POST"])
def simulate_on_flows_page():
    """Run the simulate form through the real webhook and policy; show the timeline and reasons."""
    from app.simulate import SimulateError, simulate_call

    flow = load_catalog(get_db())
    try:
        arguments = simulation_request(request.form, list(flow.queues))
        result = simulate_call(current_app._get_current_object(), **arguments)
    except (FormError, SimulateError) as error:
        return _render_flows(400, form=request.form, error=str(error))
    picture = simulated_hold(result["timeline"], result["summary"]["hold_s"], flow.segments)
    return _render_flows(form=request.form, result=result, adhoc="adhoc_caller" in arguments,
                         timeline=Markup(timeline_svg(picture)))


# ---- /suppression -----------------------------------------------------------------------------

def _min_severity_arg() -> str:
    raw = request.args.get("min_severity", "low").strip() or "low"
    if raw not in ISSUE_SEVERITIES:
        abort(400, f"min_severity: {raw!r} is not a severity; use one of {', '.join(ISSUE_SEVERITIES)}.")
    return raw


def _suppression_rows(min_severity: str) -> list[dict]:
    return suppression_rows(get_db(), utc_now(), min_severity)


@bp.route("/suppression")
def suppression_page():
    min_severity = _min_severity_arg()
    db = get_db()
    rows = _suppression_rows(min_severity)
    names = {row["customer_id"]: row["name"] for row in db.query("select customer_id, name from customers")}
    summaries = {row["id"]: row["summary"] for row in db.query(
        "select id, summary from issues where closed_at is null")}
    return render_template("pages/suppression.html", rows=rows, names=names, summaries=summaries,
                           min_severity=min_severity, severities=ISSUE_SEVERITIES,
                           customers=len({row["customer_id"] for row in rows}))


@bp.route("/suppression.csv")
def suppression_csv_download():
    """The same CSV as `holdguard suppression export` (same columns, RFC 4180, UTF-8)."""
    min_severity = _min_severity_arg()
    now = utc_now()
    response = make_response(suppression_csv(_suppression_rows(min_severity)))
    response.mimetype = "text/csv"
    response.charset = "utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="suppression-{now:%Y%m%d-%H%M%S}.csv"'
    return response

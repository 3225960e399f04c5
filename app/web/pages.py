"""Pages for CX leads and telephony teams: audits, flows, suppression, campaigns.

Server-rendered Jinja templates (autoescaped: transcripts and CRM data may be
hostile), a little CSS and JavaScript in app/static, no front-end build.

Access (Jupyter's convention): every page needs HOLDGUARD_PAGES_TOKEN, as `?token=`
(which sets a cookie and redirects to the clean URL), the cookie, or an
`Authorization: Bearer` header. With none configured the pages are closed and say
how to open them (`holdguard serve` makes a token and prints the link carrying it;
gunicorn does not). HOLDGUARD_PAGES_TOKEN=local asks explicitly for no token: then
the pages answer only requests from the loopback address that no proxy or tunnel
relayed -- a proxy that adds no forwarding header cannot be told apart, which is
why it is never the default.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from flask import (Blueprint, abort, current_app, make_response, redirect, render_template,
                   request, send_file)
from markupsafe import Markup

from app.core.audit import AuditResult, Message, Span
from app.core.phones import to_e164
from app.core.policy import SEVERITIES as ISSUE_SEVERITIES
from app.core.suppression import suppression_csv
from app.core.times import format_utc, parse_utc
from app.storage import audits as store, playlog
from app.storage.catalog import load_catalog
from app.storage.connect import DatabaseMissing, one_line
from app.storage.crm import customer_names, open_issue_summaries, suppression_rows
from app.web.db import get_db
from app.web.simulate import AdhocCaller, SimulateError, simulate_call
from audits.report import UNSURE_WORDS_LEGEND, any_unsure_words, marked_text, products_heard
from audits.timeline import format_mmss, timeline_svg

bp = Blueprint("reports", __name__)

TOKEN_COOKIE = "holdguard_pages_token"
AUDIT_RULES = ("repeated_promo", "promo_during_open_issue", "promo_for_owned_product",
               "repeated_reassurance", "promo_share_high", "long_silence", "dead_air")
SEVERITIES = ("high", "medium", "low")
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".m4a", ".webm"}
AUDITS_SHOWN = 200
SEARCH_MATCHES_MAX = 500
QUERY_CHARS_MAX = 200


# ---- access -----------------------------------------------------------------------------------

LOCAL_ONLY = "local"  # HOLDGUARD_PAGES_TOKEN=local: no token, this machine only
CLOSED_MESSAGE = ("These pages are closed: HOLDGUARD_PAGES_TOKEN is not set. Set it to a secret and open "
                  "a page once with ?token=<the secret>, or set HOLDGUARD_PAGES_TOKEN=local to open them "
                  "without a token to this machine only. (holdguard serve makes a token and prints the "
                  "link carrying it.)")


def pages_token(config=None) -> str:
    """The pages' token from the app config or the environment: "" = none (pages closed),
    LOCAL_ONLY = no token, loopback only."""
    config = current_app.config if config is None else config
    return config.get("HOLDGUARD_PAGES_TOKEN") or os.environ.get("HOLDGUARD_PAGES_TOKEN", "")


@bp.record_once
def _say_when_closed(state) -> None:
    """Say it once at start-up, in gunicorn's log, rather than only to whoever opens a page."""
    if not pages_token(state.app.config):
        logging.getLogger(__name__).warning("pages closed: %s", CLOSED_MESSAGE)


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
        return _access_page(403, CLOSED_MESSAGE)
    if token == LOCAL_ONLY:
        if _is_local_request():
            return None
        return _access_page(403, "These pages are open only from this machine (HOLDGUARD_PAGES_TOKEN=local). "
                                 "Set HOLDGUARD_PAGES_TOKEN to a secret to open them to others with it.")
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


@bp.app_errorhandler(DatabaseMissing)
@bp.app_errorhandler(sqlite3.OperationalError)
@bp.app_errorhandler(psycopg.OperationalError)
def database_unavailable(error):
    """A page whose database is missing, locked, down or unreachable says so (503), not 500."""
    reason = one_line(error)
    response = make_response(render_template("pages/error.html", code=503, title="Database unavailable",
                                             message=f"The database cannot be read right now: {reason}. "
                                                     "Try again shortly."), 503)
    response.headers["Retry-After"] = "5"
    return response


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


# An audit's message as the HTML report shows it (audits/report.py): the transcript with misheard product
# names and low confidence marked, each product with what it was heard as.
bp.add_app_template_filter(marked_text, "marked_text")
bp.add_app_template_filter(products_heard, "products_heard")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@bp.route("/")
def index():
    return render_template("pages/index.html")


# ---- /audits ----------------------------------------------------------------------------------

def date_arg(name: str) -> date | None:
    """A ?name=YYYY-MM-DD day of the query string (None when absent); 400 naming it when not a date."""
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
    from_day, to_day = date_arg("from"), date_arg("to")
    if from_day and to_day and from_day > to_day:
        abort(400, f"from ({from_day}) is after to ({to_day}).")
    query = request.args.get("q", "").strip()
    if len(query) > QUERY_CHARS_MAX:
        abort(400, f"q: a search of {len(query)} characters is too long (at most {QUERY_CHARS_MAX}).")
    return {"rule": rule, "from": from_day, "to": to_day, "q": query}


def transcript_matches(db, query: str) -> list[dict]:
    """Messages whose transcript matches every word of `query` (any order, word stems)."""
    return store.search(db, query, limit=SEARCH_MATCHES_MAX, syntax=False)


def list_audits(db, filters: dict, only_ids: set[int] | None) -> list[dict]:
    """Recent audits matching the filters, newest first, each with its findings counted by severity."""
    audits = store.list_audits(
        db, rule=filters["rule"], only_ids=only_ids, limit=AUDITS_SHOWN,
        from_day=filters["from"].isoformat() if filters["from"] else None,
        before_day=(filters["to"] + timedelta(days=1)).isoformat() if filters["to"] else None)
    counts = store.severity_counts(db, [audit["id"] for audit in audits])
    for audit in audits:
        audit["by_severity"] = counts.get(audit["id"], {})
        audit["name"] = Path(audit["recording"]).name
    return audits


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

SQLITE_MAX_INTEGER = 2**63 - 1


def _audit_row(db, audit_id: int) -> dict:
    # A larger number cannot be an audit's id, and SQLite cannot even be asked about it (OverflowError).
    row = store.audit_row(db, audit_id) if audit_id <= SQLITE_MAX_INTEGER else None
    if row is None:
        abort(404, f"There is no audit {audit_id}.")
    return row


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


@bp.route("/audits/<int:audit_id>")
def audit_page(audit_id: int):
    db = get_db()
    audit = _audit_row(db, audit_id)
    result = store.load(db, audit_id)
    return render_template(
        "pages/audit.html", audit=audit, result=result,
        timeline=Markup(timeline_svg(result)),  # timeline_svg escapes every text it draws
        has_audio=recording_file(audit["path"]) is not None,
        transcript=transcript_lines(result), plays=playlog.call_plays(db, audit["call_sid"]),
        unsure_words_legend=UNSURE_WORDS_LEGEND if any_unsure_words(result.messages) else "")


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
# The play log's causes as the page words them.
CAUSE_LABELS = {"open_issue": "open issue", "opt_out": "opted out", "unknown_caller": "unknown caller"}


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
    return [{"segment": promo, "queues": list(promo.queues) or list(flow.queues), "every_queue": not promo.queues,
             "status": window_status(promo, now), "played": playlog.promo_played(db, promo.id, since),
             "skipped": playlog.promo_skipped(db, promo.id, since)}
            for promo in flow.segments if promo.kind == "promo"]


def caller_blocks(db, now: datetime, days: int = DIGEST_DAYS) -> list[dict]:
    """Answers where no promo could play for this caller at all, by queue and cause."""
    return [block | {"cause": CAUSE_LABELS.get(block["cause"], block["cause"])}
            for block in playlog.caller_blocks(db, format_utc(now - timedelta(days=days)))]


def _caller_arg() -> str:
    raw = request.args.get("caller", "").strip()
    if not raw:
        return ""
    try:
        return to_e164(raw, current_app.config.get("HOLDGUARD_DEFAULT_REGION", "US"))
    except ValueError as error:
        abort(400, f"caller: {error}.")


@bp.route("/campaigns")
def campaigns_page():
    db, now = get_db(), utc_now()
    caller = _caller_arg()
    return render_template("pages/campaigns.html", promos=promo_digest(db, now),
                           blocks=caller_blocks(db, now), recent=playlog.recent_promo_plays(db, caller, RECENT_PROMO_PLAYS),
                           caller=caller, raw_caller=request.args.get("caller", ""), days=DIGEST_DAYS,
                           now=format_utc(now))


# ---- /flows -----------------------------------------------------------------------------------

SIMULATION_MINUTES_MAX = 240
# The play log's kinds are the audit's message categories (music has none in the timeline picture).
KIND_CATEGORIES = {kind: kind for kind in ("promo", "reassurance", "wait", "notice", "tip")}


class FormError(ValueError):
    """A simulation form field that cannot be used; the message names the field."""


def simulation_request(form, queue_names: list[str]) -> dict:
    """The simulate form, checked: keyword arguments for app.web.simulate.simulate_call."""
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


def simulated_hold(timeline: list[dict], hold_s: float, catalog) -> AuditResult:
    """A simulated call as an AuditResult, so it gets the same timeline picture as an audit."""
    texts = {segment.id: segment.say or segment.play or segment.id for segment in catalog}
    spans, messages = [], {}
    for play in timeline:
        start_s, end_s = play["at_s"], play["at_s"] + play["duration_s"]
        if play["kind"] not in KIND_CATEGORIES:
            spans.append(Span(start_s, end_s, "music"))
            continue
        spans.append(Span(start_s, end_s, "speech"))
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
    names, summaries = customer_names(db), open_issue_summaries(db)
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

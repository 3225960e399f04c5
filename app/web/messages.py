"""/messages: the fleet view of the message library, for CX leads.

Every distinct message the audits heard (audits.library), with how often it played in a window,
to how many callers, how many of those plays reached a caller with an open issue or one who owns
the product it sells, when it was first and last heard, and links to the recordings.
Behind the pages' access rule (app.web.pages.require_access).
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, abort, render_template, request

from app.storage import library as store
from app.web import pages
from app.web.db import get_db

bp = Blueprint("messages", __name__)
bp.before_request(pages.require_access)

MAX_WINDOW_DAYS = 3660


@bp.get("/messages")
def messages_page():
    """The library's messages heard in a window: the last ?days=N (7), or ?from=..&to=.. (days, UTC)."""
    try:
        days = int(request.args.get("days") or store.DEFAULT_WINDOW_DAYS)
    except ValueError:
        abort(400, "days: a whole number of days")
    if not 1 <= days <= MAX_WINDOW_DAYS:
        abort(400, f"days: 1 to {MAX_WINDOW_DAYS}")
    from_day, to_day = pages.date_arg("from"), pages.date_arg("to")  # as /audits reads them
    if from_day and to_day and from_day > to_day:
        abort(400, "from is after to")
    now = datetime.now(timezone.utc)
    since, until = store.window(now, days, from_day, to_day)
    rows = store.fleet_view(get_db(), since, until)
    return render_template("pages/messages.html", rows=rows, since=since, until=until, days=days,
                           from_day=from_day or "", to_day=to_day or "", now=now)

"""`holdguard messages`: the fleet view of the message library (what /messages shows)."""
import json
from datetime import datetime, timezone

import click

from app.cli.options import db_option, existing_db
from app.storage import library as store


@click.command("messages")
@click.option("--days", type=click.IntRange(1), default=store.DEFAULT_WINDOW_DAYS, show_default=True,
              help="The window: the last N days.")
@click.option("--from", "from_day", type=click.DateTime(["%Y-%m-%d"]), help="First day of the window (UTC).")
@click.option("--to", "to_day", type=click.DateTime(["%Y-%m-%d"]), help="Last day of the window, included (UTC).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as a JSON list.")
@db_option
def messages_command(days, from_day, to_day, limit, as_json, db_path):
    """Messages heard across the fleet: the message library with its plays in a window.

    One line per distinct recorded message the audits heard, most played first:
    plays, callers, plays that reached callers with an open issue and callers
    who own the product, first/last heard, category, products, text; --json adds
    the recordings (audit ids, shown at /audits/ID).

    \b
    Examples:
      holdguard messages
      holdguard messages --from 2026-11-23 --to 2026-11-29 --json
    """
    db = existing_db(db_path, "audit recordings first: `holdguard audit PATH`")
    since, until = store.window(datetime.now(timezone.utc), days, from_day and from_day.date(),
                                to_day and to_day.date())
    rows = store.fleet_view(db, since, until, limit)
    if as_json:
        keys = ("id", "text", "category", "products", "plays", "recordings", "callers", "plays_open_issue",
                "callers_open_issue", "plays_owner", "callers_owner", "first_heard", "last_heard", "engine", "model")
        click.echo(json.dumps({"since": since, "until": until, "messages": [
            {**{key: row[key] for key in keys},
             "heard_in": [{"audit_id": r["audit_id"], "recording": r["recording"], "plays": r["plays"],
                           "heard_at": r["heard_at"]} for r in row["recordings_list"]]} for row in rows]},
            indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no library message heard from {since} to {until}", err=True)
        return
    click.echo(f"messages heard from {since} to {until}")
    click.echo(f"{'plays':>6} {'callers':>7} {'mid-issue':>9} {'owners':>6}  {'first heard':<20} {'last heard':<20} "
               "category     text")
    for row in rows:
        products = f" [{', '.join(row['products'])}]" if row["products"] else ""
        click.echo(f"{row['plays']:>6} {row['callers']:>7} {row['plays_open_issue']:>9} {row['plays_owner']:>6}  "
                   f"{row['first_heard'] or '':<20} {row['last_heard'] or '':<20} {row['category'] or '-':<12} "
                   f"{row['text']}{products}")

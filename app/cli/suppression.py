"""`holdguard suppression export`: the marketing suppression CSV."""
from datetime import datetime, timezone
from pathlib import Path

import click

from app.cli.options import db_option, existing_db
from app.core.policy import SEVERITIES
from app.core.suppression import MARKETING_OPT_OUT, OPEN_ISSUE, suppression_csv, write_csv_atomically
from app.storage.crm import suppression_rows


def _counted(count: int, singular: str, plural: str) -> str:
    """'1 open issue', '2 open issues'."""
    return f"{count} {singular if count == 1 else plural}"


def _count(rows: list[dict], reason_code: str) -> int:
    return sum(row["reason_code"] == reason_code for row in rows)


@click.group("suppression")
def suppression_group():
    """Marketing suppression lists (customers marketing must not target now)."""


@suppression_group.command("export")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV here (atomically: temp file + rename). Default: stdout.")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="low", show_default=True,
              help="Open issues at or above this severity suppress; opt-outs always do.")
@db_option
def export_command(out_path, min_severity, db_path):
    """Export the suppression list as CSV for Salesforce Marketing Cloud / Braze.

    \b
    Columns (header row, UTF-8, RFC 4180):
      customer_id,phone_e164,reason_code,case_id,severity,suppress_from,generated_at
    One row per reason:
      open_issue         case_id, severity, suppress_from = when it was opened
      marketing_opt_out  empty case_id/severity, suppress_from = when they opted out
    generated_at is the same for every row. Closed issues do not suppress.

    \b
    Examples:
      holdguard suppression export > suppression.csv
      holdguard suppression export --out /srv/exports/suppression.csv --min-severity medium
    """
    rows = suppression_rows(existing_db(db_path), datetime.now(timezone.utc), min_severity)
    if out_path is None:
        click.echo(suppression_csv(rows), nl=False)
        return
    try:
        write_csv_atomically(rows, out_path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {_counted(len(rows), 'row', 'rows')} "
               f"({_counted(_count(rows, OPEN_ISSUE), 'open issue', 'open issues')}, "
               f"{_counted(_count(rows, MARKETING_OPT_OUT), 'opt-out', 'opt-outs')}) to {out_path}", err=True)

"""The marketing suppression list: who marketing must not target now, one row per reason.

The CSV is the plain shape Salesforce Marketing Cloud and Braze import:
RFC 4180 (CRLF line ends, quotes only where needed), UTF-8 without BOM, a
header row, one row per (customer, reason):

    open_issue         each open issue at/above --min-severity; case_id, severity,
                       suppress_from = opened_at
    marketing_opt_out  the customer opted out; suppress_from = when they opted out
"""
import csv
import io
from datetime import datetime, timezone
from pathlib import Path

import click

from app.customers import SEVERITIES, format_timestamp, open_existing_db
from app.db import db_option
from app.files import write_text_atomically

HEADER = ("customer_id", "phone_e164", "reason_code", "case_id", "severity", "suppress_from", "generated_at")
OPEN_ISSUE = "open_issue"
MARKETING_OPT_OUT = "marketing_opt_out"


def suppression_rows(db, now: datetime | str, min_severity: str = "low") -> list[dict]:
    """Rows keyed by HEADER, sorted by customer; `now` (datetime or ISO string) is the generated_at.

    Only open issues (closed_at IS NULL) at or above `min_severity` count; an
    opt-out always does. Empty case_id/severity are "" so templates and CSV show blanks.
    """
    generated_at = format_timestamp(now) if isinstance(now, datetime) else now
    counted = list(SEVERITIES[SEVERITIES.index(min_severity):])
    placeholders = ", ".join("?" for _ in counted)
    cursor = db.execute(
        f"""
        select c.customer_id, c.phone_e164, '{OPEN_ISSUE}', i.id, i.severity, i.opened_at
          from issues i join customers c on c.customer_id = i.customer_id
         where i.closed_at is null and i.severity in ({placeholders})
        union all
        select customer_id, phone_e164, '{MARKETING_OPT_OUT}', '', '', coalesce(opted_out_at, updated_at)
          from customers
         where marketing_opt_out = 1
        order by 1, 3, 4
        """,
        counted,
    )
    return [dict(zip(HEADER, (*found, generated_at))) for found in cursor.fetchall()]


def write_csv(rows: list[dict], stream) -> None:
    """Write the header and rows as RFC 4180 CSV to a text stream opened with newline=""."""
    writer = csv.DictWriter(stream, fieldnames=HEADER, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)


def suppression_csv(rows: list[dict]) -> str:
    """The CSV as one string (for a download response)."""
    buffer = io.StringIO(newline="")
    write_csv(rows, buffer)
    return buffer.getvalue()


def write_csv_atomically(rows: list[dict], path: Path) -> None:
    """Write the CSV to `path` atomically: readers see the old file or the whole new one."""
    write_text_atomically(path, suppression_csv(rows))


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
    rows = suppression_rows(open_existing_db(db_path), datetime.now(timezone.utc), min_severity)
    if out_path is None:
        click.echo(suppression_csv(rows), nl=False)
        return
    try:
        write_csv_atomically(rows, out_path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {len(rows)} rows ({_count(rows, OPEN_ISSUE)} open issues, "
               f"{_count(rows, MARKETING_OPT_OUT)} opt-outs) to {out_path}", err=True)

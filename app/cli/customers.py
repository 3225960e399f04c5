"""`holdguard customers`: import CRM files, show a customer."""
import json
from pathlib import Path

import click

from app.cli.options import check_region, db_option, existing_db, region_option
from app.core.customers import ImportFileError
from app.storage.connect import DATABASE_ERRORS
from app.storage.crm import customer_view, find_customer_ids, import_customers


@click.group("customers")
def customers_group():
    """Customers, their products and open issues (what the hold policy reads)."""


@customers_group.command("import", short_help="Import customers and open issues from a JSON or CSV file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@region_option
def import_command(file, db_path, region):
    """Import customers from FILE (JSON list or CSV, by extension, else sniffed).

    Rows are keyed by customer_id; a customer already in the database is
    updated in place. Each customer is written in its own transaction, so a
    bad row is reported (FILE:LINE: reason) and skipped while good rows land.
    Exit code 1 if any row was rejected or the file cannot be read.

    \b
    JSON: a list of objects
      [{"customer_id": "C-1001", "phone": "+1 555 555 0100", "name": "Dana Reyes",
        "products": ["Galaxy S7"], "marketing_opt_out": false,
        "open_issues": [{"id": "CASE-1042", "severity": "high",
                         "summary": "Reboots during calls",
                         "opened_at": "2026-11-20T09:12:00Z"}]}]
    Errors name the list index: "FILE:item 3: ...".

    \b
    CSV: header row, UTF-8, columns
      customer_id,phone,name,products,marketing_opt_out,
      issue_id,issue_severity,issue_summary,issue_opened_at
    products: names separated by ';'.  marketing_opt_out: true/false,
    yes/no, 1/0.  One open issue per line: a customer with several issues
    takes several lines with the same customer_id (customer columns may be
    left blank on the extra lines).  An `open_issues` column holding the
    JSON list is accepted too.  Errors name the CSV line: "FILE:7: ...".

    \b
    Rules:
      phone        normalised to E.164; national numbers read in --region
      severity     low | medium | high | critical
      opened_at    ISO 8601 with timezone, e.g. 2026-11-20T09:12:00Z
                   (missing: kept, or now for a new issue)
      open_issues  a snapshot: this customer's open issues missing from it
                   are closed.  A file with no issue field/columns leaves
                   issues untouched; likewise an absent products/name/opt-out
                   field is kept as stored.  Customers not in the file are
                   never touched.
      lengths      ids at most 100 characters (issue ids without '/'),
                   name 200, summary 2000, phone 50; at most 100
                   products of 200 characters each (as the CRM API)

    \b
    Example:
      holdguard customers import crm.csv --region GB
    """
    region = check_region(region)
    db = existing_db(db_path)
    try:
        report = import_customers(db, file, region, progress=True)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from None
    except DATABASE_ERRORS as exc:
        raise click.ClickException(f"{db_path}: {exc} (customers before the failure are saved; "
                                   "re-running the import is safe)") from None
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for error in report.errors:
        click.echo(str(error), err=True)
    click.echo(report.summary())
    if report.rejected:
        raise SystemExit(1)


@customers_group.command("show", short_help="Show a customer (by phone or id) with products and open issues.")
@click.argument("phone_or_id")
@db_option
@region_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as the API's GET /api/customers/ID).")
def show_command(phone_or_id, db_path, region, as_json):
    """Show the customer(s) with this phone number (any format) or customer_id.

    \b
    Example:
      holdguard customers show "(555) 555-0100"
    """
    region = check_region(region)
    db = existing_db(db_path)
    customers = [customer_view(db, customer_id) for customer_id in find_customer_ids(db, phone_or_id, region)]
    if not customers:
        raise click.ClickException(f"no customer with phone or id {phone_or_id!r}")
    if as_json:
        click.echo(json.dumps(customers if len(customers) > 1 else customers[0], indent=2))
        return
    for customer in customers:
        click.echo(_describe(customer))


def _describe(customer: dict) -> str:
    lines = [
        f"{customer['customer_id']}  {customer['name'] or '(no name)'}  {customer['phone_e164']}",
        f"  products:  {', '.join(customer['products']) or '(none)'}",
        f"  marketing: {'opted out' if customer['marketing_opt_out'] else 'allowed'}"
        f"  (updated {customer['updated_at']})",
    ]
    if not customer["open_issues"]:
        lines.append("  open issues: none")
    else:
        lines.append("  open issues:")
        lines.extend(f"    {issue['id']}  {issue['severity']:<8}  opened {issue['opened_at']}  "
                     f"{issue['summary']}" for issue in customer["open_issues"])
    return "\n".join(lines)

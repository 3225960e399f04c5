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
from pathlib import Path

from app.core.files import write_text_atomically

HEADER = ("customer_id", "phone_e164", "reason_code", "case_id", "severity", "suppress_from", "generated_at")
OPEN_ISSUE = "open_issue"
MARKETING_OPT_OUT = "marketing_opt_out"


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

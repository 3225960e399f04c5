"""Marketing suppression export from a real SQLite file: library rows, CSV shape, atomic --out."""
import csv
import io
import json
from datetime import datetime, timezone

import pytest

from app.cli import main
from app.storage.crm import close_issue, import_customers
from app.storage.connect import connect
from app.core import suppression
from app.core.suppression import suppression_csv
from app.storage.crm import suppression_rows

HEADER_LINE = "customer_id,phone_e164,reason_code,case_id,severity,suppress_from,generated_at"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
CUSTOMERS = [
    {"customer_id": "C-1", "phone": "+15555550100", "open_issues": [
        {"id": "CASE-1", "severity": "high", "opened_at": "2026-11-20T09:12:00Z"},
        {"id": "CASE-2", "severity": "low", "opened_at": "2026-11-21T10:00:00Z"}]},
    {"customer_id": "C-2", "phone": "+15555550101", "marketing_opt_out": True,
     "open_issues": [{"id": "CASE-3", "severity": "medium", "opened_at": "2026-11-22T08:00:00Z"}]},
    {"customer_id": "C-3", "phone": "+15555550102", "open_issues": [
        {"id": "CASE-4", "severity": "critical", "opened_at": "2026-11-19T07:00:00Z"}]},
    {"customer_id": "C-4", "phone": "+15555550103", "products": ["Fiber 1G"]},
]


@pytest.fixture
def db(db_path, tmp_path):
    database = connect(db_path)
    path = tmp_path / "crm.json"
    path.write_text(json.dumps(CUSTOMERS))
    report = import_customers(database, path, "US", now="2026-11-23T00:00:00Z")
    assert report.rejected == 0
    close_issue(database, "CASE-4", "2026-11-23T12:00:00Z")
    yield database
    database.conn.close()


def test_rows_one_per_reason_closed_issues_and_clean_customers_left_out(db):
    rows = suppression_rows(db, NOW)
    generated_at = "2026-11-24T12:00:00Z"
    assert rows == [
        {"customer_id": "C-1", "phone_e164": "+15555550100", "reason_code": "open_issue", "case_id": "CASE-1",
         "severity": "high", "suppress_from": "2026-11-20T09:12:00Z", "generated_at": generated_at},
        {"customer_id": "C-1", "phone_e164": "+15555550100", "reason_code": "open_issue", "case_id": "CASE-2",
         "severity": "low", "suppress_from": "2026-11-21T10:00:00Z", "generated_at": generated_at},
        {"customer_id": "C-2", "phone_e164": "+15555550101", "reason_code": "marketing_opt_out", "case_id": "",
         "severity": "", "suppress_from": "2026-11-23T00:00:00Z", "generated_at": generated_at},
        {"customer_id": "C-2", "phone_e164": "+15555550101", "reason_code": "open_issue", "case_id": "CASE-3",
         "severity": "medium", "suppress_from": "2026-11-22T08:00:00Z", "generated_at": generated_at},
    ]


def test_min_severity_filters_issues_but_never_opt_outs(db):
    rows = suppression_rows(db, NOW, min_severity="medium")
    assert [(row["customer_id"], row["reason_code"], row["case_id"]) for row in rows] == [
        ("C-1", "open_issue", "CASE-1"), ("C-2", "marketing_opt_out", ""), ("C-2", "open_issue", "CASE-3")]
    assert [row["case_id"] for row in suppression_rows(db, NOW, "critical")] == [""]


def test_now_may_be_an_iso_string(db):
    assert {row["generated_at"] for row in suppression_rows(db, "2026-11-24T12:00:00Z")} == {"2026-11-24T12:00:00Z"}


def test_csv_is_rfc4180_with_the_exact_header(db):
    text = suppression_csv(suppression_rows(db, NOW))
    lines = text.split("\r\n")
    assert lines[0] == HEADER_LINE
    assert lines[1] == "C-1,+15555550100,open_issue,CASE-1,high,2026-11-20T09:12:00Z,2026-11-24T12:00:00Z"
    assert lines[3] == "C-2,+15555550101,marketing_opt_out,,,2026-11-23T00:00:00Z,2026-11-24T12:00:00Z"
    assert lines[-1] == "" and len(lines) == 6  # every record ends in CRLF


def test_cli_export_to_stdout(runner, db):
    result = runner.invoke(main, ["suppression", "export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["customer_id"], row["reason_code"], row["case_id"]) for row in rows] == [
        ("C-1", "open_issue", "CASE-1"), ("C-1", "open_issue", "CASE-2"),
        ("C-2", "marketing_opt_out", ""), ("C-2", "open_issue", "CASE-3")]
    assert len({row["generated_at"] for row in rows}) == 1
    assert result.stdout.splitlines()[0] == HEADER_LINE


def test_cli_export_to_file_replaces_it_whole(runner, db, tmp_path):
    out = tmp_path / "suppression.csv"
    out.write_text("old export\n")
    result = runner.invoke(main, ["suppression", "export", "--out", str(out), "--min-severity", "high"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows (1 open issue, 1 opt-out)" in result.stderr
    content = out.read_bytes().decode("utf-8")
    assert content.startswith(HEADER_LINE + "\r\n") and "CASE-2" not in content
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_failed_export_leaves_the_old_file_and_no_temp_file(runner, db, tmp_path, monkeypatch):
    out = tmp_path / "exports" / "suppression.csv"
    out.parent.mkdir()
    out.write_text("previous complete export\n")

    def header_then_disk_full(rows, stream):
        stream.write(HEADER_LINE + "\r\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(suppression, "write_csv", header_then_disk_full)
    result = runner.invoke(main, ["suppression", "export", "--out", str(out)])
    assert result.exit_code == 1
    assert f"cannot write {out}: No space left on device" in result.stderr
    assert out.read_text() == "previous complete export\n"
    assert [path.name for path in out.parent.iterdir()] == ["suppression.csv"]


def test_cli_export_to_a_missing_directory_is_a_one_line_error(runner, db, tmp_path):
    result = runner.invoke(main, ["suppression", "export", "--out", str(tmp_path / "no" / "s.csv")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: cannot write")


def test_cli_export_without_database_fails_clearly(runner, tmp_path):
    result = runner.invoke(main, ["suppression", "export", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and "holdguard db init" in result.stderr


def test_opt_out_suppresses_from_when_the_customer_opted_out_not_their_last_change(db, tmp_path):
    def opt_out_from():
        (row,) = [r for r in suppression_rows(db, NOW) if r["reason_code"] == "marketing_opt_out"]
        return row["suppress_from"]

    assert opt_out_from() == "2026-11-23T00:00:00Z"
    later = tmp_path / "later.json"
    later.write_text(json.dumps([{"customer_id": "C-2", "products": ["Galaxy S7"]}]))
    import_customers(db, later, "US", now="2026-11-24T09:00:00Z")  # a product change, still opted out
    assert opt_out_from() == "2026-11-23T00:00:00Z"
    later.write_text(json.dumps([{"customer_id": "C-2", "marketing_opt_out": False}]))
    import_customers(db, later, "US", now="2026-11-24T10:00:00Z")
    later.write_text(json.dumps([{"customer_id": "C-2", "marketing_opt_out": True}]))
    import_customers(db, later, "US", now="2026-11-24T11:00:00Z")  # opted out again: a new start
    assert opt_out_from() == "2026-11-24T11:00:00Z"

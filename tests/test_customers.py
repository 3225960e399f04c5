"""Customers import: JSON and CSV into a real SQLite file, through the library and the CLI."""
import json
from pathlib import Path

import pytest

from app.cli import main
from app.core.customers import ImportFileError
from app.storage.crm import customer_view, import_customers
from app.storage.connect import connect
from app.core.phones import to_e164

DEMO_CUSTOMERS = Path(__file__).parent.parent / "app" / "demo_data" / "customers.json"
CSV_HEADER = "customer_id,phone,name,products,marketing_opt_out,issue_id,issue_severity,issue_summary,issue_opened_at\n"


@pytest.fixture
def db(db_path):
    database = connect(db_path)
    yield database
    database.conn.close()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def issues_of(db, customer_id):
    return {row["id"]: row for row in db["issues"].rows_where("customer_id = ?", [customer_id])}


# --- phones -------------------------------------------------------------------

@pytest.mark.parametrize("raw, region, expected", [
    ("+1 555 555 0100", "US", "+15555550100"),
    ("(555) 555-0102", "US", "+15555550102"),
    ("555.555.0102", "us", "+15555550102"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("+44 20 7946 0958", "US", "+442079460958"),
    (15555550100, "US", "+15555550100"),
])
def test_to_e164_normalises_international_and_national_numbers(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize("raw, reason", [
    ("12", "too short"),
    ("555 0100", "no area code"),
    ("not a phone", "not a number"),
    ("+1 555 555 0100 999 999", "too long"),
])
def test_to_e164_rejects_impossible_numbers_with_a_reason(raw, reason):
    with pytest.raises(ValueError, match=rf"is not a valid phone number \({reason}\)"):
        to_e164(raw, "US")


def test_to_e164_names_an_unknown_region():
    with pytest.raises(ValueError, match="'XX' is not a known region"):
        to_e164("555 555 0100", "XX")


# --- JSON -----------------------------------------------------------------------

def test_demo_json_imports_every_persona_normalised(db):
    report = import_customers(db, DEMO_CUSTOMERS, "US", now="2026-11-24T10:00:00Z")
    assert (len(report.created), len(report.updated), report.rejected) == (4, 0, 0)
    dana = customer_view(db, "C-1001")
    assert dana["phone_e164"] == "+15555550100"
    assert dana["products"] == ["Galaxy S7", "Unlimited Plus"]
    assert [(issue["id"], issue["severity"], issue["closed_at"]) for issue in dana["open_issues"]] == [
        ("CASE-1042", "high", None)]
    assert customer_view(db, "C-1003")["phone_e164"] == "+15555550102"  # "(555) 555-0102"
    assert customer_view(db, "C-1004")["marketing_opt_out"] is True
    # stored exactly as app/schema.py defines it: products as JSON text, opt-out as 0/1
    stored = db["customers"].get("C-1001")
    assert json.loads(stored["products"]) == ["Galaxy S7", "Unlimited Plus"]
    assert stored["marketing_opt_out"] == 0 and stored["updated_at"] == "2026-11-24T10:00:00Z"


def test_reimport_updates_in_place_and_closes_issues_that_vanished(db, tmp_path):
    first = [{"customer_id": "C-1", "phone": "+15555550100", "name": "Ann", "products": ["Galaxy S7"],
              "open_issues": [{"id": "CASE-1", "severity": "high", "summary": "drops",
                               "opened_at": "2026-11-20T09:00:00Z"},
                              {"id": "CASE-2", "severity": "low", "summary": "bill",
                               "opened_at": "2026-11-21T09:00:00Z"}]}]
    second = [{"customer_id": "C-1", "phone": "(555) 555-0199", "name": "Ann Lee", "products": ["Fiber 1G"],
               "open_issues": [{"id": "CASE-2", "severity": "medium", "summary": "bill",
                                "opened_at": "2026-11-21T09:00:00Z"}]}]
    import_customers(db, write(tmp_path, "a.json", json.dumps(first)), "US", now="2026-11-22T00:00:00Z")
    report = import_customers(db, write(tmp_path, "b.json", json.dumps(second)), "US",
                              now="2026-11-23T00:00:00Z")
    assert (report.created, report.updated, report.rejected) == ([], ["C-1"], 0)
    assert db["customers"].count == 1
    ann = customer_view(db, "C-1")
    assert (ann["name"], ann["phone_e164"], ann["products"]) == ("Ann Lee", "+15555550199", ["Fiber 1G"])
    issues = issues_of(db, "C-1")
    assert issues["CASE-1"]["closed_at"] == "2026-11-23T00:00:00Z"  # gone from the snapshot: closed
    assert issues["CASE-2"]["closed_at"] is None and issues["CASE-2"]["severity"] == "medium"


def test_identical_reimport_changes_nothing_not_even_updated_at(db):
    import_customers(db, DEMO_CUSTOMERS, "US", now="2026-11-24T10:00:00Z")
    report = import_customers(db, DEMO_CUSTOMERS, "US", now="2026-11-25T10:00:00Z")
    assert (report.created, report.updated, len(report.unchanged)) == ([], [], 4)
    assert report.summary() == "imported 0, updated 0, rejected 0 (4 unchanged)"
    assert db["customers"].get("C-1004")["updated_at"] == "2026-11-24T10:00:00Z"


def test_reimport_reopens_a_closed_issue_that_is_back_in_the_snapshot(db, tmp_path):
    with_issue = [{"customer_id": "C-1", "phone": "+15555550100",
                   "open_issues": [{"id": "CASE-1", "severity": "high", "opened_at": "2026-11-20T09:00:00Z"}]}]
    without = [{"customer_id": "C-1", "phone": "+15555550100", "open_issues": []}]
    path = write(tmp_path, "a.json", json.dumps(with_issue))
    import_customers(db, path, "US")
    import_customers(db, write(tmp_path, "b.json", json.dumps(without)), "US")
    assert issues_of(db, "C-1")["CASE-1"]["closed_at"] is not None
    import_customers(db, path, "US")
    assert issues_of(db, "C-1")["CASE-1"]["closed_at"] is None


def test_absent_fields_keep_what_is_stored(db, tmp_path):
    """A phone-book file without issues or products must not close issues or wipe products."""
    import_customers(db, DEMO_CUSTOMERS, "US")
    phone_book = [{"customer_id": "C-1001", "phone": "+15555550100", "name": "Dana R."}]
    report = import_customers(db, write(tmp_path, "phones.json", json.dumps(phone_book)), "US")
    assert report.updated == ["C-1001"]
    dana = customer_view(db, "C-1001")
    assert dana["name"] == "Dana R." and dana["products"] == ["Galaxy S7", "Unlimited Plus"]
    assert [issue["id"] for issue in dana["open_issues"]] == ["CASE-1042"]


def test_bad_json_items_are_reported_by_index_and_good_items_still_land(db, tmp_path):
    items = [
        {"customer_id": "C-1", "phone": "+15555550100"},
        {"customer_id": "C-2", "phone": "12"},
        {"phone": "+15555550102"},
        {"customer_id": "C-3", "phone": "+15555550103",
         "open_issues": [{"id": "CASE-3", "severity": "urgent", "opened_at": "yesterday"}]},
        "not an object",
        {"customer_id": "C-1", "phone": "+15555550104"},
        {"customer_id": "C-4", "phone": "+15555550105", "marketing_opt_out": "maybe"},
        {"customer_id": "C-5", "phone": "+15555550106", "open_issues": [{"id": "CASE-5", "severity": "low",
                                                                        "opened_at": "2026-11-20 09:00"}]},
    ]
    path = write(tmp_path, "crm.json", json.dumps(items))
    report = import_customers(db, path, "US")
    assert report.created == ["C-1"]
    assert report.rejected == 7
    assert [str(error) for error in report.errors] == [
        f"{path}:item 1: field 'phone': '12' is not a valid phone number (too short)",
        f"{path}:item 2: field 'customer_id': missing",
        f"{path}:item 3: field 'open_issues[0].severity': 'urgent' is not one of low|medium|high|critical",
        f"{path}:item 3: field 'open_issues[0].opened_at': 'yesterday' is not an ISO 8601 timestamp "
        "(e.g. 2026-11-20T09:12:00Z)",
        f"{path}:item 4: expected an object with customer_id, got 'not an object'",
        f"{path}:item 5: field 'customer_id': 'C-1' already given at item 0",
        f"{path}:item 6: field 'marketing_opt_out': 'maybe' is not a boolean (true/false, yes/no, 1/0)",
        f"{path}:item 7: field 'open_issues[0].opened_at': '2026-11-20 09:00' has no timezone "
        "(add Z for UTC, e.g. 2026-11-20T09:12:00Z)",
    ]
    assert db["customers"].count == 1 and db["issues"].count == 0


def test_import_applies_the_apis_limits_and_refuses_what_could_not_be_stored(db, tmp_path):
    """The same record rules as the CRM API: lengths, '/' in issue ids, lone surrogates, UTC overflow."""
    items = [
        {"customer_id": "C-1", "phone": "+15555550100", "name": "n" * 200},
        {"customer_id": "C-2", "phone": "+15555550101", "name": "n" * 201},
        {"customer_id": "C-3", "phone": "+15555550102", "open_issues": [{"id": "CASE/3", "severity": "low"}]},
        {"customer_id": "C-4", "phone": "+15555550103", "products": ["ok", "Galaxy \ud800"]},
        {"customer_id": "C-5", "phone": "+15555550104",
         "open_issues": [{"id": "CASE-5", "severity": "low", "opened_at": "0001-01-01T00:00:00+14:00"}]},
        {"customer_id": "C-6", "phone": "+15555550105", "products": ["p"] * 101},
    ]
    path = write(tmp_path, "crm.json", json.dumps(items))  # ASCII: the surrogate is written as \\ud800
    report = import_customers(db, path, "US")
    assert report.created == ["C-1"]
    assert [str(error) for error in report.errors] == [
        f"{path}:item 1: field 'name': too long: at most 200 characters, got 201",
        f"{path}:item 2: field 'open_issues[0].id': 'CASE/3' contains '/', which an issue id cannot",
        f"{path}:item 3: field 'products': contains '\\ud800', a lone surrogate (not valid Unicode text)",
        f"{path}:item 4: field 'open_issues[0].opened_at': '0001-01-01T00:00:00+14:00' is out of range "
        "(years 1 to 9999, in UTC)",
        f"{path}:item 5: field 'products': too long: at most 100 items, got 101",
    ]


def test_issue_of_another_customer_rejects_the_row_without_half_writing_it(db, tmp_path):
    owner = [{"customer_id": "C-1", "phone": "+15555550100",
              "open_issues": [{"id": "CASE-1", "severity": "high"}]}]
    import_customers(db, write(tmp_path, "a.json", json.dumps(owner)), "US")
    thief = [{"customer_id": "C-2", "phone": "+15555550101", "name": "Bob",
              "open_issues": [{"id": "CASE-9", "severity": "low"}, {"id": "CASE-1", "severity": "low"}]}]
    report = import_customers(db, write(tmp_path, "b.json", json.dumps(thief)), "US")
    assert report.rejected == 1
    assert "issue 'CASE-1' belongs to customer 'C-1'" in str(report.errors[0])
    # the customer row and CASE-9 were in the same transaction: rolled back together
    assert customer_view(db, "C-2") is None and db["issues"].count == 1
    assert issues_of(db, "C-1")["CASE-1"]["severity"] == "high"


def test_timestamps_are_stored_in_utc_with_z(db, tmp_path):
    items = [{"customer_id": "C-1", "phone": "+15555550100",
              "open_issues": [{"id": "CASE-1", "severity": "HIGH", "opened_at": "2026-11-20T11:12:00+02:00"}]}]
    import_customers(db, write(tmp_path, "a.json", json.dumps(items)), "US")
    issue = issues_of(db, "C-1")["CASE-1"]
    assert (issue["opened_at"], issue["severity"]) == ("2026-11-20T09:12:00Z", "high")


@pytest.mark.parametrize("name, text, message", [
    ("broken.json", '[{"customer_id": "C-1",', r"broken\.json:1:\d+: invalid JSON"),
    ("object.json", '{"customer_id": "C-1"}', "expected a JSON list of customers, got dict"),
    ("empty.csv", "", "empty file"),
    ("noid.csv", "phone,name\n+15555550100,Ann\n", "no 'customer_id' column"),
    ("excel-semicolons.csv", "customer_id ; phone;products\nC1;+15555550100;Galaxy S7\n",
     "columns are separated by ';': save it as comma-separated CSV"),
])
def test_unreadable_files_write_nothing(db, tmp_path, name, text, message):
    with pytest.raises(ImportFileError, match=message):
        import_customers(db, write(tmp_path, name, text), "US")
    assert db["customers"].count == 0


def test_missing_and_non_utf8_files_are_unreadable(db, tmp_path):
    with pytest.raises(ImportFileError, match="cannot read"):
        import_customers(db, tmp_path / "nope.csv", "US")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("customer_id,phone,name\nC-1,+15555550100,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match="not UTF-8"):
        import_customers(db, latin1, "US")


# --- CSV ---------------------------------------------------------------------------

def test_csv_with_several_lines_per_customer_and_national_numbers(db, tmp_path):
    path = write(tmp_path, "crm.csv", CSV_HEADER
                 + "C-1,+1 (415) 555-2671,Ann,Galaxy S7; Fiber 1G,no,CASE-1,high,Drops calls,2026-11-20T09:12:00Z\n"
                 + "C-1,,,,,CASE-2,low,\"Bill, twice\",2026-11-21T10:00:00Z\n"
                 + "C-2,020 7946 0958,Bob,,YES,,,,\n")
    report = import_customers(db, path, "GB")
    assert (report.created, report.rejected) == (["C-1", "C-2"], 0)
    ann = customer_view(db, "C-1")
    assert ann["phone_e164"] == "+14155552671"  # international: region not used
    assert ann["products"] == ["Galaxy S7", "Fiber 1G"] and ann["marketing_opt_out"] is False
    assert [(issue["id"], issue["summary"]) for issue in ann["open_issues"]] == [
        ("CASE-1", "Drops calls"), ("CASE-2", "Bill, twice")]
    bob = customer_view(db, "C-2")
    assert (bob["phone_e164"], bob["products"], bob["marketing_opt_out"]) == ("+442079460958", [], True)


def test_csv_open_issues_json_column_and_excel_bom(db, tmp_path):
    issues = json.dumps([{"id": "CASE-7", "severity": "critical", "opened_at": "2026-11-20T09:00:00Z"}])
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeffcustomer_id,phone,open_issues\r\n"
                      f"C-7,+15555550107,\"{issues.replace(chr(34), chr(34) * 2)}\"\r\n").encode("utf-8"))
    report = import_customers(db, path, "US")
    assert report.created == ["C-7"]
    assert [issue["severity"] for issue in customer_view(db, "C-7")["open_issues"]] == ["critical"]


def test_csv_bad_lines_are_reported_by_line_number_and_good_lines_land(db, tmp_path):
    path = write(tmp_path, "crm.csv", CSV_HEADER
                 + "C-1,+15555550100,Ann,,no,,,,\n"                       # 2 good
                 + "C-2,12,Bob,,no,,,,\n"                                 # 3 bad phone
                 + ",+15555550102,Nobody,,,,,,\n"                         # 4 no customer_id
                 + "C-3,+15555550103,Cy,,no,CASE-3,urgent,x,2026-11-20T09:00:00Z\n"  # 5 bad severity
                 + "C-4,+15555550104,Dee,,no,,,,\n"                       # 6 good
                 + "C-4,+15555550199,,,,CASE-4,low,y,2026-11-20T09:00:00Z\n"  # 7 conflicting phone
                 + "C-5,+15555550105\n"                                   # 8 short line
                 + "C-6,+15555550106,Eve,,no,,,,\n"                       # 9 good
                 + "\"C-7,unterminated\n")                                # 10 malformed CSV
    report = import_customers(db, path, "US")
    assert sorted(report.created) == ["C-1", "C-6"]
    assert report.rejected == 6
    assert [str(error) for error in report.errors] == [
        f"{path}:3: field 'phone': '12' is not a valid phone number (too short)",
        f"{path}:4: field 'customer_id': missing",
        f"{path}:5: field 'issue_severity': 'urgent' is not one of low|medium|high|critical",
        f"{path}:7: field 'phone': '+15555550199' differs from line 6 for the same customer",
        f"{path}:8: has 2 fields, the header has 9",
        f"{path}:10: malformed CSV: unexpected end of data",
    ]
    assert customer_view(db, "C-4") is None  # its second line was bad: the whole customer waits


def test_csv_without_issue_columns_leaves_issues_alone(db, tmp_path):
    import_customers(db, DEMO_CUSTOMERS, "US")
    path = write(tmp_path, "phones.csv", "customer_id,phone\nC-1001,+15555550100\n")
    import_customers(db, path, "US")
    assert [issue["id"] for issue in customer_view(db, "C-1001")["open_issues"]] == ["CASE-1042"]


def test_csv_with_issue_columns_closes_issues_a_customer_no_longer_has(db, tmp_path):
    import_customers(db, DEMO_CUSTOMERS, "US")
    path = write(tmp_path, "crm.csv", CSV_HEADER + "C-1001,+15555550100,Dana Reyes,Galaxy S7,no,,,,\n")
    import_customers(db, path, "US")
    assert customer_view(db, "C-1001")["open_issues"] == []
    assert customer_view(db, "C-1002")["products"] == ["galaxy s7"]  # not in the file: untouched


def test_extension_less_file_is_sniffed(db, tmp_path):
    json_file = write(tmp_path, "export", json.dumps([{"customer_id": "C-1", "phone": "+15555550100"}]))
    csv_file = write(tmp_path, "export.txt", "customer_id,phone\nC-2,+15555550101\n")
    assert import_customers(db, json_file, "US").created == ["C-1"]
    assert import_customers(db, csv_file, "US").created == ["C-2"]


# --- CLI ------------------------------------------------------------------------------

def test_cli_import_demo_file_then_reimport(runner, db_path):
    result = runner.invoke(main, ["customers", "import", str(DEMO_CUSTOMERS), "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported 4, updated 0, rejected 0"
    again = runner.invoke(main, ["customers", "import", str(DEMO_CUSTOMERS)])  # --db from HOLDGUARD_DB
    assert again.exit_code == 0
    assert again.stdout.startswith("imported 0, updated 0, rejected 0")


def test_cli_bad_rows_exit_1_with_located_errors_and_summary(runner, db_path, tmp_path):
    path = write(tmp_path, "crm.csv", "customer_id,phone\nC-1,+15555550100\nC-2,12\n")
    result = runner.invoke(main, ["customers", "import", str(path), "--db", str(db_path)])
    assert result.exit_code == 1
    assert f"{path}:3: field 'phone': '12' is not a valid phone number (too short)" in result.stderr
    assert result.stdout.strip() == "imported 1, updated 0, rejected 1"


def test_cli_unreadable_file_is_one_line_exit_1(runner, db_path, tmp_path):
    path = write(tmp_path, "crm.json", "[{")
    result = runner.invoke(main, ["customers", "import", str(path), "--db", str(db_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "invalid JSON" in result.stderr
    assert connect(db_path)["customers"].count == 0


def test_cli_missing_database_says_to_run_db_init(runner, tmp_path):
    missing = tmp_path / "none.db"
    result = runner.invoke(main, ["customers", "import", str(DEMO_CUSTOMERS), "--db", str(missing)])
    assert result.exit_code == 1 and "holdguard db init" in result.stderr
    assert not missing.exists()


def test_cli_region_option_reads_national_numbers(runner, db_path, tmp_path):
    path = write(tmp_path, "uk.csv", "customer_id,phone\nC-1,020 7946 0958\n")
    result = runner.invoke(main, ["customers", "import", str(path), "--region", "GB"])
    assert result.exit_code == 0, result.output
    assert customer_view(connect(db_path), "C-1")["phone_e164"] == "+442079460958"
    unknown = runner.invoke(main, ["customers", "import", str(path), "--region", "ZZ"])
    assert unknown.exit_code == 2 and "'ZZ' is not a region code" in unknown.stderr


def test_cli_show_by_any_phone_format_and_by_id(runner, db_path):
    runner.invoke(main, ["customers", "import", str(DEMO_CUSTOMERS)])
    result = runner.invoke(main, ["customers", "show", "(555) 555-0100"])
    assert result.exit_code == 0, result.output
    assert "C-1001  Dana Reyes  +15555550100" in result.stdout
    assert "CASE-1042  high" in result.stdout and "Galaxy S7, Unlimited Plus" in result.stdout
    as_json = runner.invoke(main, ["customers", "show", "C-1004", "--json"])
    assert json.loads(as_json.stdout)["marketing_opt_out"] is True
    missing = runner.invoke(main, ["customers", "show", "+15555550999"])
    assert missing.exit_code == 1 and "no customer" in missing.stderr


def test_cli_help_documents_the_csv_issue_encoding(runner):
    result = runner.invoke(main, ["customers", "import", "--help"])
    assert result.exit_code == 0
    assert "issue_id,issue_severity,issue_summary,issue_opened_at" in result.stdout
    assert "snapshot" in result.stdout
    assert "name 200, summary 2000, phone 50" in result.stdout and "issue ids without '/'" in result.stdout

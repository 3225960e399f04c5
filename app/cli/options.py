"""Options and helpers every data command shares; library errors become one-line messages here."""
import click
import phonenumbers

from app.storage.connect import (DATABASE_ERRORS, DatabaseMissing, UnsupportedDatabase, describe, one_line,
                                 open_existing)
from app.storage.schema import open_database


def db_option(function):
    """The --db option every data command takes (env HOLDGUARD_DB)."""
    return click.option("--db", "db_path", envvar="HOLDGUARD_DB", default="./holdguard.db",
                        show_default=True, metavar="FILE|URL",
                        help="SQLite file, sqlite:///path, or postgresql://user:password@host:port/dbname "
                             "(env HOLDGUARD_DB).")(function)


def region_option(function):
    return click.option("--region", envvar="HOLDGUARD_DEFAULT_REGION", default="US", show_default=True,
                        help="Region for phone numbers written without +country code "
                             "(ISO code such as US, GB; env HOLDGUARD_DEFAULT_REGION).")(function)


def check_region(region: str) -> str:
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise click.BadParameter(f"{region!r} is not a region code (e.g. US, GB, DE)", param_hint="--region")
    return region.upper()


def existing_db(db_path: str, missing_hint: str = "run `holdguard db init`"):
    """An initialised database, or stop with a one-line error saying what to run."""
    try:
        db = open_existing(db_path)
        tables = set(db.table_names())
    except DatabaseMissing:
        raise click.ClickException(f"{describe(db_path)}: database file does not exist ({missing_hint})") from None
    except UnsupportedDatabase as exc:
        raise click.ClickException(str(exc)) from None
    except DATABASE_ERRORS as exc:
        raise click.ClickException(unusable(db_path, exc)) from None
    if not {"customers", "issues"} <= tables:
        raise click.ClickException(f"{describe(db_path)}: no customers table ({missing_hint})")
    return db


def writable_db(db_path: str):
    """The database for a command that writes: created and migrated if needed, or a one-line error."""
    try:
        return open_database(db_path)
    except UnsupportedDatabase as exc:
        raise click.ClickException(str(exc)) from None
    except DATABASE_ERRORS as exc:
        raise click.ClickException(unusable(db_path, exc)) from None


def unusable(db_path: str, error: Exception) -> str:
    """One line: which database, and why it cannot be used."""
    return f"{describe(db_path)}: not a usable database ({one_line(error)})"

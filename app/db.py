"""The SQLite connection: one per request on `g`, WAL, a busy timeout, schema on `db init`."""
import logging
import sqlite3
from pathlib import Path

import click
import sqlite_utils

BUSY_TIMEOUT_MS = 2000
log = logging.getLogger(__name__)


def connect(path: str | Path, *, create: bool = True) -> sqlite_utils.Database:
    """Open the database at `path` with WAL and a busy timeout.

    With create=False a missing file raises FileNotFoundError instead of
    silently creating an empty database (the webhook must notice that).
    """
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(f"{path}: database file does not exist (run `holdguard db init`)")
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db = sqlite_utils.Database(conn)
    if db.journal_mode != "wal":
        db.enable_wal()
    return db


def init_schema(db: sqlite_utils.Database) -> None:
    """Create every table holdguard uses; safe to run again."""
    from app import recordings, schema
    from audits import store

    schema.create_tables(db)
    store.create_tables(db)
    recordings.create_table(db)


def open_database(path: str | Path) -> sqlite_utils.Database:
    """The database at `path` for a command that writes to it: created if missing, with every table."""
    db = connect(path)
    try:
        init_schema(db)
    except BaseException:
        db.conn.close()
        raise
    return db


def get_db() -> sqlite_utils.Database:
    """The request's database, opened on first use."""
    from flask import current_app, g  # here, not at the top: the audit CLI uses this module without Flask

    if "db" not in g:
        g.db = connect(current_app.config["HOLDGUARD_DB"], create=False)
    return g.db


def close_db(_exc=None) -> None:
    from flask import g

    db = g.pop("db", None)
    if db is not None:
        db.conn.close()


def upgrade_existing(path: str | Path) -> list[str]:
    """Add the columns newer than an existing database at `path` (app start); "table.column" per one added.

    A missing file is left alone (`holdguard db init` makes it; the webhooks
    report it). A locked or unreadable one is logged, not raised: the app must
    still start and answer Twilio (music, failing closed).
    """
    from app import callers, schema

    try:
        db = callers.open_webhook_db(path)  # never creates the file, waits little for a lock
    except FileNotFoundError:
        return []
    except sqlite3.Error as error:
        log.error("%s: could not open it to add the columns this version needs: %s", path, error)
        return []
    try:
        added = schema.add_missing_columns(db)
    except sqlite3.Error as error:
        log.error("%s: could not add the columns this version needs (run `holdguard db init`): %s", path, error)
        return []
    finally:
        db.close()
    if added:
        log.info("%s: added column(s) %s", path, ", ".join(added))
    return added


def init_app(app) -> None:
    """Close the request's connection after each request; bring an existing database's columns up to date."""
    app.teardown_appcontext(close_db)
    upgrade_existing(app.config["HOLDGUARD_DB"])


def db_option(function):
    """The --db option every data command takes (env HOLDGUARD_DB)."""
    return click.option("--db", "db_path", envvar="HOLDGUARD_DB", default="./holdguard.db",
                        show_default=True, metavar="FILE", type=click.Path(dir_okay=False),
                        help="SQLite database (env HOLDGUARD_DB).")(function)


@click.group("db")
def db_group():
    """Create and inspect the SQLite database."""


@db_group.command("init")
@db_option
def init_command(db_path):
    """Create the tables (idempotent: existing data is kept)."""
    db = open_database(db_path)
    click.echo(f"initialised {db_path} ({len(db.table_names())} tables)")

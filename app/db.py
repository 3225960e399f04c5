"""The SQLite connection: one per request on `g`, WAL, a busy timeout, schema on `db init`."""
import sqlite3
from pathlib import Path

import click
import sqlite_utils
from flask import current_app, g

BUSY_TIMEOUT_MS = 2000


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


def get_db() -> sqlite_utils.Database:
    """The request's database, opened on first use."""
    if "db" not in g:
        g.db = connect(current_app.config["HOLDGUARD_DB"], create=False)
    return g.db


def close_db(_exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()


def init_app(app) -> None:
    app.teardown_appcontext(close_db)


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
    db = connect(db_path)
    init_schema(db)
    click.echo(f"initialised {db_path} ({len(db.table_names())} tables)")

"""The one way to open holdguard's database, and write transactions that wait instead of failing.

`HOLDGUARD_DB` (and every `--db`) names the database: a file path or a
`sqlite:///path` URL for the embedded SQLite file (WAL mode, readable in
Datasette while the webhook runs), or a libpq URL
`postgresql://user:password@host:port/dbname` for PostgreSQL, which several
webhook hosts share (app/storage/postgres.py).

Writes that read first must start `BEGIN IMMEDIATE` (`transaction()`): in WAL
mode a deferred transaction that has read cannot wait for the write lock when
another writer took it meanwhile (SQLITE_BUSY at once, no busy timeout), so a
customer import would fail under webhook load. IMMEDIATE takes the write lock
first and waits up to the busy timeout for it.
"""
import contextlib
import sqlite3
import time
from pathlib import Path

import psycopg
import sqlite_utils

from app.storage.postgres import PostgresDatabase

SQLITE_URL_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# Errors that mean "the database failed", whichever it is.
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error)
# Commands and the API wait this long for another writer; the webhook far less (see playlog).
BUSY_TIMEOUT_S = 5.0
# A writer that commits transaction after transaction (an import) pauses this long after each
# WRITE_BURST_S of them. SQLite's busy handler polls instead of queueing, so without the pause a
# webhook waiting for the lock could miss every gap between the importer's transactions.
WRITE_BURST_S = 0.04
WRITE_PAUSE_S = 0.03


class DatabaseMissing(FileNotFoundError):
    """The database file does not exist and the caller asked not to create it."""


class UnsupportedDatabase(ValueError):
    """HOLDGUARD_DB names a kind of database this version cannot open."""


class SqliteDatabase(sqlite_utils.Database):
    dialect = "sqlite"

    def query(self, sql: str, params=()) -> list[dict]:
        """Rows as dicts, all at once (as PostgresDatabase.query). Straight to the driver: sqlite-utils
        wraps each query in a savepoint (three statements for one), a cost every wait request paid."""
        cursor = self.conn.execute(sql, params)
        keys = [column[0] for column in cursor.description or ()]
        return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def executemany(self, sql: str, rows) -> None:
        self.conn.executemany(sql, list(rows))


def is_postgres(url) -> bool:
    return str(url).startswith(POSTGRES_SCHEMES)


def sqlite_path(url: str | Path) -> Path:
    """The file a database URL or path names: "sqlite:///data/h.db" or "data/h.db" -> data/h.db."""
    text = str(url)
    if text.startswith(SQLITE_URL_PREFIX):
        return Path(text[len(SQLITE_URL_PREFIX):])
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise UnsupportedDatabase(f"{scheme}:// is not a database holdguard opens: use a SQLite file path, "
                                  "sqlite:///path or postgresql://user:password@host:port/dbname")
    return Path(text)


def describe(url) -> str:
    """The database for messages: a SQLite path, or a PostgreSQL URL without its password."""
    if not is_postgres(url):
        return str(url)
    info = psycopg.conninfo.conninfo_to_dict(str(url))
    return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '5432')}/{info.get('dbname', '')}"


def connect(url: str | Path, *, create: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S,
            statement_timeout_s: float | None = None, pooled: bool = False):
    """Open the database; with create=False a missing SQLite file raises DatabaseMissing.

    Statements outside `transaction()` commit on their own. SQLite:
    synchronous=NORMAL is safe in WAL mode (a power cut may lose the last
    commits, never corrupt the file). PostgreSQL: a pooled connection whose lock
    waits end after `busy_timeout_s` and statements after `statement_timeout_s`
    (None: no limit, for commands that copy or import much); `pooled` for a
    long-running server.
    """
    if is_postgres(url):
        return PostgresDatabase(str(url), pooled=pooled, timeout_s=busy_timeout_s,
                                lock_timeout_ms=int(busy_timeout_s * 1000),
                                statement_timeout_ms=int((statement_timeout_s or 0) * 1000))
    path = sqlite_path(url)
    if not create and not path.exists():
        raise DatabaseMissing(f"{path}: database file does not exist (run `holdguard db init`)")
    target = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(target, uri=True, isolation_level=None, timeout=busy_timeout_s,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return SqliteDatabase(conn)


def transaction(db):
    """One write transaction: on SQLite it takes the write lock first (BEGIN IMMEDIATE); nested, a savepoint."""
    if db.dialect == "postgresql":
        return db.transaction()
    return _sqlite_transaction(db)


@contextlib.contextmanager
def _sqlite_transaction(db):
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def one_line(error: Exception) -> str:
    """A database error on one line (psycopg's run over several), for messages and pages."""
    return " ".join(str(error).split()) or type(error).__name__


def is_unavailable(error: Exception) -> bool:
    """The database did not answer in time: a lock held too long, a statement cut off, no free
    connection, a server down or unreachable."""
    if isinstance(error, sqlite3.OperationalError):  # locked, or its disk full: waiting would not help
        return any(word in str(error) for word in ("locked", "busy", "disk is full"))
    return isinstance(error, (psycopg.OperationalError, psycopg.errors.LockNotAvailable,
                              psycopg.errors.QueryCanceled))


def open_existing(url: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                  statement_timeout_s: float | None = None, pooled: bool = False):
    """An initialised database for a command that reads or updates it; DatabaseMissing if there is none."""
    return connect(url, create=False, busy_timeout_s=busy_timeout_s, statement_timeout_s=statement_timeout_s,
                   pooled=pooled)


class WriterPacing:
    """For a loop of write transactions: call `after_commit()` after each; it pauses now and then."""

    def __init__(self, burst_s: float = WRITE_BURST_S, pause_s: float = WRITE_PAUSE_S):
        self.burst_s, self.pause_s = burst_s, pause_s
        self.burst_started = time.monotonic()

    def after_commit(self) -> None:
        if time.monotonic() - self.burst_started >= self.burst_s:
            time.sleep(self.pause_s)
            self.burst_started = time.monotonic()

"""The one way to open holdguard's database, and write transactions that wait instead of failing.

`HOLDGUARD_DB` (and every `--db`) names the database: a file path or a
`sqlite:///path` URL for the embedded SQLite file (WAL mode, readable in
Datasette while the webhook runs).

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

import sqlite_utils

SQLITE_URL_PREFIX = "sqlite:///"
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


def sqlite_path(url: str | Path) -> Path:
    """The file a database URL or path names: "sqlite:///data/h.db" or "data/h.db" -> data/h.db."""
    text = str(url)
    if text.startswith(SQLITE_URL_PREFIX):
        return Path(text[len(SQLITE_URL_PREFIX):])
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise UnsupportedDatabase(f"{scheme}:// databases are not supported yet: use a SQLite file path "
                                  "or sqlite:///path")
    return Path(text)


def connect(url: str | Path, *, create: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """Open the database; with create=False a missing file raises DatabaseMissing.

    Statements outside `transaction()` commit on their own (isolation_level=None).
    synchronous=NORMAL is safe in WAL mode: a power cut may lose the last
    commits, never corrupt the file.
    """
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
    return sqlite_utils.Database(conn)


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database):
    """One write transaction that takes the write lock first (BEGIN IMMEDIATE); nested: a savepoint."""
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


def open_existing(url: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """An initialised database for a command that reads or updates it; DatabaseMissing if there is none."""
    return connect(url, create=False, busy_timeout_s=busy_timeout_s)


class WriterPacing:
    """For a loop of write transactions: call `after_commit()` after each; it pauses now and then."""

    def __init__(self, burst_s: float = WRITE_BURST_S, pause_s: float = WRITE_PAUSE_S):
        self.burst_s, self.pause_s = burst_s, pause_s
        self.burst_started = time.monotonic()

    def after_commit(self) -> None:
        if time.monotonic() - self.burst_started >= self.burst_s:
            time.sleep(self.pause_s)
            self.burst_started = time.monotonic()

"""PostgreSQL behind the same small interface the storage modules use on SQLite (sqlite-utils').

Several webhook hosts share one PostgreSQL database: caller data, the play log
and the caps. The storage modules write portable SQL (`?` placeholders,
`ON CONFLICT`, `RETURNING`); `PostgresDatabase` turns the placeholders into
psycopg's, and offers the few table helpers the code and tests call on
sqlite-utils (`db["plays"].insert(...)`, `.get()`, `.count`, ...).

Connections come from a psycopg_pool pool per (URL, lock and statement timeouts) and
process; each PostgresDatabase holds one for its lifetime and gives it back on
close(). Connections are checked when taken, so after a server restart the
pool hands out fresh ones by itself.
"""
import threading

import psycopg
import sqlite_utils.db
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from app.storage.tables import primary_key

CONNECT_TIMEOUT_S = 1  # libpq's connect_timeout (whole seconds)
POOL_MAX_SIZE = 8  # per process and URL: gunicorn sync workers use one each

_pools: dict[tuple[str, int, int], ConnectionPool] = {}
_pools_lock = threading.Lock()


class NotFoundError(sqlite_utils.db.NotFoundError):
    """No row with that primary key: the error sqlite-utils raises, so callers catch one."""


def _connection_settings(lock_timeout_ms: int, statement_timeout_ms: int) -> dict:
    """psycopg.connect's keyword arguments: autocommit, a short connect timeout, the limits (0: none)."""
    return {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"}


def _pool(url: str, lock_timeout_ms: int, statement_timeout_ms: int) -> ConnectionPool:
    """The pool for these settings."""
    key = (url, lock_timeout_ms, statement_timeout_ms)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(url, min_size=0, max_size=POOL_MAX_SIZE, open=True,
                                  check=ConnectionPool.check_connection,
                                  kwargs=_connection_settings(lock_timeout_ms, statement_timeout_ms),
                                  name=f"holdguard-{lock_timeout_ms}-{statement_timeout_ms}")
            _pools[key] = pool
        return pool


def close_pools(url: str | None = None) -> None:
    """Close this process's pools of `url` (or all of them): a dropped test database, worker exit."""
    with _pools_lock:
        keys = [key for key in _pools if url is None or key[0] == url]
        pools = [_pools.pop(key) for key in keys]
    for pool in pools:
        pool.close()


def to_psycopg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str, *, pooled: bool, timeout_s: float, lock_timeout_ms: int,
                 statement_timeout_ms: int):
        """`pooled`: for a long-running server (webhooks, API, pages); a one-shot command connects
        directly, and a failure then says why (refused, unknown host, wrong password)."""
        self.url = url
        self.pool = _pool(url, lock_timeout_ms, statement_timeout_ms) if pooled else None
        if self.pool is None:
            self.conn = psycopg.connect(url, **_connection_settings(lock_timeout_ms, statement_timeout_ms))
            return
        try:
            self.conn = self.pool.getconn(timeout=timeout_s)
        except PoolTimeout as error:
            raise psycopg.OperationalError(f"no PostgreSQL connection within {timeout_s:g} s: {error}") from None

    # -- statements ---------------------------------------------------------------------------------

    def execute(self, sql: str, params=()):
        """Run one statement; the cursor (fetchone/fetchall/rowcount) as sqlite3's."""
        return self.conn.execute(to_psycopg(sql), list(params) or None)

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(to_psycopg(sql), list(rows))

    def query(self, sql: str, params=()) -> list[dict]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(to_psycopg(sql), list(params) or None)
            return cursor.fetchall() if cursor.description else []

    def transaction(self):
        """BEGIN ... COMMIT (a savepoint when nested); rolled back on an exception."""
        return self.conn.transaction()

    def table_names(self) -> list[str]:
        return [row["table_name"] for row in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name")]

    def __getitem__(self, table: str) -> "PostgresTable":
        return PostgresTable(self, table)

    def close(self) -> None:
        """Give the connection back to the pool (a broken one is replaced by the pool), or close it."""
        conn, self.conn = getattr(self, "conn", None), None
        if conn is None:
            return
        if self.pool is None or self.pool.closed:
            conn.close()
            return
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                conn.close()
        self.pool.putconn(conn)

    def __del__(self):  # a connection nobody closed (a test's, a dropped reference) goes back too
        self.close()


class PostgresTable:
    """The sqlite-utils table helpers holdguard uses, on PostgreSQL."""

    def __init__(self, db: PostgresDatabase, name: str):
        self.db, self.name = db, name
        self.last_pk = None

    @property
    def pks(self) -> list[str]:
        return primary_key(self.name)

    def exists(self) -> bool:
        return self.db.execute("SELECT to_regclass(?) IS NOT NULL", [self.name]).fetchone()[0]

    @property
    def columns_dict(self) -> dict[str, str]:
        return {row["column_name"]: row["data_type"] for row in self.db.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", [self.name])}

    @property
    def count(self) -> int:
        return self.db.execute(f'SELECT count(*) FROM "{self.name}"').fetchone()[0]

    def _insert_sql(self, columns, on_conflict: str = "", returning: bool = False) -> str:
        names = ", ".join(f'"{column}"' for column in columns)
        return (f'INSERT INTO "{self.name}" ({names}) VALUES ({", ".join("?" for _ in columns)})'
                + on_conflict + (' RETURNING "id"' if returning else ""))

    def insert(self, row: dict, **_options) -> "PostgresTable":
        """Insert one row; `last_pk` is its key (the id the database gave, for tables keyed by id)."""
        generated_id = "id" in self.pks and "id" not in row
        cursor = self.db.execute(self._insert_sql(list(row), returning=generated_id), list(row.values()))
        self.last_pk = cursor.fetchone()[0] if generated_id else row.get(self.pks[0]) if self.pks else None
        return self

    def insert_all(self, rows, **_options) -> "PostgresTable":
        by_columns: dict[tuple, list] = {}
        for row in rows:
            by_columns.setdefault(tuple(row), []).append(tuple(row.values()))
        for columns, values in by_columns.items():
            self.db.executemany(self._insert_sql(columns), values)
        return self

    def upsert(self, row: dict, pk=None, **_options) -> "PostgresTable":
        keys = [pk] if isinstance(pk, str) else list(pk or self.pks)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in row if c not in keys)
        conflict = f' ON CONFLICT ({", ".join(keys)}) DO ' + (f"UPDATE SET {updates}" if updates else "NOTHING")
        self.db.execute(self._insert_sql(list(row), conflict), list(row.values()))
        self.last_pk = row.get(keys[0])
        return self

    def update(self, pk_value, changes: dict) -> "PostgresTable":
        sets = ", ".join(f'"{column}" = ?' for column in changes)
        self.db.execute(f'UPDATE "{self.name}" SET {sets} WHERE "{self.pks[0]}" = ?', [*changes.values(), pk_value])
        return self

    def get(self, pk_value) -> dict:
        rows = self.db.query(f'SELECT * FROM "{self.name}" WHERE "{self.pks[0]}" = ?', [pk_value])
        if not rows:
            raise NotFoundError(pk_value)
        return rows[0]

    def rows_where(self, where: str = "", params=(), order_by: str = "") -> list[dict]:
        sql = f'SELECT * FROM "{self.name}"' + (f" WHERE {where}" if where else "") + (
            f" ORDER BY {order_by}" if order_by else "")
        return self.db.query(sql, params)

    @property
    def rows(self) -> list[dict]:
        """Every row, in key order (SQLite gives rowid order; PostgreSQL none unless asked)."""
        return self.rows_where(order_by=", ".join(f'"{key}"' for key in self.pks))

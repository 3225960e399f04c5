"""Copy every row from one holdguard database to another: the SQLite file a team started with into
the PostgreSQL database several webhook hosts share (`holdguard db copy`).

Both databases are first brought to this version's schema. Rows go in batches, one transaction
each, and a row whose key the target already holds is left as it is, so a copy that was cut off
can simply be run again. The audit tables without a key of their own (spans and plays of an audit)
are copied audit by audit, each audit's rows in one transaction, for the same reason.
"""
from dataclasses import dataclass, field

from app.storage.connect import transaction
from app.storage.tables import TABLES, primary_key

BATCH_ROWS = 500
# Parents before children; schema_migrations belongs to each database.
COPY_ORDER = ["customers", "issues", "queues", "segments", "product_aliases", "calls", "plays", "play_skips",
              "recordings", "audits", "audit_messages", "audit_findings", "audit_segments", "audit_plays",
              "library_messages", "library_plays"]
IDENTITY_TABLES = ("plays", "audits", "audit_findings", "library_messages")  # integer ids the database hands out


class TargetNotEmpty(Exception):
    """The target already holds data and the copy was not told to add to it."""


@dataclass
class CopyReport:
    copied: dict[str, int] = field(default_factory=dict)  # table -> rows written
    kept: dict[str, int] = field(default_factory=dict)  # table -> rows the target already had


def rows_in(db, table: str) -> int:
    return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def copy_database(source, target, *, into_non_empty: bool = False, progress=None) -> CopyReport:
    """Copy every table of `source` into `target` (both migrated); `progress(rows)` after each batch."""
    if not into_non_empty:
        filled = [table for table in COPY_ORDER if rows_in(target, table)]
        if filled:
            raise TargetNotEmpty(f"the target already holds data (tables {', '.join(filled)}); "
                                 "add --into-non-empty to copy into it (rows it already has are kept)")
    report = CopyReport()
    for table in COPY_ORDER:
        columns = list(TABLES[table][0])
        keys = primary_key(table)
        copy = _copy_keyed if keys else _copy_by_audit
        report.copied[table], report.kept[table] = copy(source, target, table, columns, keys, progress)
    if target.dialect == "postgresql":
        for table in IDENTITY_TABLES:  # explicit ids do not move the identity on: later inserts would collide
            target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
    return report


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def _insert_sql(table: str, columns: list[str], keys: list[str]) -> str:
    names = _quoted(columns)
    conflict = f" ON CONFLICT ({', '.join(keys)}) DO NOTHING" if keys else ""
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" for _ in columns)}){conflict}'


def _copy_keyed(source, target, table, columns, keys, progress) -> tuple[int, int]:
    """Batches in key order; rows whose key the target holds are kept (counted, not written)."""
    select = f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY {", ".join(keys)}'
    rows = [tuple(row.values()) for row in source.query(select)]
    before = rows_in(target, table)
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start:start + BATCH_ROWS]
        with transaction(target):
            target.executemany(_insert_sql(table, columns, keys), batch)
        if progress:
            progress(len(batch))
    written = rows_in(target, table) - before
    return written, len(rows) - written


def _copy_by_audit(source, target, table, columns, keys, progress) -> tuple[int, int]:
    """A table without a key of its own: each audit's rows at once, skipped if the target has them."""
    present = {row["audit_id"] for row in target.query(f'SELECT DISTINCT audit_id FROM "{table}"')}
    select = f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY audit_id, start_s'
    by_audit: dict[int, list[tuple]] = {}
    for row in source.query(select):
        by_audit.setdefault(row["audit_id"], []).append(tuple(row.values()))
    written = kept = 0
    for audit_id, rows in by_audit.items():
        if audit_id in present:
            kept += len(rows)
        else:
            with transaction(target):
                target.executemany(_insert_sql(table, columns, keys), rows)
            written += len(rows)
        if progress:
            progress(len(rows))
    return written, kept


def total_rows(db) -> int:
    return sum(rows_in(db, table) for table in COPY_ORDER)

"""`holdguard db`: create or upgrade the database."""
import click
from tqdm import tqdm

from app.cli.options import db_option, writable_db
from app.storage.connect import describe
from app.storage.copy import TargetNotEmpty, copy_database, total_rows
from app.storage.schema import MIGRATIONS, applied_versions


@click.group("db")
def db_group():
    """Create, upgrade and inspect the database."""


@db_group.command("init")
@db_option
def init_command(db_path):
    """Create the tables, or upgrade an older database (idempotent: existing data is kept).

    Migrations are applied in order and recorded in the schema_migrations table.

    \b
    Example:
      holdguard db init --db ./holdguard.db
    """
    db = writable_db(db_path)
    try:
        done = len(applied_versions(db))
        click.echo(f"initialised {describe(db_path)} ({len(db.table_names())} tables, "
                   f"schema version {max(version for version, _, _ in MIGRATIONS)}, {done} migrations applied)")
    finally:
        db.close()


@db_group.command("copy")
@click.argument("source_url")
@click.argument("target_url")
@click.option("--into-non-empty", is_flag=True,
              help="Copy into a target that already holds data (rows whose key it has are kept as they are).")
def copy_command(source_url, target_url, into_non_empty):
    """Copy everything from SOURCE_URL into TARGET_URL, e.g. the SQLite file a team started with into
    the PostgreSQL database several webhook hosts share.

    Both are first brought up to this version's schema. Rows go in batches,
    one transaction each; a row whose key the target already holds is kept, so
    an interrupted copy can be run again. Prints the rows copied per table.

    \b
    Example:
      holdguard db copy ./holdguard.db postgresql://holdguard:secret@db.internal:5432/holdguard
    """
    source, target = writable_db(source_url), writable_db(target_url)
    try:
        with tqdm(total=total_rows(source), desc="rows", unit="row", disable=None) as bar:
            report = copy_database(source, target, into_non_empty=into_non_empty, progress=bar.update)
    except TargetNotEmpty as error:
        raise click.ClickException(f"{describe(target_url)}: {error}") from None
    finally:
        source.close()
        target.close()
    width = max(len(table) for table in report.copied)
    for table, copied in report.copied.items():
        kept = report.kept[table]
        click.echo(f"{table:<{width}}  {copied:>8} copied" + (f"  ({kept} already there)" if kept else ""))
    click.echo(f"copied {sum(report.copied.values())} rows from {describe(source_url)} to {describe(target_url)}")

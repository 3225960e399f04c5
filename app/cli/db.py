"""`holdguard db`: create or upgrade the database."""
import click

from app.cli.options import db_option, writable_db
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
        click.echo(f"initialised {db_path} ({len(db.table_names())} tables, "
                   f"schema version {max(version for version, _, _ in MIGRATIONS)}, {done} migrations applied)")
    finally:
        db.close()

"""The request's database connection: opened on first use, kept on `g`, closed after the request."""
import logging

from flask import current_app, g

from app.storage.connect import DATABASE_ERRORS, DatabaseMissing, describe, open_existing
from app.storage.schema import migrate

log = logging.getLogger(__name__)
REQUEST_STATEMENT_TIMEOUT_S = 30.0  # an API or page request never runs a statement longer (PostgreSQL)


def get_db():
    """The request's database (API and pages; the webhooks keep their own, see app.storage.playlog)."""
    if "db" not in g:
        g.db = open_existing(current_app.config["HOLDGUARD_DB"], statement_timeout_s=REQUEST_STATEMENT_TIMEOUT_S,
                             pooled=True)
    return g.db


def close_db(_exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def upgrade_existing(url) -> list[str]:
    """Apply this version's migrations to an existing database at app start; their names.

    A missing database is left alone (`holdguard db init` makes it; the webhooks
    report it). A locked or unreadable one is logged, not raised: the app must
    still start and answer Twilio (music, failing closed); the webhook's own
    connection tries again.
    """
    try:
        database = open_existing(url, busy_timeout_s=0.5)
    except DatabaseMissing:
        return []
    except (*DATABASE_ERRORS, OSError) as error:
        log.error("%s: could not open it to bring it up to this version: %s", describe(url), error)
        return []
    try:
        applied = migrate(database)
    except DATABASE_ERRORS as error:
        log.error("%s: could not bring it up to this version (run `holdguard db init`): %s", describe(url), error)
        return []
    finally:
        database.close()
    if applied:
        log.info("%s: applied migration(s) %s", describe(url), ", ".join(applied))
    return applied


def init_app(app) -> None:
    app.teardown_appcontext(close_db)
    upgrade_existing(app.config["HOLDGUARD_DB"])

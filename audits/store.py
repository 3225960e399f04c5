"""Audits in SQLite (same database as the webhook). Filled in by the audit pipeline work."""


def create_tables(db) -> None:
    """Create the audit tables; safe to run again."""

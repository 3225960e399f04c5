"""The one stored form of a time: ISO 8601, UTC, whole seconds, 'Z' ("2026-11-20T09:12:00Z").

Every table stores times this way, so they sort and compare as text and
range queries use their indexes (no julianday() around a column).
"""
from datetime import datetime, timezone

STORED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EXAMPLE = "2026-11-20T09:12:00Z"


def format_utc(moment: datetime) -> str:
    """A time in the stored form; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(STORED_FORMAT)


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 time; a time without an offset is taken as UTC. ValueError if unreadable."""
    moment = datetime.fromisoformat(str(text).strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stored_or_none(text) -> str | None:
    """`text` rewritten in the stored form; None for an empty or unreadable value (old rows)."""
    if text is None or not str(text).strip():
        return None
    try:
        return format_utc(parse_utc(text))
    except (ValueError, OverflowError):
        return None

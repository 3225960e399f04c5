"""The catalog tables: hold-flow queues, segments and product aliases, to and from the policy's data."""
import dataclasses
import json
import time

from app.core.flows import Flow
from app.core.policy import QueueSettings, Segment
from app.core.products import ProductNames
from app.core.times import format_utc, parse_utc
from app.storage.connect import transaction

# The catalog changes only with `holdguard flows load`; webhooks see a new one within this long.
CATALOG_CACHE_S = 1.0


class NoHoldFlow(LookupError):
    """The queue has no settings in the catalog: `holdguard flows load` was not run for it."""


def queue_to_row(queue: QueueSettings) -> dict:
    row = dataclasses.asdict(queue)
    row["music"] = json.dumps(list(queue.music))
    row["agent_whisper"] = int(queue.agent_whisper)  # an integer column on both databases
    return row


def queue_from_row(row: dict) -> QueueSettings:
    values = {key: value for key, value in row.items() if key != "position"}
    values["music"] = tuple(json.loads(row["music"] or "[]"))
    values["agent_whisper"] = bool(row.get("agent_whisper"))
    return QueueSettings(**values)


def segment_to_row(segment: Segment) -> dict:
    row = dataclasses.asdict(segment)
    row["products"] = json.dumps(list(segment.products))
    row["queues"] = json.dumps(list(segment.queues))
    for key in ("active_from", "active_until"):
        row[key] = format_utc(row[key]) if row[key] else None
    return row


def segment_from_row(row: dict) -> Segment:
    values = {key: value for key, value in row.items() if key != "position"}
    values["products"] = tuple(json.loads(row["products"] or "[]"))
    values["queues"] = tuple(json.loads(row["queues"] or "[]"))
    for key in ("active_from", "active_until"):
        values[key] = parse_utc(row[key]) if row[key] else None
    return Segment(**values)


def save_catalog(db, flow: Flow) -> None:
    """Replace the whole catalog (queues, segments, aliases) with `flow`, in one transaction."""
    with transaction(db):
        db.execute("DELETE FROM segments")
        db.execute("DELETE FROM queues")
        db.execute("DELETE FROM product_aliases")
        db["queues"].insert_all([{**queue_to_row(q), "position": n} for n, q in enumerate(flow.queues.values())])
        db["segments"].insert_all([{**segment_to_row(s), "position": n} for n, s in enumerate(flow.segments)])
        aliases = [(product, alias) for product, names in flow.aliases.items() for alias in names]
        db["product_aliases"].insert_all([{"alias": alias, "product": product, "position": n}
                                          for n, (product, alias) in enumerate(aliases)])


def load_catalog(db) -> Flow:
    """The catalog as stored: every queue and segment, in load order, and the product aliases."""
    queues = [queue_from_row(row) for row in db.query("SELECT * FROM queues ORDER BY position")]
    segments = [segment_from_row(row) for row in db.query("SELECT * FROM segments ORDER BY position")]
    aliases: dict[str, tuple[str, ...]] = {}
    for row in db.query("SELECT product, alias FROM product_aliases ORDER BY position"):
        aliases[row["product"]] = aliases.get(row["product"], ()) + (row["alias"],)
    return Flow({q.name: q for q in queues}, segments, aliases)


def load_product_names(db) -> ProductNames:
    return ProductNames.from_pairs(db.execute("SELECT product, alias FROM product_aliases").fetchall())


def catalog_products(db) -> list[str]:
    """Every product a catalog segment names, sorted: what the audit listens for."""
    return sorted({product for segment in load_catalog(db).segments for product in segment.products})


def load_queue(db, queue_name: str) -> QueueSettings:
    rows = list(db.query("SELECT * FROM queues WHERE name = ?", [queue_name]))
    if not rows:
        raise NoHoldFlow(f"no hold flow for queue '{queue_name}' (run `holdguard flows load FILE`)")
    return queue_from_row(rows[0])


def load_segments(db, queue_name: str) -> tuple[Segment, ...]:
    """The catalog segments that may play in this queue (the policy checks their time windows)."""
    segments = (segment_from_row(row) for row in db.query("SELECT * FROM segments ORDER BY position"))
    return tuple(s for s in segments if s.applies_to(queue_name))


@dataclasses.dataclass(frozen=True)
class QueueCatalog:
    queue: QueueSettings
    segments: tuple[Segment, ...]
    products: ProductNames


def load_queue_catalog(db, queue_name: str, cache: dict | None = None) -> QueueCatalog:
    """The queue's settings, segments and product aliases, from `cache` if read less than CATALOG_CACHE_S ago."""
    if cache is not None:
        expires, catalog = cache.get(queue_name, (0.0, None))
        if time.monotonic() < expires:
            return catalog
    catalog = QueueCatalog(load_queue(db, queue_name), load_segments(db, queue_name), load_product_names(db))
    if cache is not None:
        cache[queue_name] = (time.monotonic() + CATALOG_CACHE_S, catalog)
    return catalog

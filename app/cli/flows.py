"""`holdguard flows`: check, load and show hold flows."""
import dataclasses
import sys

import click

from app.cli.options import db_option, existing_db, writable_db
from app.core.flows import Flow, FlowError, read_flow_file
from app.core.policy import KINDS
from app.core.times import format_utc
from app.storage.catalog import load_catalog, save_catalog
from app.storage.connect import DATABASE_ERRORS


def _valid_flow_or_exit(flow_file: str) -> Flow:
    try:
        return read_flow_file(flow_file)
    except FlowError as error:
        for problem in error.errors:
            click.echo(f"{flow_file}: {problem}", err=True)
        sys.exit(1)


def _summary(flow: Flow) -> str:
    kinds = ", ".join(f"{sum(s.kind == k for s in flow.segments)} {k}" for k in KINDS
                      if any(s.kind == k for s in flow.segments))
    return f"{len(flow.queues)} queue(s) ({', '.join(flow.queues)}), {len(flow.segments)} segment(s)" + (
        f" ({kinds})" if kinds else "")


@click.group("flows")
def flows_group():
    """Hold flows: which queues exist and what may be played on hold.

    \b
    A flow is a TOML file of [queue.NAME] tables and [[segment]]s, e.g.
    app/demo_data/flows.toml. Loading replaces the whole catalog.
    """


@flows_group.command("check")
@click.argument("flow_file")
def check_command(flow_file):
    """Validate FLOW_FILE without writing anything; exit 1 listing every problem.

    \b
    Example:
      holdguard flows check app/demo_data/flows.toml
    """
    flow = _valid_flow_or_exit(flow_file)
    click.echo(f"{flow_file}: ok, {_summary(flow)}")


@flows_group.command("load")
@click.argument("flow_file")
@db_option
def load_command(flow_file, db_path):
    """Validate FLOW_FILE, then replace the catalog with it in one transaction.

    An invalid file changes nothing. Creates the database tables if needed.

    \b
    Example:
      holdguard flows load app/demo_data/flows.toml
    """
    flow = _valid_flow_or_exit(flow_file)
    try:
        db = writable_db(db_path)
        save_catalog(db, flow)
    except DATABASE_ERRORS as error:
        raise click.ClickException(f"{db_path}: could not replace the catalog, nothing changed ({error})") from None
    click.echo(f"loaded {flow_file} into {db_path}: {_summary(flow)}")


@flows_group.command("show")
@db_option
def show_command(db_path):
    """Print the catalog currently loaded (queues, then segments)."""
    flow = load_catalog(existing_db(db_path))
    if not flow.queues:
        raise click.ClickException(f"{db_path}: no hold flow loaded (run `holdguard flows load FILE`)")
    for queue in flow.queues.values():
        settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(queue).items()
                             if k not in ("name", "music"))
        click.echo(f"[queue.{queue.name}] {len(queue.music)} music URL(s); {settings}")
    for segment in flow.segments:
        window = (f" {format_utc(segment.active_from) if segment.active_from else '...'}"
                  f" to {format_utc(segment.active_until) if segment.active_until else '...'}"
                  if segment.active_from or segment.active_until else "")
        where = ",".join(segment.queues) or "every queue"
        click.echo(f"{segment.id:<24} {segment.kind:<12} {segment.duration_s:>5g}s  {where}{window}")

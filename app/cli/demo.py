"""`holdguard demo`: the quick start's one command, on bundled data and a local SQLite file.

It runs what a new team would run by hand: create the database, load the demo
hold flow and customers, simulate a 45-minute hold for a caller mid-issue
through the real webhook, then audit a bundled 10-minute hold recording into
an HTML report.
"""
from pathlib import Path

import click

from app.cli.options import db_option, writable_db
from app.core.flows import read_flow_file
from app.storage.catalog import save_catalog
from app.storage.crm import import_customers
from app.web.simulate import SimulateError, format_timeline, simulate_call

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
SAMPLE_RECORDING = Path(__file__).resolve().parents[2] / "sample_audio" / "hold-10min.wav"
DEMO_CALLER = "+15555550100"  # Dana: owns a Galaxy S7, open high-severity case CASE-1042


def prepare_database(db_path: str) -> str:
    """Create the tables and load the demo flow and customers; returns a one-line summary."""
    db = writable_db(db_path)
    try:
        flow = read_flow_file(DEMO_DATA / "flows.toml")
        save_catalog(db, flow)
        report = import_customers(db, DEMO_DATA / "customers.json", "US")
    finally:
        db.close()
    return (f"{db_path}: {len(flow.queues)} queue(s), {len(flow.segments)} segments; "
            f"customers {report.summary()}")


@click.command("demo")
@db_option
@click.option("--out", "out_dir", default="./holdguard-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the audit report.")
@click.option("--minutes", default=45.0, show_default=True, type=click.FloatRange(min=1, max=600),
              help="Length of the simulated hold.")
@click.option("--skip-audit", is_flag=True, help="Only the webhook half: no Whisper audit of the sample.")
@click.pass_context
def demo_command(ctx, db_path, out_dir, minutes, skip_audit):
    """Run holdguard end to end on bundled demo data.

    \b
    1. creates the database (--db, env HOLDGUARD_DB) and loads the demo hold
       flow (app/demo_data/flows.toml) and four demo customers;
    2. simulates a 45-minute hold for Dana (+15555550100), who owns a Galaxy S7
       and has an open high-severity case: no promo, the outage notice first;
    3. audits sample_audio/hold-10min.wav (a hold where she was sold the phone
       she owns, six times) with Whisper, offline, into an HTML report.
    Safe to run again: each run is one more call for Dana.
    """
    click.secho("== 1. database, hold flow, customers", bold=True)
    click.echo(prepare_database(db_path))

    click.secho(f"\n== 2. a {minutes:g}-minute hold for {DEMO_CALLER} (open case CASE-1042, owns a Galaxy S7)",
                bold=True)
    try:
        result = simulate_call(db_path, caller_phone=DEMO_CALLER, minutes=minutes)
    except SimulateError as error:
        raise click.ClickException(str(error)) from None
    click.echo(format_timeline(result))

    if skip_audit:
        return
    if not SAMPLE_RECORDING.exists():
        raise click.ClickException(f"{SAMPLE_RECORDING}: bundled sample not found (run from a checkout)")
    from app.cli.audit import audit_paths  # Whisper's command: loaded only when the demo gets this far

    report_path = out_dir / "hold-10min.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    click.secho(f"\n== 3. audit of {SAMPLE_RECORDING.name} (Whisper base, offline)", bold=True)
    click.echo("loading Whisper and transcribing each distinct message once ...")
    # ctx.invoke fills the other options (engine, model) with the command's own defaults.
    ctx.invoke(audit_paths, paths=(SAMPLE_RECORDING,), fmt="html", out=report_path, db_path=db_path)
    click.echo(f"\nOpen {report_path} in a browser, or run `holdguard serve` and visit "
               f"http://127.0.0.1:5000/audits")

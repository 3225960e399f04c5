"""`holdguard simulate`: what a caller will hear, through the real webhook."""
import json
import logging

import click

from app.cli.options import db_option
from app.web.simulate import SimulateError, format_timeline, simulate_call


@click.command("simulate")
@click.option("--from", "caller_phone", required=True, metavar="PHONE",
              help="Caller id to simulate, e.g. +15555550100 (national numbers use HOLDGUARD_DEFAULT_REGION).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True, max=24 * 60), default=45,
              show_default=True, help="Simulated time on hold.")
@click.option("--queue", default=None, help="Queue to call into (default: env HOLDGUARD_QUEUE, 'support').")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@db_option
def simulate_command(caller_phone, minutes, queue, as_json, db_path):
    """Print what a caller will hear on hold, through the real webhook.

    Each run is one call with a fresh CallSid; its answers go to the play log,
    so consecutive runs for one caller are consecutive calls (a promo heard in
    the first is not replayed in the second). The call is flagged simulated: a
    run hears the caller's real history, but real calls and the /campaigns
    digest ignore what a run played.

    \b
    Example:
      holdguard simulate --from +15555550100 --minutes 45
      holdguard simulate --from +15555550102 --json
    """
    # Webhook faults show in the timeline's reasons and a warning below, not as tracebacks.
    webhook_log = logging.getLogger("app.web.twilio_hold")
    level = webhook_log.level
    webhook_log.setLevel(logging.CRITICAL)
    try:
        result = simulate_call(db_path, caller_phone=caller_phone, minutes=minutes, queue=queue)
    except SimulateError as error:
        raise click.ClickException(str(error)) from None
    finally:
        webhook_log.setLevel(level)
    click.echo(json.dumps(result, indent=2) if as_json else format_timeline(result))
    fallbacks = result["summary"]["fallback_answers"]
    if fallbacks:
        reason = next(p["reason"] for p in result["timeline"] if p["reason"].startswith("fallback"))
        click.echo(f"warning: {fallbacks} fallback answer(s): {reason}", err=True)

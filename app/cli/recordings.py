"""`holdguard recordings fetch`: Twilio recordings in, linked to their calls, audited."""
import os
import sys
from datetime import datetime, timezone

import click
from tqdm import tqdm

from app.cli.options import db_option, writable_db
from audits.fetch import CALL_SID, FetchError, Outcome, describe, fetch, twilio_client
from audits.transcribe import DEFAULT_ENGINE, DEFAULT_MODEL, ENGINES, load_engine


def summary_line(outcomes: list[Outcome]) -> str:
    """ "3 recording(s): 2 audited, 1 download_failed" """
    if not outcomes:
        return "no recordings found"
    counts = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return f"{len(outcomes)} recording(s): " + ", ".join(f"{n} {status}" for status, n in counts.items())


def _since_option(ctx, param, value):
    return parse_since(value) if value else None


def parse_since(text: str) -> datetime:
    """'2026-11-20' or '2026-11-20T09:00:00Z' -> an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD or 2026-11-20T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise click.ClickException(f"{name} is not set ({what})")
    return value


@click.group("recordings")
def recordings_group():
    """Twilio call recordings: fetch them, link them to their calls, audit them.

    \b
    To record what the caller hears on hold, record the call's outbound track
    (the audio Twilio sends to the caller) from the moment it is enqueued:
      REST:  client.calls(call_sid).recordings.create(recording_track="outbound")
      TwiML: <Start><Recording track="outbound"/></Start> before <Enqueue>
    and stop it when the caller leaves the queue (the Enqueue action URL), so
    the agent conversation is not recorded as hold:
      client.calls(call_sid).recordings("Twilio.CURRENT").update(status="stopped")
    """


@recordings_group.command("fetch")
@click.option("--since", callback=_since_option,
              metavar="DATE", help="Only recordings created at/after this date (YYYY-MM-DD, UTC) or time.")
@click.option("--call-sid", metavar="SID", help="Only the recordings of this call (CA + 32 hex digits).")
@db_option
@click.option("--data-dir", envvar="HOLDGUARD_DATA_DIR", default="./holdguard-data", show_default=True,
              help="Where recordings are stored, under recordings/ (env HOLDGUARD_DATA_DIR).")
@click.option("--audit/--no-audit", default=True, show_default=True, help="Audit each new recording.")
@click.option("--engine", default=DEFAULT_ENGINE, show_default=True, type=click.Choice(ENGINES),
              help="Speech engine for the audits.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Whisper model name or path.")
def fetch_command(since, call_sid, db_path, data_dir, audit, engine, model):
    """Download new call recordings from Twilio, link each to its call and audit it.

    Needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment
    (TWILIO_API_BASE overrides https://api.twilio.com). A recording fetched
    before is not downloaded again. Exit status 1 if any recording failed.

    \b
    Examples:
      holdguard recordings fetch --since 2026-11-20
      holdguard recordings fetch --call-sid CA0123456789abcdef0123456789abcdef
    """
    if call_sid and not CALL_SID.match(call_sid):
        raise click.BadParameter(f"{call_sid!r} is not a Twilio CallSid (CA + 32 hex digits)",
                                 param_hint="--call-sid")
    client = twilio_client(_env("TWILIO_ACCOUNT_SID", "your Twilio Account SID, AC..."),
                           _env("TWILIO_AUTH_TOKEN", "your Twilio auth token"),
                           os.environ.get("TWILIO_API_BASE") or None)
    db = writable_db(db_path)

    def load_transcriber():
        return load_engine(engine, model)

    from audits import library as message_library

    library = message_library.load(db, engine=engine, model=model) if audit else None

    with tqdm(desc="recordings", unit="rec", disable=None, file=sys.stderr) as bar:
        def report(outcome):
            bar.update(1)
            bar.write(describe(db, outcome), file=sys.stdout)

        try:
            outcomes = fetch(db, client, data_dir, since=since, call_sid=call_sid, audit=audit,
                             load_transcriber=load_transcriber, progress=report, library=library)
        except FetchError as error:
            raise click.ClickException(str(error)) from None
    click.echo(summary_line(outcomes))
    if any(outcome.failed for outcome in outcomes):
        sys.exit(1)

"""`holdguard serve`: the webhooks on Flask's development server."""
import logging
import os
import re
import secrets
import sys

import click

from app.web.factory import create_app
from app.web.pages import LOCAL_ONLY

PRODUCTION_COMMAND = "gunicorn -w 2 -b 0.0.0.0:8000 'app:create_app()'"
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class PlainLogText(logging.Filter):
    """Strip the ANSI colours werkzeug puts in its request log: they are noise in a log file."""
    ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.ANSI_ESCAPE.sub("", record.getMessage()), None
        return True


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches `host:port` at (a wildcard address is reached at 127.0.0.1)."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.command("serve", epilog=f"In production run gunicorn instead (same environment variables; "
                               f"set HOLDGUARD_PAGES_TOKEN there, or the pages stay closed):\n\n"
                               f"\b\n  {PRODUCTION_COMMAND}")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
def serve_command(host, port):
    """Run the Twilio webhooks (and the API and pages) for local use.

    Configuration comes from the environment: HOLDGUARD_DB, TWILIO_AUTH_TOKEN,
    PUBLIC_BASE_URL (the https URL Twilio calls; signatures are checked
    against it; unset: http://HOST:PORT of this server), HOLDGUARD_QUEUE,
    HOLDGUARD_DEFAULT_REGION, HOLDGUARD_API_TOKEN, HOLDGUARD_PAGES_TOKEN
    (unset: a new token for this run, printed in the pages' link; "local":
    no token, this machine only), HOLDGUARD_DATA_DIR. See the README's
    configuration table.
    """
    url = local_url(host, port)
    overrides = {}
    if not os.environ.get("PUBLIC_BASE_URL"):
        overrides["PUBLIC_BASE_URL"] = url
    pages_token = os.environ.get("HOLDGUARD_PAGES_TOKEN", "")
    if not pages_token:  # Jupyter's way: a fresh token each run, in the link we print
        pages_token = overrides["HOLDGUARD_PAGES_TOKEN"] = secrets.token_urlsafe(24)
    app = create_app(overrides)
    werkzeug_log = logging.getLogger("werkzeug")
    if not sys.stderr.isatty() and not any(isinstance(f, PlainLogText) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(PlainLogText())
    if not app.config["TWILIO_AUTH_TOKEN"]:
        click.echo("warning: TWILIO_AUTH_TOKEN is not set: every Twilio webhook will answer 403", err=True)
    click.echo(f"holdguard on {url} (Twilio calls {app.config['PUBLIC_BASE_URL']}/twilio/voice)")
    if pages_token == LOCAL_ONLY:
        click.echo(f"pages: {url}/ (no token: this machine only, HOLDGUARD_PAGES_TOKEN=local)")
    elif "HOLDGUARD_PAGES_TOKEN" in overrides:
        click.echo(f"pages: {url}/?token={pages_token}")
    else:
        click.echo(f"pages: {url}/?token=<HOLDGUARD_PAGES_TOKEN>")
    app.run(host=host, port=port)

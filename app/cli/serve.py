"""`holdguard serve`: the webhooks on Flask's development server."""
import click

from app.web.factory import create_app

PRODUCTION_COMMAND = "gunicorn -w 2 -b 0.0.0.0:8000 'app:create_app()'"


@click.command("serve", epilog=f"In production run gunicorn instead (same environment variables):\n\n"
                               f"\b\n  {PRODUCTION_COMMAND}")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
def serve_command(host, port):
    """Run the Twilio webhooks (and the API and pages) for local use.

    Configuration comes from the environment: HOLDGUARD_DB, TWILIO_AUTH_TOKEN,
    PUBLIC_BASE_URL (the https URL Twilio calls; signatures are checked
    against it), HOLDGUARD_QUEUE, HOLDGUARD_DEFAULT_REGION, HOLDGUARD_API_TOKEN,
    HOLDGUARD_PAGES_TOKEN (unset: pages answer localhost only),
    HOLDGUARD_DATA_DIR. See the README's configuration table.
    """
    app = create_app()
    if not app.config["TWILIO_AUTH_TOKEN"]:
        click.echo("warning: TWILIO_AUTH_TOKEN is not set: every Twilio webhook will answer 403", err=True)
    click.echo(f"holdguard on http://{host}:{port} (Twilio calls {app.config['PUBLIC_BASE_URL']}/twilio/voice)")
    app.run(host=host, port=port)

"""holdguard: per-caller hold content for Twilio queues."""
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Flask loads when an app is made: CLI commands that need none (audit) start faster
    from flask import Flask

DEFAULTS = {
    "HOLDGUARD_DB": "./holdguard.db",
    "TWILIO_AUTH_TOKEN": "",
    "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    "HOLDGUARD_API_TOKEN": "",
    "HOLDGUARD_QUEUE": "support",
    "HOLDGUARD_DEFAULT_REGION": "US",
    "HOLDGUARD_DATA_DIR": "./holdguard-data",
    "HOLDGUARD_PAGES_TOKEN": "",  # empty: pages answer only on localhost
}


def load_config(overrides: dict | None = None) -> dict:
    """Defaults, then the environment, then explicit overrides (tests, CLI flags)."""
    config = {key: os.environ.get(key, default) for key, default in DEFAULTS.items()}
    config.update(overrides or {})
    return config


def create_app(test_config: dict | None = None) -> "Flask":
    """Application factory: nothing touches the database until a request does, except adding the
    columns this version needs to an existing one (app.db.upgrade_existing)."""
    from flask import Flask

    app = Flask(__name__)
    app.config.update(load_config(test_config))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app import db
    db.init_app(app)

    from app import api, twilio_hold
    app.register_blueprint(twilio_hold.bp)
    app.register_blueprint(api.bp)

    try:  # the pages blueprint arrives with the web UI
        from app import reports
    except ImportError:
        reports = None
    if reports is not None:
        app.register_blueprint(reports.bp)
    return app

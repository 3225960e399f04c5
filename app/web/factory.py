"""The application factory: config, the database's teardown, the blueprints."""
import logging

from flask import Blueprint, Flask

from app.core.config import load_config
from app.web import agent, api, db, live, messages, pages, twilio_hold

# Larger request bodies are refused with 413 before they are read: a CRM API body is a few
# kB, a Twilio webhook or a page's form smaller still.
MAX_CONTENT_LENGTH = 1024 * 1024


def create_app(test_config: dict | None = None) -> Flask:
    """A new app; nothing touches the database until a request does, except bringing an existing
    database up to this version (db.upgrade_existing)."""
    app = Flask("app")  # templates and static files live in the app package
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.config.update(load_config(test_config))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db.init_app(app)
    # The stylesheet the standalone audit reports inline, shared with the pages (audits/static).
    app.register_blueprint(Blueprint("audit_assets", "audits", static_folder="static", static_url_path="/assets"))
    app.register_blueprint(twilio_hold.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(agent.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(messages.bp)
    return app

"""holdguard: per-caller hold content for Twilio queues, and audits of what callers heard.

The packages are layers; each imports only those before it:

    app.core      pure: the hold policy, times, phones, product identity, records
    app.storage   the database: schema and migrations, one module of SQL per area
    audits        the audit pipeline: audio -> spans -> messages -> findings -> reports
    app.web       Flask: the Twilio webhooks, the CRM API, the pages
    app.cli       click: the `holdguard` command

(tests/test_layers.py holds the rule.)
"""


def create_app(test_config: dict | None = None):
    """The Flask app, as gunicorn loads it: `gunicorn 'app:create_app()'`.

    Flask is imported only when an app is made, so CLI commands that need none start faster.
    """
    from app.web.factory import create_app as create_web_app

    return create_web_app(test_config)

"""`holdguard serve`: the pages' token and the public URL it derives, without starting a server."""
import re

import pytest
from click.testing import CliRunner
from flask import Flask

from app.cli import main


@pytest.fixture
def served(monkeypatch, db_path):
    """Run `holdguard serve ARGS` with Flask's run() replaced; returns (output, the app it would run)."""
    for name in ("HOLDGUARD_PAGES_TOKEN", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOLDGUARD_DB", str(db_path))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)
    started = []
    monkeypatch.setattr(Flask, "run", lambda app, host, port: started.append((app, host, port)))

    def serve(*args, env=None):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(main, ["serve", *args])
        assert result.exit_code == 0, result.output
        return result.output, started[-1][0]
    return serve


def test_serve_makes_a_pages_token_and_prints_the_link_carrying_it(served):
    output, app = served("--port", "5077")
    link = re.search(r"pages: (http://127\.0\.0\.1:5077/\?token=(\S+))", output)
    assert link, output
    token = link.group(2)
    assert len(token) >= 32 and app.config["HOLDGUARD_PAGES_TOKEN"] == token
    client = app.test_client()
    assert client.get("/audits").status_code == 401  # localhost too needs it
    assert client.get(f"/?token={token}").status_code == 302
    assert client.get("/audits").status_code == 200  # the cookie it set
    assert served()[1].config["HOLDGUARD_PAGES_TOKEN"] != token  # a new one each run


def test_serve_keeps_a_configured_token_out_of_its_output(served):
    output, app = served(env={"HOLDGUARD_PAGES_TOKEN": "configured-s3cret"})
    assert "configured-s3cret" not in output and "pages: http://127.0.0.1:5000/?token=<HOLDGUARD_PAGES_TOKEN>" in output
    assert app.test_client().get("/audits").status_code == 401


def test_serve_local_pages_only_when_asked(served):
    output, app = served(env={"HOLDGUARD_PAGES_TOKEN": "local"})
    assert "pages: http://127.0.0.1:5000/ (no token: this machine only" in output
    assert app.test_client().get("/audits").status_code == 200
    assert app.test_client().get("/audits", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403


@pytest.mark.parametrize("args, base_url", [
    (["--port", "5077"], "http://127.0.0.1:5077"),
    (["--host", "0.0.0.0", "--port", "8080"], "http://127.0.0.1:8080"),
    (["--host", "::1", "--port", "5001"], "http://[::1]:5001"),
])
def test_public_base_url_defaults_to_the_served_address(served, args, base_url):
    output, app = served(*args)
    assert app.config["PUBLIC_BASE_URL"] == base_url
    assert f"Twilio calls {base_url}/twilio/voice" in output


def test_a_set_public_base_url_wins(served):
    output, app = served("--port", "5077", env={"PUBLIC_BASE_URL": "https://hold.example.com"})
    assert app.config["PUBLIC_BASE_URL"] == "https://hold.example.com"


def test_request_log_has_no_colour_codes_when_stderr_is_not_a_terminal(served, caplog):
    from werkzeug._internal import _log

    served()
    with caplog.at_level("INFO", logger="werkzeug"):
        _log("info", '%s - - "%s" %s', "127.0.0.1", "\x1b[31m\x1b[1mGET /audits HTTP/1.1\x1b[0m", 401)
    assert caplog.records[-1].getMessage() == '127.0.0.1 - - "GET /audits HTTP/1.1" 401'

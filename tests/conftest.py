"""Shared fixtures: an app on a temporary database, a client, a CLI runner, signed requests."""
import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from app import create_app
from app.storage.schema import open_database

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
BASE_URL = "https://hold.example.com"
API_TOKEN = "test-api-token"


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "holdguard.db"
    open_database(path).close()
    return path


@pytest.fixture
def app(db_path, tmp_path):
    return create_app({
        "TESTING": True,
        "HOLDGUARD_DB": str(db_path),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": BASE_URL,
        "HOLDGUARD_API_TOKEN": API_TOKEN,
        "HOLDGUARD_DATA_DIR": str(tmp_path / "data"),
        "HOLDGUARD_PAGES_TOKEN": "local",  # pages without a token, from this machine only
    })


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(db_path, monkeypatch):
    """A CLI runner whose commands see the test database through the environment."""
    monkeypatch.setenv("HOLDGUARD_DB", str(db_path))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE_URL)
    return CliRunner()


def sign(path: str, params: dict, token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio would send for a POST to BASE_URL + path."""
    return RequestValidator(token).compute_signature(BASE_URL + path, params)


@pytest.fixture
def twilio_post(client):
    """POST form params to a webhook path with a correct Twilio signature."""
    def post(path, params):
        return client.post(path, data=params, headers={"X-Twilio-Signature": sign(path, params)})
    return post


def pytest_sessionfinish(session, exitstatus):
    # pytest exits 5 when it collected no tests; a test run that ran nothing must fail.
    if exitstatus == 5:
        session.exitstatus = 1

"""Shared fixtures: an app on a temporary database, a client, a CLI runner, signed requests.

Every test that uses a database (`db_path`, and the app, client and runner on it) runs twice: on
a SQLite file and on a PostgreSQL database of a private server started for the run
(tests/pg_server.py). `db_path` is where the database is: a file path, or a postgresql:// URL.
Tests of what only SQLite has (a file to corrupt, WAL, its locks) are marked `sqlite_only`.
"""
import os
import uuid

import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from app import create_app
from app.storage import playlog
from app.storage.postgres import close_pools
from app.storage.schema import open_database
from pg_server import PostgresServer

BACKENDS = ("sqlite", "postgresql")
TEMPLATE_DB = "holdguard_template"

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
BASE_URL = "https://hold.example.com"
API_TOKEN = "test-api-token"


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the run, with a migrated template database; stopped at exit."""
    server = PostgresServer().start()
    template = server.create_database(TEMPLATE_DB)
    open_database(template).close()
    close_pools(template)
    yield server
    close_pools()
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("tests what only SQLite has")
    return request.param


@pytest.fixture
def db_path(backend, tmp_path, request):
    """A new, migrated database: a SQLite file, or a PostgreSQL database made from the template."""
    if backend == "sqlite":
        path = tmp_path / "holdguard.db"
        open_database(path).close()
        yield path
        playlog.discard_webhook_db()
        return
    server = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name, template=TEMPLATE_DB)
    yield url
    playlog.discard_webhook_db()
    close_pools(url)
    server.drop_database(name)


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


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """A Whisper cache dir of the module's own (HOLDGUARD_CACHE_DIR), so joining and converting
    weights really happen in this test run."""
    cache = tmp_path_factory.mktemp("holdguard-cache")
    previous = os.environ.get("HOLDGUARD_CACHE_DIR")
    os.environ["HOLDGUARD_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["HOLDGUARD_CACHE_DIR"]
    else:
        os.environ["HOLDGUARD_CACHE_DIR"] = previous


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

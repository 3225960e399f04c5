"""Settings: defaults, then the environment, then explicit overrides (tests, CLI flags)."""
import os

DEFAULTS = {
    "HOLDGUARD_DB": "./holdguard.db",
    "TWILIO_AUTH_TOKEN": "",
    "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    "HOLDGUARD_API_TOKEN": "",
    "HOLDGUARD_QUEUE": "support",
    "HOLDGUARD_DEFAULT_REGION": "US",
    "HOLDGUARD_DATA_DIR": "./holdguard-data",
    "HOLDGUARD_PAGES_TOKEN": "",  # empty: pages closed (holdguard serve makes one); "local": localhost only
}


def load_config(overrides: dict | None = None) -> dict:
    config = {key: os.environ.get(key, default) for key, default in DEFAULTS.items()}
    config.update(overrides or {})
    return config

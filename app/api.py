"""CRM JSON API (placeholder until the webhook work lands)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

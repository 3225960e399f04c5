"""Twilio webhooks (placeholder until the webhook work lands)."""
from flask import Blueprint

bp = Blueprint("twilio_hold", __name__, url_prefix="/twilio")

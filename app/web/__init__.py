"""The web edge: Flask blueprints for the Twilio webhooks, the CRM API and the pages."""

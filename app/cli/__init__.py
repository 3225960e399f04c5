"""The `holdguard` command: one entry point, each subcommand a few lines over a library module.

Subcommands are imported lazily so `holdguard --help` and the webhook commands
never pay for importing Whisper and torch.
"""
import importlib
import importlib.util

import click

# name -> "module:attribute" of a click command or group
SUBCOMMANDS = {
    "db": "app.cli.db:db_group",
    "flows": "app.cli.flows:flows_group",
    "customers": "app.cli.customers:customers_group",
    "simulate": "app.cli.simulate:simulate_command",
    "suppression": "app.cli.suppression:suppression_group",
    "serve": "app.cli.serve:serve_command",
    "demo": "app.cli.demo:demo_command",
    "audit": "app.cli.audit:audit_group",
    "recordings": "app.cli.recordings:recordings_group",
    "messages": "app.cli.messages:messages_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in SUBCOMMANDS if self._importable(name))

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module_name, attribute = SUBCOMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    @staticmethod
    def _importable(name):
        module_name = SUBCOMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="holdguard")
def main():
    """holdguard: what callers hear on hold, per caller, and audits of what they heard.

    \b
    Quick start:
      holdguard demo                     # demo DB, a 45-minute simulated hold, an audit report
      holdguard db init                  # create ./holdguard.db (env HOLDGUARD_DB)
      holdguard flows load flows.toml    # hold flows: queues and segments
      holdguard customers import crm.csv # customers, products, open issues
      holdguard serve                    # Twilio webhooks on http://127.0.0.1:5000
    """

"""``clamor doctor``: check a deployment before launch, one line per check (:mod:`app.doctor`)."""

import sys

import click

from ..doctor import run_checks
from .common import backend_registry, read_settings


@click.command("doctor")
def doctor_command() -> None:
    """Check the settings, campaign files, backends' servers, bounce mailbox, SPF and DMARC; exit 1 if any fails.

    Needs no working app (like `clamor campaign check`) and sends nothing.
    """
    settings, instance = read_settings()
    backends = backend_registry(settings, instance)
    failed = False
    for ok, line in run_checks(settings, instance, backends):
        click.echo(f"{'ok' if ok else 'FIX'}: {line}")
        failed |= not ok
    if failed:
        click.echo("\nFix each FIX line, then run `clamor doctor` again (docs/deploying.md).")
        sys.exit(1)

"""``clamor export``, ``forget`` and ``purge``: supporters' data out, and gone when it should be."""

import sys

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("export")
@click.option("--campaign", "slug", help="Only this campaign.")
@click.option("--opt-in-only", is_flag=True, help="Only supporters who asked for future alerts.")
@with_appcontext
def export_command(slug: str | None, opt_in_only: bool) -> None:
    """Write supporters as CSV to standard output, one batch at a time.

    Opt-in rows carry their unsubscribe link when BASE_URL is set (the
    column is empty otherwise: a link needs the site's public address).
    """
    from ..export import export_query, iter_csv
    from ..links import unsubscribe_url

    app = current_app._get_current_object()
    if slug and slug not in app.extensions["clamor"].campaigns:
        raise click.ClickException(f"no campaign {slug!r}")
    links = unsubscribe_url if app.config["BASE_URL"] else None
    for chunk in iter_csv(export_query(slug, opt_in_only), links):
        sys.stdout.write(chunk)


@click.command("forget")
@click.argument("email")
@with_appcontext
def forget_command(email: str) -> None:
    """Remove EMAIL's signatures in every campaign (sent letters keep only target and time)."""
    from ..privacy import forget

    removed = forget(email)
    click.echo(f"removed {removed} signature(s)")


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Apply CONFIRM_EXPIRY_DAYS and RETENTION_DAYS: delete what is no longer needed. Run daily."""
    from ..privacy import purge

    report = purge(current_app.extensions["clamor"].campaigns, current_app.config)
    click.echo(
        f"deleted {report.expired_unconfirmed} unconfirmed signature(s), "
        f"{report.removed} supporter(s) without opt-in after retention; "
        f"cleared {report.letters_cleared} letter text(s)"
    )

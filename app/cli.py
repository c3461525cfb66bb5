"""The ``clamor`` command: ``flask --app wsgi`` with Clamor's own commands."""

import csv
import secrets
import shutil
import signal
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import func, select, update

from .campaigns import CampaignError, load_campaign
from .extensions import db
from .models import Delivery, Signature, utcnow

EXAMPLE_CAMPAIGNS = Path(__file__).resolve().parent.parent / "instance" / "campaigns"


def _create_app():
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app)
def main():
    """Clamor: run an email action for your union."""


@click.command("init")
def init_command():
    """Prepare instance/: a secret key, the example campaign, the database. Safe to repeat."""
    from flask_migrate import upgrade

    from . import create_app, default_instance_path

    instance = default_instance_path()
    (instance / "campaigns").mkdir(parents=True, exist_ok=True)
    config_file = instance / "config.py"
    if not config_file.exists():
        config_file.write_text(
            "# Settings for this deployment; see README.md for every key.\n"
            f"SECRET_KEY = {secrets.token_urlsafe(48)!r}\n"
        )
        config_file.chmod(0o600)
        click.echo(f"wrote a new SECRET_KEY to {config_file}")
    if not any((instance / "campaigns").glob("*.toml")):
        for example in EXAMPLE_CAMPAIGNS.glob("*.toml"):
            shutil.copy(example, instance / "campaigns" / example.name)
            click.echo(f"installed the example campaign {example.stem}")
    app = create_app(instance_path=instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    click.echo(f"database ready: {app.config['SQLALCHEMY_DATABASE_URI']}")


@click.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@with_appcontext
def deliver_command(once):
    """Send due letters (run beside the web server when DELIVERY_WORKER is external)."""
    from .delivery import DeliveryWorker, deliver_due

    app = current_app._get_current_object()
    if once:
        from .delivery import is_paused

        if is_paused():
            click.echo("delivery is paused (`clamor deliveries resume`); nothing sent")
            return
        total = 0
        while claimed := deliver_due(app):
            total += claimed
        click.echo(f"{total} deliveries attempted")
        return
    worker = DeliveryWorker(app)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    click.echo("delivering; Ctrl-C or SIGTERM stops after the current letter")
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        pass


@click.group("deliveries", invoke_without_command=True)
@click.pass_context
@with_appcontext
def deliveries_group(ctx):
    """Show where letters stand: counts by status and target, the oldest pending, recent errors."""
    if ctx.invoked_subcommand is not None:
        return
    from .delivery import is_paused

    if is_paused():
        click.echo("PAUSED: nothing is sent until `clamor deliveries resume`.")
    rows = db.session.execute(
        select(Delivery.target_key, Delivery.status, func.count()).group_by(Delivery.target_key, Delivery.status)
    ).all()
    statuses = ("pending", "sending", "sent", "failed", "held")
    table = {}
    for target, status, count in rows:
        table.setdefault(target, dict.fromkeys(statuses, 0))[status] = count
    totals = {status: sum(row[status] for row in table.values()) for status in statuses}
    click.echo("  ".join(f"{status}: {totals[status]}" for status in statuses))
    if table:
        width = max(len(target) for target in table)
        click.echo(f"\n{'target':<{width}}  " + "  ".join(f"{s:>7}" for s in statuses))
        for target in sorted(table):
            click.echo(f"{target:<{width}}  " + "  ".join(f"{table[target][s]:>7}" for s in statuses))
    oldest = db.session.scalars(
        select(Delivery).where(Delivery.status.in_(("pending", "sending"))).order_by(Delivery.created_at).limit(1)
    ).first()
    if oldest:
        click.echo(
            f"\noldest pending: #{oldest.id} to {oldest.target_key}, queued {oldest.created_at:%Y-%m-%d %H:%M} UTC, "
            f"{oldest.attempts} attempts, next {oldest.next_attempt_at:%Y-%m-%d %H:%M} UTC"
            + (f": {oldest.last_error}" if oldest.last_error else "")
        )
    errors = db.session.scalars(
        select(Delivery).where(Delivery.status.in_(("pending", "failed")), Delivery.last_error != "")
        .order_by(Delivery.id.desc()).limit(10)
    ).all()
    if errors:
        click.echo("\nrecent errors:")
        for delivery in errors:
            click.echo(f"  #{delivery.id} {delivery.status} {delivery.target_key} (attempt {delivery.attempts}): {delivery.last_error}")


@deliveries_group.command("retry")
@click.option("--failed", is_flag=True, help="Also give failed letters a new round of attempts.")
@click.option("--id", "delivery_id", type=int, help="Only this delivery (pending or failed).")
@with_appcontext
def deliveries_retry(failed, delivery_id):
    """Make pending letters due now, skipping their backoff; --failed requeues failed ones too."""
    statuses = ("pending", "failed") if failed or delivery_id else ("pending",)
    query = update(Delivery).where(Delivery.status.in_(statuses))
    if delivery_id is not None:
        query = query.where(Delivery.id == delivery_id)
    # A failed letter gets a fresh count of attempts; its last error stays until the next try.
    result = db.session.execute(
        query.values(status="pending", next_attempt_at=utcnow(), lease_until=None,
                     attempts=db.case((Delivery.status == "failed", 0), else_=Delivery.attempts)),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    if delivery_id is not None and not result.rowcount:
        raise click.ClickException(f"no pending or failed delivery #{delivery_id}")
    click.echo(f"{result.rowcount} deliveries due now")


@deliveries_group.command("pause")
@with_appcontext
def deliveries_pause():
    """Stop every worker from sending; signatures are still accepted and stored."""
    from .delivery import set_paused

    set_paused(True)
    click.echo("delivery paused: letters wait until `clamor deliveries resume`")


@deliveries_group.command("resume")
@with_appcontext
def deliveries_resume():
    """Let workers send again."""
    from .delivery import set_paused

    set_paused(False)
    click.echo("delivery resumed")


@click.group("campaign")
def campaign_group():
    """Campaign files."""


@campaign_group.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
def campaign_check(files):
    """Validate campaign files (default: every file in instance/campaigns/)."""
    from . import config as defaults
    from . import default_instance_path

    if not files:
        instance = default_instance_path()
        files = sorted((instance / "campaigns").glob("*.toml"))
        if not files:
            raise click.ClickException(f"no campaign files in {instance / 'campaigns'}")
    failed = False
    for path in files:
        try:
            campaign = load_campaign(path, defaults.LANGUAGES)
        except CampaignError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
        else:
            click.echo(f"ok: {path} ({campaign.slug}, {len(campaign.targets)} targets, {', '.join(campaign.languages)})")
    if failed:
        sys.exit(1)


EXPORT_COLUMNS = ("name", "email", "organisation", "country", "language", "opt_in", "consented_at", "created_at")


@click.command("export")
@click.option("--campaign", "slug", help="Only this campaign.")
@click.option("--opt-in-only", is_flag=True, help="Only supporters who asked for future alerts.")
@with_appcontext
def export_command(slug, opt_in_only):
    """Write supporters as CSV to standard output, one row at a time."""
    query = select(Signature).where(Signature.status == "accepted").order_by(Signature.id)
    if slug:
        if slug not in current_app.extensions["clamor"].campaigns:
            raise click.ClickException(f"no campaign {slug!r}")
        query = query.where(Signature.campaign == slug)
    if opt_in_only:
        query = query.where(Signature.opt_in.is_(True))
    writer = csv.writer(sys.stdout)
    writer.writerow(EXPORT_COLUMNS)
    for signature in db.session.scalars(query.execution_options(yield_per=500)):
        writer.writerow(
            spreadsheet_safe(value)
            for value in (
                signature.name,
                signature.email,
                signature.organisation,
                signature.country,
                signature.language,
                "yes" if signature.opt_in else "no",
                signature.consented_at.isoformat() if signature.consented_at else "",
                signature.created_at.isoformat(),
            )
        )


def spreadsheet_safe(value):
    """Prefix a quote to text a spreadsheet would run as a formula (=, +, -, @)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


#: Commands that need no working app (init writes the SECRET_KEY the app needs).
main.add_command(init_command)
main.add_command(campaign_group)


def init_app(app):
    """Attach every command to ``app.cli``, so ``flask --app wsgi …`` has them too."""
    for command in (init_command, campaign_group, deliver_command, deliveries_group, export_command):
        app.cli.add_command(command)

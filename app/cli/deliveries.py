"""``clamor deliver`` and ``clamor deliveries``: send due letters; see where they stand, retry, pause, resume."""

import signal

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import figures, states
from ..delivery import ORGANISER_KIND
from ..extensions import db
from ..models import Delivery
from ..security import redact_addresses
from ..states import DeliveryStatus

#: How ``clamor deliveries`` names mail to supporters' own mailboxes (confirmations …).
SUPPORTERS_OWN_MAIL = "supporters' own mail"

#: The columns of ``clamor deliveries``, in order.
STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.DELIVERED,
            DeliveryStatus.BOUNCED, DeliveryStatus.FAILED, DeliveryStatus.HELD, DeliveryStatus.CANCELLED,
            DeliveryStatus.IN_DIGEST)


@click.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@with_appcontext
def deliver_command(once: bool) -> None:
    """Send due letters (run beside the web server when DELIVERY_WORKER is external)."""
    from ..delivery import DeliveryWorker, deliver_due

    app = current_app._get_current_object()
    if once:
        from ..delivery import is_paused

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
    click.echo("delivering; Ctrl-C or SIGTERM stops after the current batch")
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        pass


@click.group("deliveries", invoke_without_command=True)
@click.option("--csv", "as_csv", is_flag=True, help="Write one CSV row per letter to standard output instead.")
@click.option("--campaign", help="With --csv: only this campaign's letters.")
@click.pass_context
@with_appcontext
def deliveries_group(ctx: click.Context, as_csv: bool = False, campaign: str | None = None) -> None:
    """Show where letters stand: counts by status and target, the oldest pending, recent errors."""
    if ctx.invoked_subcommand is not None:
        return
    if as_csv:
        from ..letters_csv import iter_letters_csv

        for chunk in iter_letters_csv(campaign):
            click.echo(chunk, nl=False)
        return
    from ..delivery import is_paused

    if is_paused():
        click.echo("PAUSED: nothing is sent until `clamor deliveries resume`.")
    _echo_table(_rows())
    oldest = figures.oldest_pending()
    if oldest:
        click.echo(
            f"\noldest pending: #{oldest.id} to {_recipient(oldest)}, queued {oldest.created_at:%Y-%m-%d %H:%M} UTC, "
            f"{oldest.attempts} attempts, next {oldest.next_attempt_at:%Y-%m-%d %H:%M} UTC"
            + (f": {_error(oldest)}" if oldest.last_error else "")
        )
    errors = figures.recent_errors(limit=10)
    if errors:
        click.echo("\nrecent errors:")
        for delivery in errors:
            click.echo(f"  #{delivery.id} {delivery.status} {_recipient(delivery)} (attempt {delivery.attempts}): "
                       f"{_error(delivery)}")


def _rows():
    """``[(target, {status: count})]``: one row per campaign target, then one for all supporters' own mail.

    A letter's target is a campaign's target; any other mail goes to a
    supporter's own mailbox, whose address must not be printed.
    """
    rows = [(target, {**dict.fromkeys(STATUSES, 0), **counts})
            for target, counts in sorted(figures.letters_by_target().items())]
    own_mail = {**dict.fromkeys(STATUSES, 0), **figures.mailbox_mail_by_status()}
    if any(own_mail.values()):
        rows.append((SUPPORTERS_OWN_MAIL, own_mail))
    return rows


def _echo_table(rows):
    """The totals line, then one line per row of :func:`_rows` under a header."""
    totals = {status: sum(row[status] for _, row in rows) for status in STATUSES}
    click.echo("  ".join(f"{status}: {totals[status]}" for status in STATUSES))
    if rows:
        width = max(len(target) for target, _ in rows)
        click.echo(f"\n{'target':<{width}}  " + "  ".join(f"{s:>7}" for s in STATUSES))
        for target, row in rows:
            click.echo(f"{target:<{width}}  " + "  ".join(f"{row[s]:>7}" for s in STATUSES))


def _recipient(delivery):
    """A letter's target or an organiser's address; for mail to a supporter, what kind of mail, never the address."""
    if delivery.kind in (*states.TARGET_KINDS, ORGANISER_KIND):
        return delivery.target_key
    return f"{SUPPORTERS_OWN_MAIL} ({delivery.kind})"


def _error(delivery):
    # Redacted when stored (app.delivery.error_text); again here for rows
    # stored before that was so.
    return delivery.last_error if delivery.kind in states.TARGET_KINDS else redact_addresses(delivery.last_error)


@deliveries_group.command("retry")
@click.option("--failed", is_flag=True, help="Also give failed letters a new round of attempts.")
@click.option("--id", "delivery_id", type=int, help="Only this delivery (pending or failed).")
@with_appcontext
def deliveries_retry(failed: bool, delivery_id: int | None) -> None:
    """Make pending letters due now, skipping their backoff; --failed requeues failed ones too."""
    statuses = (DeliveryStatus.PENDING,)
    if failed or delivery_id is not None:
        statuses += (DeliveryStatus.FAILED,)
    # A failed letter gets a fresh count of attempts; its last error stays until the next try.
    retried = states.retry(*([Delivery.id == delivery_id] if delivery_id is not None else []), statuses=statuses)
    db.session.commit()
    if delivery_id is not None and not retried:
        raise click.ClickException(f"no pending or failed delivery #{delivery_id}")
    click.echo(f"{retried} deliveries due now")


@deliveries_group.command("pause")
@with_appcontext
def deliveries_pause() -> None:
    """Stop every worker from sending; signatures are still accepted and stored."""
    from ..delivery import set_paused

    set_paused(True)
    click.echo("delivery paused: letters wait until `clamor deliveries resume`")


@deliveries_group.command("resume")
@with_appcontext
def deliveries_resume() -> None:
    """Let workers send again."""
    from ..delivery import set_paused

    set_paused(False)
    click.echo("delivery resumed")


@deliveries_group.command("check-alarms")
@with_appcontext
def deliveries_check_alarms() -> None:
    """Raise or clear the queue alarms now (the worker does it every minute); email organisers once per stall."""
    from .. import alarms
    from ..models import Alarm

    for name in alarms.check(current_app._get_current_object()):
        click.echo(f"alarm raised: {name} (organisers emailed)")
    raised = db.session.scalars(db.select(Alarm.name).where(Alarm.raised_at.is_not(None), Alarm.cleared_at.is_(None))
                                .order_by(Alarm.name)).all()
    click.echo(f"raised: {', '.join(raised)}" if raised else "no alarm raised")

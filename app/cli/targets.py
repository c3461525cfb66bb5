"""``clamor targets``: every target's letters and health; resume, reroute or cancel the letters of one address."""

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from .. import figures, states
from ..extensions import db
from ..models import Delivery

#: The letter columns of ``clamor targets``, in order (figures of the running totals).
COLUMNS = ("sent", "delivered", "bounced", "queued", "held", "failed", "cancelled")


def _campaigns():
    return current_app.extensions["clamor"].campaigns


def _known_addresses(totals, health):
    """Every address ``clamor targets`` knows: campaign targets, then any with letters or a health row."""
    keys = {target.key: None for campaign in _campaigns().values() for target in campaign.targets}
    keys.update(dict.fromkeys(sorted(set(totals) | set(health))))
    return list(keys)


def _address(given):
    """The stored spelling of ``given`` (any case); ``Error: …``, exit 1, when no campaign or letter knows it."""
    known = _known_addresses(figures.letters_by_target_from_totals(), figures.target_health())
    for key in known:
        if key.lower() == given.strip().lower():
            return key
    raise click.ClickException(f"no target {given}: no campaign file, letter or bounce names it")


@click.group("targets", invoke_without_command=True)
@click.pass_context
@with_appcontext
def targets_group(ctx: click.Context) -> None:
    """List every target: letters sent, delivered, bounced, queued, held, failed, cancelled; suspended; complaints."""
    if ctx.invoked_subcommand is not None:
        return
    totals, health = figures.letters_by_target_from_totals(), figures.target_health()
    keys = _known_addresses(totals, health)
    width = max([len("target"), *(len(key) for key in keys)])
    click.echo(f"{'target':<{width}}  " + "  ".join(f"{c:>9}" for c in COLUMNS) + "  suspended             complaint")
    for key in keys:
        row, record = totals.get(key, {}), health.get(key)
        suspended = (f"yes, since {record.suspended_at:%Y-%m-%d %H:%M}" if record and record.suspended_at else "no")
        complaint = "yes" if record and record.complaint else "no"
        click.echo(f"{key:<{width}}  " + "  ".join(f"{row.get(c, 0):>9}" for c in COLUMNS)
                   + f"  {suspended:<22}{complaint}")
    for key in keys:
        record = health.get(key)
        if record and record.suspended_at:
            click.echo(f"\n{key} suspended after {record.bounces_in_row} bounces in a row; last: {record.last_bounce}"
                       f"\n  then: clamor targets resume|cancel {key}, or clamor targets reroute {key} NEW")
        if record and record.complaint:
            click.echo(f"\n{key} complaint {record.complained_at:%Y-%m-%d %H:%M} UTC: {record.complaint}")


@targets_group.command("resume")
@click.argument("address")
@with_appcontext
def targets_resume(address: str) -> None:
    """Lift ADDRESS's suspension and send its held letters (not those waiting for a moderator)."""
    key = _address(address)
    was = bool(states.suspended_keys([key]))
    released = states.resume(key)
    db.session.commit()
    click.echo(f"{key} {'resumed' if was else 'was not suspended'}: {released} held letters due now")


@targets_group.command("cancel")
@click.argument("address")
@with_appcontext
def targets_cancel(address: str) -> None:
    """Cancel the letters waiting for ADDRESS (pending, or held for its suspension); sent ones stay as they are."""
    key = _address(address)
    cancelled = states.cancel(key)
    db.session.commit()
    click.echo(f"{cancelled} letters to {key} cancelled")


def _new_target(campaign_slug, new):
    """The target of campaign ``campaign_slug`` whose address is ``new`` (any case), or ``Error: …``, exit 1."""
    campaign = _campaigns().get(campaign_slug)
    for target in campaign.targets if campaign else ():
        if target.key.lower() == new.strip().lower():
            return target
    raise click.ClickException(f"{new} is not a target of campaign {campaign_slug} in its campaign file: "
                               "correct the file first (then `clamor campaign check`)")


@targets_group.command("reroute")
@click.argument("old")
@click.argument("new")
@with_appcontext
def targets_reroute(old: str, new: str) -> None:
    """Move the letters waiting for OLD (pending, or held for its suspension) to NEW, a target of their campaign."""
    key = _address(old)
    slugs = db.session.scalars(select(Delivery.campaign).distinct().where(
        Delivery.kind == "letter", Delivery.target_key == key, Delivery.status.in_(states.WAITING))).all()
    moves = [(slug, _new_target(slug, new)) for slug in sorted(slugs)]
    moved = sum(states.reroute(key, target.key, slug, target.channel) for slug, target in moves)
    db.session.commit()
    click.echo(f"{moved} letters moved from {key} to {moves[0][1].key if moves else new}")

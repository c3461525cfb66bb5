"""``clamor admin``: organiser accounts for the admin pages."""

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..extensions import db


@click.group("admin")
def admin_group() -> None:
    """Organiser accounts for the admin pages."""


@admin_group.command("add")
@click.argument("email")
@click.password_option(help="Asked twice when not given.")
@with_appcontext
def admin_add(email: str, password: str) -> None:
    """Create organiser EMAIL, or set a new password for it (which ends their open sessions)."""
    from ..admin import end_sessions, hash_password
    from ..models import AdminSession, Organiser

    email = email.strip().lower()
    if "@" not in email:
        raise click.ClickException(f"{email!r} is not an email address")
    if len(password) < 10:
        raise click.ClickException("the password must have at least 10 characters")
    organiser = db.session.scalar(select(Organiser).where(Organiser.email == email))
    created = organiser is None
    if created:
        organiser = Organiser(email=email)
        db.session.add(organiser)
        ended = 0
    else:
        # A new password is often set because the old one leaked: whoever used it is out.
        ended = end_sessions(AdminSession.organiser_id == organiser.id)
        organiser.failed_logins = 0
        organiser.locked_until = None
    organiser.password_hash = hash_password(password)
    db.session.commit()
    click.echo(f"added {email}" if created else f"new password for {email}; ended {ended} open session(s)")


def _organiser_or_fail(email):
    from ..models import Organiser

    organiser = db.session.scalar(select(Organiser).where(Organiser.email == email.strip().lower()))
    if organiser is None:
        raise click.ClickException(f"no organiser {email!r}")
    return organiser


@admin_group.command("remove")
@click.argument("email")
@with_appcontext
def admin_remove(email: str) -> None:
    """Delete organiser EMAIL; their open sessions stop working at once."""
    from ..admin import end_sessions
    from ..models import AdminSession

    organiser = _organiser_or_fail(email)
    end_sessions(AdminSession.organiser_id == organiser.id)
    db.session.delete(organiser)
    db.session.commit()
    click.echo(f"removed {organiser.email}")


@admin_group.command("logout-all")
@click.argument("email")
@with_appcontext
def admin_logout_all(email: str) -> None:
    """End every open session of organiser EMAIL (a lost laptop); the account stays."""
    from ..admin import end_sessions
    from ..models import AdminSession

    organiser = _organiser_or_fail(email)
    ended = end_sessions(AdminSession.organiser_id == organiser.id)
    db.session.commit()
    click.echo(f"ended {ended} session(s) of {organiser.email}")


@admin_group.command("list")
@with_appcontext
def admin_list() -> None:
    """Show every organiser and their last login."""
    from ..models import Organiser

    for organiser in db.session.scalars(select(Organiser).order_by(Organiser.email)):
        last = organiser.last_login_at.isoformat(timespec="minutes") if organiser.last_login_at else "never"
        click.echo(f"{organiser.email}\tlast login: {last}")

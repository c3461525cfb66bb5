"""``clamor bounces``: take in what came back to BOUNCE_ADDRESS, one message on standard input or an IMAP mailbox."""

import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

#: The largest message ``read`` takes (bytes); a bounce is far smaller, and the rest is not read.
MAX_MESSAGE = 10 * 1024 * 1024
#: sysexits.h EX_TEMPFAIL: an MTA's pipe keeps the message and tries again later.
EX_TEMPFAIL = 75


@click.group("bounces")
def bounces_group() -> None:
    """Bounces and auto-replies to BOUNCE_ADDRESS: mark letters bounced, note the rest (docs/delivery.md)."""


@bounces_group.command("read")
@click.option("--recipient", metavar="ADDRESS", envvar=["ORIGINAL_RECIPIENT", "RECIPIENT"],
              help="The address the message was delivered to (default: $ORIGINAL_RECIPIENT or $RECIPIENT, "
                   "as Postfix's pipe sets them); its VERP token finds the letter.")
@with_appcontext
def bounces_read(recipient: str | None) -> None:
    """Read one message on standard input (an MTA pipe, sieve, procmail or .forward) and record it.

    Prints one line: "bounced: delivery N", "note: delivery N", "ignored:
    delivery N" (a letter not sent) or "kept: PATH" (no letter matches: the
    message is kept for an organiser). Exits 0 then; 75 (try again later) when
    the database cannot be written.
    """
    from ..bounces import handle, keep_unmatched

    raw = sys.stdin.buffer.read(MAX_MESSAGE)
    try:
        handled = handle(raw, recipient or None)
    except SQLAlchemyError as exc:
        click.echo(f"error: the database cannot be written ({type(exc).__name__}); try again later", err=True)
        sys.exit(EX_TEMPFAIL)
    if handled.action == "unmatched":
        click.echo(f"kept: {keep_unmatched(raw, current_app.instance_path)}")
    else:
        click.echo(handled.line())


@bounces_group.command("fetch")
@with_appcontext
def bounces_fetch() -> None:
    """Read every message in the BOUNCE_IMAP_URL mailbox once, record it, and move it to its folder."""
    from ..bounce_mailbox import MailboxError, fetch

    config = current_app.config
    if not config.get("BOUNCE_IMAP_URL"):
        raise click.ClickException("BOUNCE_IMAP_URL is not set (docs/delivery.md, Bounces)")
    try:
        counts = fetch(config)
    except MailboxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{counts['bounced']} bounced, {counts['note']} noted, {counts['ignored']} ignored (not sent), "
               f"{counts['unmatched']} kept in {config['BOUNCE_IMAP_UNMATCHED_FOLDER']}")

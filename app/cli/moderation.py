"""``clamor moderation``: signatures a spam filter held for a moderator."""

import click
from flask.cli import with_appcontext


@click.group("moderation")
def moderation_group() -> None:
    """Signatures a spam filter held for a moderator."""


@moderation_group.command("list")
@click.option("--campaign", "slug", help="Only this campaign.")
@with_appcontext
def moderation_list(slug: str | None) -> None:
    """Show held signatures, oldest first, with the filters' reasons."""
    from ..moderation import held_signatures

    held = held_signatures(slug)
    if not held:
        click.echo("no held signatures")
    for signature in held:
        click.echo(f"#{signature.id}  {signature.campaign}  {signature.created_at:%Y-%m-%d %H:%M} UTC")
        # The form refused control characters in these; the letter may have
        # line breaks, shown here as one line.
        click.echo(f"  from:   {signature.name} <{signature.email}>")
        click.echo(f"  reason: {signature.status_reason}")
        excerpt = " ".join(signature.message.split())
        click.echo(f"  letter: {excerpt[:300]}{'…' if len(excerpt) > 300 else ''}")


@moderation_group.command("approve")
@click.argument("signature_id", type=int)
@with_appcontext
def moderation_approve(signature_id: int) -> None:
    """Accept a held signature: its letters are queued for delivery."""
    from ..moderation import approve

    try:
        signature = approve(signature_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"approved #{signature.id}: {len(signature.deliveries)} letters queued")


@moderation_group.command("reject")
@click.argument("signature_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def moderation_reject(signature_id: int, yes: bool) -> None:
    """Delete a held signature and everything stored about its supporter."""
    from ..moderation import reject

    if not yes:
        click.confirm(f"Delete held signature #{signature_id} and its letters for good?", abort=True)
    try:
        reject(signature_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rejected #{signature_id}: deleted")

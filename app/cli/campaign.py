"""``clamor campaign check`` and ``clamor translations``: the deployment's files, checked without the app."""

import sys

import click

from ..doctor import check_campaign_file
from .common import backend_registry, read_settings


@click.group("campaign")
def campaign_group() -> None:
    """Campaign files."""


@campaign_group.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
def campaign_check(files: tuple[str, ...]) -> None:
    """Validate campaign files (default: every file in instance/campaigns/)."""
    # The deployment's LANGUAGES (instance/config.py, CLAMOR_LANGUAGES), not
    # only the defaults: a language added there is a language campaigns may use.
    settings, instance = read_settings()
    if not files:
        files = sorted((instance / "campaigns").glob("*.toml"))
        if not files:
            raise click.ClickException(f"no campaign files in {instance / 'campaigns'}")
    backends = backend_registry(settings, instance)
    failed = False
    for path in files:
        campaign, problems = check_campaign_file(path, settings, backends)
        for line in problems:
            click.echo(f"error: {line}", err=True)
        failed |= bool(problems)
        if campaign is not None:
            for note in campaign.notes:
                click.echo(f"note: {path}: {note}")
            languages = ", ".join(campaign.languages)
            click.echo(f"ok: {path} ({campaign.slug}, {len(campaign.targets)} targets, {languages})")
    if failed:
        sys.exit(1)


@click.command("translations")
@click.option("--show-copies", is_flag=True, help="Also list each string translated as its English.")
def translations_command(show_copies: bool) -> None:
    """Show how complete each language's catalogues are: translated, missing, fuzzy, copied from English."""
    from .. import PROJECT_ROOT
    from ..i18n import catalogue_status

    settings, instance = read_settings()
    statuses = catalogue_status(PROJECT_ROOT, settings["LANGUAGES"], instance)
    width = max(len(s.domain) for s in statuses)
    click.echo(f"{'language':<8}  {'domain':<{width}}  translated  missing  fuzzy  copied from English")
    incomplete = False
    for s in statuses:
        copied = "-" if s.language == "en" else str(s.copied)
        click.echo(f"{s.language:<8}  {s.domain:<{width}}  {s.translated:>10}  "
                   f"{s.missing:>7}  {s.fuzzy:>5}  {copied:>19}")
        if show_copies:
            for msgid in s.copied_ids:
                click.echo(f"    copied: {msgid!r}")
        incomplete |= bool(s.missing or s.fuzzy or s.copied)
    if incomplete:
        click.echo("\nEvery missing, fuzzy or copied string shows English on the page; see docs/translating.md.")

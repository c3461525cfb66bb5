"""The ``clamor`` command: ``flask --app wsgi`` with Clamor's own commands.

One module per group of commands: :mod:`.init`, :mod:`.deliveries`,
:mod:`.campaign` (campaign check, translations), :mod:`.supporters` (export,
forget, purge), :mod:`.organisers`, :mod:`.moderation`. Every name is
importable from ``app.cli`` as before the split.
"""

import click
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo

from .bounces import bounces_group
from .campaign import campaign_check, campaign_group, translations_command
from .common import create_app_or_fail
from .deliveries import (
    SUPPORTERS_OWN_MAIL,
    deliver_command,
    deliveries_group,
    deliveries_pause,
    deliveries_resume,
    deliveries_retry,
)
from .doctor import doctor_command
from .init import EXAMPLE_CAMPAIGNS, init_command
from .moderation import moderation_approve, moderation_group, moderation_list, moderation_reject
from .organisers import admin_add, admin_group, admin_list, admin_logout_all, admin_remove
from .plugins import plugins_command
from .supporters import export_command, forget_command, purge_command
from .targets import targets_group

__all__ = [
    "main", "init_app", "COMMANDS", "EXAMPLE_CAMPAIGNS", "SUPPORTERS_OWN_MAIL",
    "init_command", "deliver_command", "deliveries_group", "deliveries_retry", "deliveries_pause",
    "deliveries_resume", "campaign_group", "campaign_check", "translations_command", "export_command",
    "forget_command", "purge_command", "admin_group", "admin_add", "admin_remove", "admin_logout_all", "admin_list",
    "moderation_group", "moderation_list", "moderation_approve", "moderation_reject", "doctor_command",
]


def _create_app() -> Flask:
    return create_app_or_fail()


class _ClamorGroup(FlaskGroup):
    """Flask's group, but ``clamor --help`` before ``clamor init`` lists every command and says to run init.

    Clamor's commands are registered on the group itself, so they are listed
    even when the app cannot start; the reason it cannot is said at the end.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            ctx.ensure_object(ScriptInfo).load_app()
        except click.ClickException as exc:
            ctx.meta["clamor.load_error"] = exc.format_message()
            return click.Group.list_commands(self, ctx)
        return super().list_commands(ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        error = ctx.meta.get("clamor.load_error")
        if error:
            formatter.write_paragraph()
            formatter.write_text(
                "Run `clamor init` first: it writes instance/config.py with a SECRET_KEY, installs the "
                "example campaign and creates the database. Until then the commands that need the app "
                f"stop with this message: {error}"
            )


@click.group(cls=_ClamorGroup, create_app=_create_app)
def main() -> None:
    """Clamor: run an email action for your union."""


#: Clamor's own commands. init, campaign check and doctor need no working app (init
#: writes the SECRET_KEY the app needs); the others load it when they run.
COMMANDS = (init_command, campaign_group, deliver_command, deliveries_group, export_command, forget_command,
            purge_command, admin_group, moderation_group, translations_command, plugins_command, bounces_group,
            targets_group, doctor_command)
for _command in COMMANDS:
    main.add_command(_command)


def init_app(app: Flask) -> None:
    """Attach every command to ``app.cli``, so ``flask --app wsgi …`` has them too."""
    for command in COMMANDS:
        app.cli.add_command(command)

"""The ``clamor`` command: ``flask --app wsgi`` with Clamor's own commands."""

import os
import secrets
import shutil
import signal
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext
from sqlalchemy import func, select, update

from .campaigns import CampaignError, load_campaign
from .plugin_report import plugins_command
from .plugins import campaign_channel_problems
from .extensions import db
from .models import Delivery, utcnow
from .security import redact_addresses

EXAMPLE_CAMPAIGNS = Path(__file__).resolve().parent.parent / "instance" / "campaigns"


def _create_app():
    from . import ConfigError, create_app
    from .plugins import PluginError

    try:
        return create_app()
    except (ConfigError, PluginError, CampaignError) as exc:
        # A mistake in the settings, a plugin or a campaign file: the organiser
        # needs the message, not a traceback.
        raise click.ClickException(str(exc)) from exc


class _ClamorGroup(FlaskGroup):
    """Flask's group, but ``clamor --help`` before ``clamor init`` lists every command and says to run init.

    Clamor's commands are registered on the group itself, so they are listed
    even when the app cannot start; the reason it cannot is said at the end.
    """

    def list_commands(self, ctx):
        try:
            ctx.ensure_object(ScriptInfo).load_app()
        except click.ClickException as exc:
            ctx.meta["clamor.load_error"] = exc.format_message()
            return click.Group.list_commands(self, ctx)
        return super().list_commands(ctx)

    def format_epilog(self, ctx, formatter):
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
def main():
    """Clamor: run an email action for your union."""


@click.command("init")
def init_command():
    """Prepare instance/: a secret key, the example campaign, the database. Safe to repeat."""
    from flask_migrate import upgrade

    from . import create_app, default_instance_path

    instance = default_instance_path()
    # The database, the outbox and the secret key live here: for the owner
    # only, a checkout's instance/ (made by git with the umask's mode) included.
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    if instance.stat().st_mode & 0o077:
        try:
            instance.chmod(0o700)
        except PermissionError:
            click.echo(f"warning: others may read {instance}; make it private with chmod 700", err=True)
    (instance / "campaigns").mkdir(exist_ok=True)
    (instance / "plugins").mkdir(exist_ok=True)  # for single-file plugins (docs/plugins.md)
    config_file = instance / "config.py"
    if _write_private_file(
        config_file,
        "# Settings for this deployment; see README.md for every key.\n"
        f"SECRET_KEY = {secrets.token_urlsafe(48)!r}\n"
        "# The site's public address: links in emails are built from it. Change it\n"
        "# before going live (docs/deploying.md); `make run` overrides it.\n"
        "BASE_URL = \"http://127.0.0.1:5000\"\n",
    ):
        click.echo(f"wrote a new SECRET_KEY to {config_file}")
    if not any((instance / "campaigns").glob("*.toml")):
        for example in EXAMPLE_CAMPAIGNS.glob("*.toml"):
            shutil.copy(example, instance / "campaigns" / example.name)
            click.echo(f"installed the example campaign {example.stem}")
    app = create_app(instance_path=instance)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    click.echo(f"database ready: {app.config['SQLALCHEMY_DATABASE_URI']}")


def _write_private_file(path, text):
    """Create ``path`` holding ``text``, readable by its owner only from its first byte; False if it exists.

    Created with mode 0600 and O_EXCL (never through a symlink someone left
    there); a write that fails removes the file, so the next try writes it anew.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return True


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
    click.echo("delivering; Ctrl-C or SIGTERM stops after the current batch")
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
    statuses = ("pending", "sending", "sent", "failed", "held")
    letters = Delivery.kind == "letter"
    table = {}
    # A letter's target is a campaign's target; any other mail goes to a
    # supporter's own mailbox, whose address must not be printed: one row for
    # all of it, counted in the database.
    for target, status, count in db.session.execute(
        select(Delivery.target_key, Delivery.status, func.count()).where(letters)
        .group_by(Delivery.target_key, Delivery.status)
    ).all():
        table.setdefault(target, dict.fromkeys(statuses, 0))[status] = count
    own_mail = dict.fromkeys(statuses, 0)
    for status, count in db.session.execute(
        select(Delivery.status, func.count()).where(~letters).group_by(Delivery.status)
    ).all():
        own_mail[status] = count
    rows = [(target, table[target]) for target in sorted(table)]
    if any(own_mail.values()):
        rows.append((SUPPORTERS_OWN_MAIL, own_mail))
    totals = {status: sum(row[status] for _, row in rows) for status in statuses}
    click.echo("  ".join(f"{status}: {totals[status]}" for status in statuses))
    if rows:
        width = max(len(target) for target, _ in rows)
        click.echo(f"\n{'target':<{width}}  " + "  ".join(f"{s:>7}" for s in statuses))
        for target, row in rows:
            click.echo(f"{target:<{width}}  " + "  ".join(f"{row[s]:>7}" for s in statuses))
    oldest = db.session.scalars(
        select(Delivery).where(Delivery.status.in_(("pending", "sending"))).order_by(Delivery.created_at).limit(1)
    ).first()
    if oldest:
        click.echo(
            f"\noldest pending: #{oldest.id} to {_recipient(oldest)}, queued {oldest.created_at:%Y-%m-%d %H:%M} UTC, "
            f"{oldest.attempts} attempts, next {oldest.next_attempt_at:%Y-%m-%d %H:%M} UTC"
            + (f": {_error(oldest)}" if oldest.last_error else "")
        )
    errors = db.session.scalars(
        select(Delivery).where(Delivery.status.in_(("pending", "failed")), Delivery.last_error != "")
        .order_by(Delivery.id.desc()).limit(10)
    ).all()
    if errors:
        click.echo("\nrecent errors:")
        for delivery in errors:
            click.echo(f"  #{delivery.id} {delivery.status} {_recipient(delivery)} (attempt {delivery.attempts}): "
                       f"{_error(delivery)}")


#: How ``clamor deliveries`` names mail to supporters' own mailboxes (confirmations …).
SUPPORTERS_OWN_MAIL = "supporters' own mail"


def _recipient(delivery):
    """The target's address of a letter; for mail to a supporter, what kind of mail, never the address."""
    return delivery.target_key if delivery.kind == "letter" else f"{SUPPORTERS_OWN_MAIL} ({delivery.kind})"


def _error(delivery):
    # Redacted when stored (app.delivery.error_text); again here for rows
    # stored before that was so.
    return delivery.last_error if delivery.kind == "letter" else redact_addresses(delivery.last_error)


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
    # The deployment's LANGUAGES (instance/config.py, CLAMOR_LANGUAGES), not
    # only the defaults: a language added there is a language campaigns may use.
    settings, instance = _settings()
    if not files:
        files = sorted((instance / "campaigns").glob("*.toml"))
        if not files:
            raise click.ClickException(f"no campaign files in {instance / 'campaigns'}")
    backends = _backend_registry(settings, instance)
    failed = False
    for path in files:
        try:
            campaign = load_campaign(path, settings["LANGUAGES"])
            problems = campaign_channel_problems(campaign, settings, backends) if backends is not None else []
            if problems:
                raise CampaignError(problems)
        except CampaignError as exc:
            for line in exc.errors:
                click.echo(f"error: {line}", err=True)
            failed = True
        else:
            for note in campaign.notes:
                click.echo(f"note: {path}: {note}")
            click.echo(f"ok: {path} ({campaign.slug}, {len(campaign.targets)} targets, {', '.join(campaign.languages)})")
    if failed:
        sys.exit(1)


@click.command("translations")
@click.option("--show-copies", is_flag=True, help="Also list each string translated as its English.")
def translations_command(show_copies):
    """Show how complete each language's catalogues are: translated, missing, fuzzy, copied from English."""
    from . import PROJECT_ROOT
    from .i18n import catalogue_status

    settings, instance = _settings()
    statuses = catalogue_status(PROJECT_ROOT, settings["LANGUAGES"], instance)
    width = max(len(s.domain) for s in statuses)
    click.echo(f"{'language':<8}  {'domain':<{width}}  translated  missing  fuzzy  copied from English")
    incomplete = False
    for s in statuses:
        copied = "-" if s.language == "en" else str(s.copied)
        click.echo(f"{s.language:<8}  {s.domain:<{width}}  {s.translated:>10}  {s.missing:>7}  {s.fuzzy:>5}  {copied:>19}")
        if show_copies:
            for msgid in s.copied_ids:
                click.echo(f"    copied: {msgid!r}")
        incomplete |= bool(s.missing or s.fuzzy or s.copied)
    if incomplete:
        click.echo("\nEvery missing, fuzzy or copied string shows English on the page; see docs/translating.md.")


def _settings():
    """The deployment's settings without building the app (defaults, instance/config.py, CLAMOR_*), and instance/."""
    from flask import Config

    from . import default_instance_path

    instance = default_instance_path()
    settings = Config(instance)
    settings.from_object("app.config")
    settings.from_pyfile("config.py", silent=True)
    settings.from_prefixed_env("CLAMOR")
    # What create_app derives from the instance folder, for the backends' sake.
    settings["OUTBOX_DIR"] = settings.get("OUTBOX_DIR") or str(instance / "outbox")
    return settings, instance


def _backend_registry(settings, instance):
    """The delivery backends this deployment's plugins register, or None (with a warning) if they cannot load."""
    from types import SimpleNamespace

    from .plugins import PluginError, collect_backends, create_plugin_manager

    try:
        return collect_backends(create_plugin_manager(SimpleNamespace(config=settings, instance_path=str(instance))))
    except PluginError as exc:
        click.echo(f"warning: plugins cannot load, so delivery settings are not checked: {exc}", err=True)
        return None


@click.command("export")
@click.option("--campaign", "slug", help="Only this campaign.")
@click.option("--opt-in-only", is_flag=True, help="Only supporters who asked for future alerts.")
@with_appcontext
def export_command(slug, opt_in_only):
    """Write supporters as CSV to standard output, one batch at a time.

    Opt-in rows carry their unsubscribe link when BASE_URL is set (the
    column is empty otherwise: a link needs the site's public address).
    """
    from .export import export_query, iter_csv
    from .links import unsubscribe_url

    app = current_app._get_current_object()
    if slug and slug not in app.extensions["clamor"].campaigns:
        raise click.ClickException(f"no campaign {slug!r}")
    links = unsubscribe_url if app.config["BASE_URL"] else None
    for chunk in iter_csv(export_query(slug, opt_in_only), links):
        sys.stdout.write(chunk)


@click.command("forget")
@click.argument("email")
@with_appcontext
def forget_command(email):
    """Remove EMAIL's signatures in every campaign (sent letters keep only target and time)."""
    from .privacy import forget

    removed = forget(email)
    click.echo(f"removed {removed} signature(s)")


@click.command("purge")
@with_appcontext
def purge_command():
    """Apply CONFIRM_EXPIRY_DAYS and RETENTION_DAYS: delete what is no longer needed. Run daily."""
    from .privacy import purge

    report = purge(current_app.extensions["clamor"].campaigns, current_app.config)
    click.echo(
        f"deleted {report.expired_unconfirmed} unconfirmed signature(s), "
        f"{report.removed} supporter(s) without opt-in after retention; "
        f"cleared {report.letters_cleared} letter text(s)"
    )


@click.group("admin")
def admin_group():
    """Organiser accounts for the admin pages."""


@admin_group.command("add")
@click.argument("email")
@click.password_option(help="Asked twice when not given.")
@with_appcontext
def admin_add(email, password):
    """Create organiser EMAIL, or set a new password for it (which ends their open sessions)."""
    from .admin import end_sessions, hash_password
    from .models import AdminSession, Organiser

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
    from .models import Organiser

    organiser = db.session.scalar(select(Organiser).where(Organiser.email == email.strip().lower()))
    if organiser is None:
        raise click.ClickException(f"no organiser {email!r}")
    return organiser


@admin_group.command("remove")
@click.argument("email")
@with_appcontext
def admin_remove(email):
    """Delete organiser EMAIL; their open sessions stop working at once."""
    from .admin import end_sessions
    from .models import AdminSession

    organiser = _organiser_or_fail(email)
    end_sessions(AdminSession.organiser_id == organiser.id)
    db.session.delete(organiser)
    db.session.commit()
    click.echo(f"removed {organiser.email}")


@admin_group.command("logout-all")
@click.argument("email")
@with_appcontext
def admin_logout_all(email):
    """End every open session of organiser EMAIL (a lost laptop); the account stays."""
    from .admin import end_sessions
    from .models import AdminSession

    organiser = _organiser_or_fail(email)
    ended = end_sessions(AdminSession.organiser_id == organiser.id)
    db.session.commit()
    click.echo(f"ended {ended} session(s) of {organiser.email}")


@admin_group.command("list")
@with_appcontext
def admin_list():
    """Show every organiser and their last login."""
    from .models import Organiser

    for organiser in db.session.scalars(select(Organiser).order_by(Organiser.email)):
        last = organiser.last_login_at.isoformat(timespec="minutes") if organiser.last_login_at else "never"
        click.echo(f"{organiser.email}\tlast login: {last}")


@click.group("moderation")
def moderation_group():
    """Signatures a spam filter held for a moderator."""


@moderation_group.command("list")
@click.option("--campaign", "slug", help="Only this campaign.")
@with_appcontext
def moderation_list(slug):
    """Show held signatures, oldest first, with the filters' reasons."""
    from .moderation import held_signatures

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
def moderation_approve(signature_id):
    """Accept a held signature: its letters are queued for delivery."""
    from .moderation import approve

    try:
        signature = approve(signature_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"approved #{signature.id}: {len(signature.deliveries)} letters queued")


@moderation_group.command("reject")
@click.argument("signature_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def moderation_reject(signature_id, yes):
    """Delete a held signature and everything stored about its supporter."""
    from .moderation import reject

    if not yes:
        click.confirm(f"Delete held signature #{signature_id} and its letters for good?", abort=True)
    try:
        reject(signature_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rejected #{signature_id}: deleted")


#: Clamor's own commands. init and campaign check need no working app (init
#: writes the SECRET_KEY the app needs); the others load it when they run.
COMMANDS = (init_command, campaign_group, deliver_command, deliveries_group, export_command, forget_command,
            purge_command, admin_group, moderation_group, translations_command)
COMMANDS += (plugins_command,)
for _command in COMMANDS:
    main.add_command(_command)


def init_app(app):
    """Attach every command to ``app.cli``, so ``flask --app wsgi …`` has them too."""
    for command in COMMANDS:
        app.cli.add_command(command)

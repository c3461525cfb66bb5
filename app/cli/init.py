"""``clamor init``: prepare instance/ (a secret key, the example campaign, the database)."""

import os
import secrets
import shutil
from pathlib import Path

import click

from .common import create_app_or_fail

EXAMPLE_CAMPAIGNS = Path(__file__).resolve().parent.parent.parent / "instance" / "campaigns"


@click.command("init")
def init_command() -> None:
    """Prepare instance/: a secret key, the example campaign, the database. Safe to repeat."""
    from flask_migrate import upgrade

    from .. import default_instance_path

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
    app = create_app_or_fail(instance_path=instance)
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

"""Clamor: a self-hosted email action for trade unions.

``create_app`` builds the Flask app; plugins import ``hookimpl`` from here.
"""

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from .campaigns import load_campaigns
from .delivery import DeliveryWorker
from .extensions import babel, csrf, db, limiter, migrate
from .hookspecs import hookimpl
from .keys import install_keys, subkey
from .links import trusted_hosts
from .plugins import check_delivery_config, collect_backends, create_plugin_manager, filter_callers
from .security import quiet_request_log

__all__ = ["create_app", "hookimpl", "subkey", "ConfigError"]

#: The checkout: instance/, translations/ and the example campaign live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """The configuration cannot work; start-up stops with this message."""


@dataclass
class Clamor:
    """Per-app state, kept in ``app.extensions["clamor"]``."""

    plugin_manager: object
    #: name -> DeliveryBackend subclass, from every plugin.
    backends: dict
    #: slug -> Campaign, from instance/campaigns/.
    campaigns: dict
    #: hook name -> caller limited to the enabled spam filters.
    filters: dict
    default_slug: str | None
    worker: DeliveryWorker | None = None
    start_worker: bool = field(default=False)

    def default_campaign(self):
        return self.campaigns.get(self.default_slug) if self.default_slug else None

    def ensure_worker(self):
        """Start the in-process delivery thread if this app runs one and it is not running."""
        if self.start_worker:
            self.worker.start_thread()

    def wake_worker(self):
        """Let the in-process delivery thread, if this process runs one, look for work now.

        Never starts one: only a request does (:meth:`ensure_worker`). A CLI
        command (``clamor moderation approve``) that started the thread would
        exit in the middle of its batch, leaving the letters it had claimed
        waiting for their lease to run out.
        """
        if self.start_worker and self.worker.thread is not None:
            self.worker.wake()


def default_instance_path():
    """``CLAMOR_INSTANCE_PATH`` if set, else ``instance/`` in the checkout."""
    return Path(os.environ.get("CLAMOR_INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()


def create_app(test_config=None, instance_path=None):
    """Build the app: defaults, then instance/config.py, then CLAMOR_* env, then ``test_config``.

    Raises :class:`ConfigError`, :class:`app.campaigns.CampaignError` or
    :class:`app.plugins.PluginError` when the deployment cannot work.
    """
    instance_path = Path(instance_path).resolve() if instance_path else default_instance_path()
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True)
    app.config.from_object("app.config")
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("CLAMOR")
    if test_config:
        app.config.update(test_config)
    _finish_config(app)
    if not logging.getLogger().handlers:
        # Worker and filter messages must reach the operator's journal. They
        # carry ids, never a supporter's name or address.
        logging.basicConfig(level=str(app.config["LOG_LEVEL"]).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The development server's request lines would start with the client's
    # (or, behind PROXY_FIX_X_FOR, the forwarded) address.
    quiet_request_log()
    if app.config["PROXY_FIX_X_FOR"]:
        # Only when configured: X-Forwarded-For is whatever the client wrote
        # unless a proxy we trust overwrote it, and the rate limit counts by
        # the address this yields.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _create_private_file(db.engine.url.database)
            event.listen(db.engine, "connect", _sqlite_pragmas)

    app.extensions["clamor"] = _make_state(app)

    from . import admin, cli, errors, public
    from .security import add_security_headers

    app.register_blueprint(public.bp)
    app.register_blueprint(admin.bp)
    errors.init_app(app)
    app.after_request(add_security_headers)
    # The delivery thread starts with the first request, not at import, so
    # that CLI commands and gunicorn's master process never run one.
    app.before_request(app.extensions["clamor"].ensure_worker)
    cli.init_app(app)
    return app


def _select_locale():
    from .i18n import select_locale

    return select_locale()


def _finish_config(app):
    config = app.config
    if not config.get("SECRET_KEY"):
        if not (app.debug or app.testing):
            raise ConfigError(
                "SECRET_KEY is not set. Run `clamor init` (it writes one into "
                f"{app.instance_path}/config.py) or set CLAMOR_SECRET_KEY."
            )
        # A fresh random key per run, never a constant anyone can read here:
        # sessions and links of a debug run die with it, which is right.
        config["SECRET_KEY"] = secrets.token_bytes(32)
    install_keys(app, config["SECRET_KEY"])
    config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(PROJECT_ROOT / "translations"))
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'clamor.sqlite3'}"
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # The busy timeout must be in force before anything else touches the
        # file (switching to WAL included), or a second process starting on a
        # fresh database fails with "database is locked".
        options = dict(config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("connect_args", {}).setdefault("timeout", 30)
        config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if not config.get("OUTBOX_DIR"):
        config["OUTBOX_DIR"] = str(Path(app.instance_path) / "outbox")
    if config["DELIVERY_WORKER"] not in ("thread", "external"):
        raise ConfigError(f"DELIVERY_WORKER must be 'thread' or 'external', not {config['DELIVERY_WORKER']!r}")
    x_for = config["PROXY_FIX_X_FOR"]
    if not isinstance(x_for, int) or isinstance(x_for, bool) or x_for < 0:
        raise ConfigError(f"PROXY_FIX_X_FOR must be a whole number of proxies (0 for none), not {x_for!r}")
    _check_links(app)
    for key in ("DELIVERY", "LANGUAGES", "SPAM_FILTERS"):
        expected = dict if key == "DELIVERY" else (list, tuple)
        if not isinstance(config[key], expected):
            raise ConfigError(f"{key} has the wrong type: {config[key]!r}")


def _check_links(app):
    """Absolute links come from BASE_URL only; the Host header is checked against TRUSTED_HOSTS."""
    config = app.config
    base = config.get("BASE_URL")
    if base:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"BASE_URL must be the site's address, like https://act.union.org, not {base!r}")
    elif (config["SEND_RECEIPT"] or config["CONFIRM_SUPPORTER_EMAIL"]) and not app.debug:
        raise ConfigError(
            "BASE_URL is not set, but supporters are mailed links (SEND_RECEIPT or CONFIRM_SUPPORTER_EMAIL). "
            "Set BASE_URL = \"https://your.site\" in instance/config.py (or CLAMOR_BASE_URL): links in emails "
            "are built from it, never from the request."
        )
    config["TRUSTED_HOSTS"] = trusted_hosts(config)


def _create_private_file(database):
    """Create the SQLite file ``database`` empty and readable by its owner only, unless it exists.

    SQLite would create it with the umask's mode (often world-readable) and
    gives its -wal and -shm files the main file's mode, so creating it first
    with 0600 covers all three. An empty file is an empty database to SQLite.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        # There already, or its folder missing or not writable: SQLite says
        # what is wrong when it opens the file.
        pass


def _sqlite_pragmas(dbapi_connection, connection_record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _make_state(app):
    config = app.config
    pm = create_plugin_manager(app)
    backends = collect_backends(pm)
    check_delivery_config(config, backends)
    campaigns = load_campaigns(Path(app.instance_path) / "campaigns", config["LANGUAGES"])
    for campaign in campaigns.values():
        for target in campaign.targets:
            if target.channel not in config["DELIVERY"]:
                raise ConfigError(
                    f"{campaign.path}: target {target.name!r} is reached by {target.channel}, "
                    f"but DELIVERY has no backend for {target.channel!r}."
                )
    default_slug = config["DEFAULT_CAMPAIGN"]
    if default_slug and default_slug not in campaigns:
        raise ConfigError(f"DEFAULT_CAMPAIGN is {default_slug!r}, but instance/campaigns/ has no such campaign.")
    if not default_slug and campaigns:
        open_ones = [slug for slug, c in campaigns.items() if c.is_open]
        default_slug = (open_ones or list(campaigns))[0]
    state = Clamor(
        plugin_manager=pm,
        backends=backends,
        campaigns=campaigns,
        filters=filter_callers(pm, config["SPAM_FILTERS"]),
        default_slug=default_slug,
        start_worker=config["DELIVERY_WORKER"] == "thread",
    )
    state.worker = DeliveryWorker(app)
    return state

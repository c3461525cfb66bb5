"""Clamor: a self-hosted email action for trade unions.

``create_app`` builds the Flask app; plugins import ``hookimpl`` from here.
"""

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pluggy
from flask import Flask
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from . import sqlite_file
from .campaigns import Campaign, CampaignError, load_campaign, load_campaigns
from .config import load_settings
from .delivery import DeliveryBackend, DeliveryWorker, Letter, PermanentFailure, Receipt, TemporaryFailure
from .delivery.commits import commit_seconds
from .delivery.worker import connection_count
from .digests import positive_setting
from .extensions import csrf, db, limiter, migrate
from .hookspecs import hookimpl
from .i18n import plugin_domain
from .keys import install_keys, subkey
from .links import trusted_hosts
from .mailbytes import addr_spec
from .models import utcnow
from .phone import FaxNumberError, parse_fax_number
from .plugins import (
    PluginManager,
    campaign_channel_problems,
    check_delivery_config,
    collect_backends,
    create_plugin_manager,
    csrf_exempt,
    filter_callers,
    rate_limit,
    register_blueprints,
)
from .provider_reports import find_sent_letter, letter_variable, record_provider_report
from .security import check_csrf, quiet_request_log
from .spam import Submission, Verdict, earlier_signature, token_spent

#: The plugin API: everything a plugin (built in or not) may import, from
#: ``app`` itself and nowhere else (docs/plugins.md, "What a plugin may import").
#: tests/test_plugin_api.py fails when a built-in plugin reaches past it.
__all__ = [
    "create_app", "ConfigError", "hookimpl", "subkey",
    # delivery backends
    "DeliveryBackend", "Letter", "Receipt", "TemporaryFailure", "PermanentFailure", "addr_spec",
    "FaxNumberError", "parse_fax_number", "letter_variable",
    # a provider's webhook (register_blueprints)
    "csrf_exempt", "rate_limit", "find_sent_letter", "record_provider_report",
    # spam filters
    "Submission", "Verdict", "earlier_signature", "token_spent",
    # both
    "plugin_domain", "utcnow",
]

#: The checkout: instance/, translations/ and the example campaign live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """The configuration cannot work; start-up stops with this message."""


@dataclass
class Clamor:
    """Per-app state, kept in ``app.extensions["clamor"]``."""

    plugin_manager: PluginManager
    #: name -> DeliveryBackend subclass, from every plugin.
    backends: dict[str, type[DeliveryBackend]]
    #: slug -> Campaign, from instance/campaigns/.
    campaigns: dict[str, Campaign]
    #: hook name -> caller limited to the enabled spam filters.
    filters: dict[str, pluggy.HookCaller]
    default_slug: str | None
    worker: DeliveryWorker | None = None
    start_worker: bool = field(default=False)
    #: The folder of campaign files, watched for edits (None: not watched).
    campaign_folder: Path | None = None
    #: The app's config, for reloading campaigns (LANGUAGES, DELIVERY, backends' keys).
    config: Mapping[str, Any] = field(default_factory=dict)
    #: file name -> why its last edit was refused, while the last good version serves.
    campaign_errors: dict[str, str] = field(default_factory=dict)
    #: path -> (mtime, size) of the campaign files last read.
    _stamps: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _checked_at: float = 0.0
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def default_campaign(self) -> Campaign | None:
        return self.campaigns.get(self.default_slug) if self.default_slug else None

    def refresh_campaigns(self) -> None:
        """Reload campaign files changed, added or deleted since the last look, at most every CAMPAIGN_RELOAD_SECONDS.

        Called at the start of every request and of every delivery batch, so
        that each process serves an edit within seconds, without a restart.
        A changed file becomes a new :class:`~app.campaigns.Campaign` object
        in a new ``campaigns`` dict (objects are never changed in place:
        caches may be keyed on them). A file that no longer validates is
        logged in one line and kept in ``campaign_errors`` (the admin pages
        show it), and its last good version goes on serving.
        """
        interval = self.config.get("CAMPAIGN_RELOAD_SECONDS", 2)
        if self.campaign_folder is None or interval is None or interval < 0:
            return
        now = time.monotonic()
        if now - self._checked_at < interval or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._checked_at = now
            stamps = campaign_stamps(self.campaign_folder)
            if stamps != self._stamps:
                self._reload(stamps)
        finally:
            self._reload_lock.release()

    def _reload(self, stamps):
        campaigns, errors = dict(self.campaigns), dict(self.campaign_errors)
        for path in set(self._stamps) - set(stamps):
            errors.pop(path.name, None)
            for slug, campaign in list(campaigns.items()):
                if campaign.path == path:
                    del campaigns[slug]
                    log.warning("campaign %s removed: its file %s is gone", slug, path)
        for path, stamp in stamps.items():
            if self._stamps.get(path) == stamp:
                continue
            try:
                campaign = load_campaign(path, self.config["LANGUAGES"])
                problems = campaign_channel_problems(campaign, self.config, self.backends)
                if problems:
                    raise CampaignError(problems)
            except CampaignError as exc:
                errors[path.name] = str(exc)
                serving = "the last good version still serves" if any(
                    c.path == path for c in campaigns.values()) else "not served"
                log.error("campaign file %s not reloaded (%s): %s", path, serving, " | ".join(
                    line.replace("\n", " ") for line in exc.errors))
                continue
            errors.pop(path.name, None)
            log.info("campaign %s %s from %s", campaign.slug,
                     "reloaded" if campaign.slug in campaigns else "loaded", path)
            campaigns[campaign.slug] = campaign
        self._stamps = stamps
        self.campaign_errors = errors
        self.campaigns = dict(sorted(campaigns.items()))
        configured = self.config.get("DEFAULT_CAMPAIGN")
        self.default_slug = configured or _pick_default(self.campaigns)

    def ensure_worker(self) -> None:
        """Start the in-process delivery thread if this app runs one and it is not running."""
        if self.start_worker:
            self.worker.start_thread()

    def wake_worker(self) -> None:
        """Let the in-process delivery thread, if this process runs one, look for work now.

        Never starts one: only a request does (:meth:`ensure_worker`). A CLI
        command (``clamor moderation approve``) that started the thread would
        exit in the middle of its batch, leaving the letters it had claimed
        waiting for their lease to run out.
        """
        if self.start_worker and self.worker.thread is not None:
            self.worker.wake()


def default_instance_path() -> Path:
    """``CLAMOR_INSTANCE_PATH`` if set, else ``instance/`` in the checkout."""
    return Path(os.environ.get("CLAMOR_INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()


def create_app(
    test_config: Mapping[str, Any] | None = None,
    instance_path: str | os.PathLike[str] | None = None,
    plugins: Iterable[object] | None = None,
) -> Flask:
    """Build the app: defaults, then instance/config.py, then CLAMOR_* env, then ``test_config``.

    ``plugins``: plugin objects (modules, or instances with ``@hookimpl``
    methods) registered on this app's plugin manager after the configured ones.

    Raises :class:`ConfigError`, :class:`app.campaigns.CampaignError` or
    :class:`app.plugins.PluginError` when the deployment cannot work.
    """
    instance_path = Path(instance_path).resolve() if instance_path else default_instance_path()
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True)
    load_settings(app.config, test_config)
    _finish_config(app)
    _configure_logging(app)
    if app.config["PROXY_FIX_X_FOR"]:
        # Only when configured: X-Forwarded-For is whatever the client wrote
        # unless a proxy we trust overwrote it, and the rate limit counts by
        # the address this yields.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    _init_extensions(app)
    app.extensions["clamor"] = _make_state(app, plugins)
    _register_web(app)
    return app


def _configure_logging(app):
    """Log lines reach the operator's journal, without the noise of libraries and request lines."""
    if not logging.getLogger().handlers:
        # Worker and filter messages must reach the operator's journal. They
        # carry ids, never a supporter's name or address.
        logging.basicConfig(level=str(app.config["LOG_LEVEL"]).upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # fpdf2 hands every fax's font subsetting to fontTools, which logs ~40
    # INFO lines per letter: noise in the worker's journal.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    # The development server's request lines would start with the client's
    # (or, behind PROXY_FIX_X_FOR, the forwarded) address.
    quiet_request_log()


def _init_extensions(app):
    """Bind the extensions (app/extensions.py, Flask-Babel) to ``app``; a SQLite file is made private first."""
    from . import i18n

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    csrf.init_app(app)
    app.before_request(check_csrf)
    limiter.init_app(app)
    i18n.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sqlite_file.create_private_file(db.engine.url.database)
            event.listen(db.engine, "connect", sqlite_file.set_pragmas)


def _register_web(app):
    """The blueprints, error pages, per-request hooks and commands of ``app``, whose state is built already."""
    from . import admin, cli, errors, public
    from .security import add_security_headers

    state = app.extensions["clamor"]
    app.register_blueprint(public.bp)
    app.register_blueprint(admin.bp)
    register_blueprints(app, state.plugin_manager)
    errors.init_app(app)
    app.after_request(add_security_headers)
    # Campaign files edited since the last look are served from this request on.
    app.before_request(state.refresh_campaigns)
    # The delivery thread starts with the first request, not at import, so
    # that CLI commands and gunicorn's master process never run one.
    app.before_request(state.ensure_worker)
    app.context_processor(lambda: {"campaign_errors": app.extensions["clamor"].campaign_errors})
    cli.init_app(app)


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
    else:
        # After a database restart the pool's connections are dead: test each
        # before use, so the first request after an outage works.
        options = dict(config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("pool_pre_ping", True)
        config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if config["DELIVERY_WORKER"] not in ("thread", "external"):
        raise ConfigError(f"DELIVERY_WORKER must be 'thread' or 'external', not {config['DELIVERY_WORKER']!r}")
    x_for = config["PROXY_FIX_X_FOR"]
    if not isinstance(x_for, int) or isinstance(x_for, bool) or x_for < 0:
        raise ConfigError(f"PROXY_FIX_X_FOR must be a whole number of proxies (0 for none), not {x_for!r}")
    _check_links(app)
    bounce = config.get("BOUNCE_ADDRESS")
    if bounce is not None and not (isinstance(bounce, str) and re.fullmatch(r"[^@\s+]+@[^@\s]+\.[^@\s]+", bounce)):
        # Checked here, not at the first letter: a letter that cannot be built would be retried until it failed.
        raise ConfigError(f"BOUNCE_ADDRESS must be an address like bounces@union.org (no '+'), or None, not {bounce!r}")
    for key in ("DELIVERY", "LANGUAGES", "SPAM_FILTERS"):
        expected = dict if key == "DELIVERY" else (list, tuple)
        if not isinstance(config[key], expected):
            raise ConfigError(f"{key} has the wrong type: {config[key]!r}")
    _check_worker_numbers(config)


def _check_worker_numbers(config):
    """The delivery worker's numbers, checked at start-up: found at its first batch, a bad one stopped every batch."""
    checks = (connection_count, commit_seconds, lambda c: positive_setting(c, "DIGEST_AFTER"),
              lambda c: positive_setting(c, "DIGEST_MAX_BYTES"))
    for check in checks:
        try:
            check(config)
        except ValueError as error:
            raise ConfigError(str(error)) from None


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


def campaign_stamps(folder: str | os.PathLike[str]) -> dict[Path, tuple[int, int]]:
    """``{path: (mtime, size)}`` of every campaign file in ``folder``."""
    stamps = {}
    for path in sorted(Path(folder).glob("*.toml")) if Path(folder).is_dir() else ():
        try:
            info = path.stat()
        except OSError:
            continue  # deleted between the listing and the look
        stamps[path] = (info.st_mtime_ns, info.st_size)
    return stamps


def _pick_default(campaigns):
    open_ones = [slug for slug, c in campaigns.items() if c.is_open]
    return (open_ones or list(campaigns) or [None])[0]


def _make_state(app, plugins=None):
    config = app.config
    pm = create_plugin_manager(app, plugins)
    backends = collect_backends(pm)
    folder = Path(app.instance_path) / "campaigns"
    stamps = campaign_stamps(folder)
    campaigns = load_campaigns(folder, config["LANGUAGES"])
    # The email backend always (receipts, confirmations); the others below,
    # only for the campaigns whose targets need them.
    check_delivery_config(config, backends, {"email"})
    for campaign in campaigns.values():
        problems = campaign_channel_problems(campaign, config, backends)
        if problems:
            raise ConfigError("\n".join(problems))
    default_slug = config["DEFAULT_CAMPAIGN"]
    if default_slug and default_slug not in campaigns:
        raise ConfigError(f"DEFAULT_CAMPAIGN is {default_slug!r}, but instance/campaigns/ has no such campaign.")
    if not default_slug and campaigns:
        default_slug = _pick_default(campaigns)
    state = Clamor(
        plugin_manager=pm,
        backends=backends,
        campaigns=campaigns,
        filters=filter_callers(pm, config["SPAM_FILTERS"]),
        default_slug=default_slug,
        start_worker=config["DELIVERY_WORKER"] == "thread",
        campaign_folder=folder,
        config=config,
        _stamps=stamps,
        _checked_at=time.monotonic(),
    )
    state.worker = DeliveryWorker(app)
    return state

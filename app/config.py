"""Default settings.

Order of precedence, lowest first: the values in this module, then
``instance/config.py``, then ``CLAMOR_*`` environment variables (parsed as JSON
where they can be, so ``CLAMOR_SMTP_PORT=2525`` is an int and
``CLAMOR_DELIVERY='{"email": "smtp"}'`` a dict), then the ``test_config`` passed
to :func:`app.create_app`. Every key is described in the README.

Core settings only. Each plugin declares the settings it reads, with their
defaults, in its ``register_settings`` hook (``SMTP_*`` in plugins/smtp.py,
``FILL_TIME_*`` in plugins/fill_time.py …); the core fills those in after the
plugins load (:func:`app.plugins.apply_settings`).
"""

from collections.abc import Mapping
from typing import Any

from flask import Config

#: Signs sessions, CSRF tokens and the number question. ``clamor init`` writes a
#: random one into instance/config.py; outside debug and testing the app refuses
#: to start without one.
SECRET_KEY = None

#: None means SQLite in the instance folder (``instance/clamor.sqlite3``).
SQLALCHEMY_DATABASE_URI = None

#: channel -> delivery backend name. Backends come from plugins.
DELIVERY = {"email": "outbox_files", "fax": "fax_email"}

#: The address every letter is sent from. The supporter is only in Reply-To,
#: because a government server checking DMARC would reject mail "from" gmail.com
#: sent by us.
SENDER_ADDRESS = "campaigns@localhost"

#: Names of the enabled spam filter plugins; a filter plugin not named here
#: does not run. Built in, also: "disposable_email" (off: see docs/spam.md).
#: Setting it replaces the whole list (docs/plugins.md).
SPAM_FILTERS = ["number_question", "honeypot", "fill_time", "duplicate_signer", "links"]

#: Flask-Limiter syntax; counted per client address and per supporter address.
SUBMIT_RATE_LIMIT = "5 per minute; 30 per day"
#: memory:// counts per process; use redis://… when several processes or
#: hosts serve the site.
RATELIMIT_STORAGE_URI = "memory://"
RATELIMIT_HEADERS_ENABLED = False
#: When the storage (Redis) cannot be reached, count in each process's memory
#: instead of failing every signature; back to the storage once it answers.
RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
#: How many reverse proxies in front of Clamor set X-Forwarded-For. 0 (the
#: default) ignores the header, which anyone can forge; behind one nginx, 1.
PROXY_FIX_X_FOR = 0

#: thread: a delivery thread inside the web process (one small server).
#: external: run ``clamor deliver`` as its own process (production).
DELIVERY_WORKER = "thread"
#: Seconds the worker sleeps when nothing is due.
DELIVERY_POLL_SECONDS = 5
#: How many deliveries one worker claims at a time, and for how long (seconds)
#: before another worker may take them over. Each batch costs a claim, a
#: read of its rows, its counts and a new connection to the server: at 50,
#: about an eighth of the worker's time into a fast local relay (docs/delivery.md).
DELIVERY_BATCH_SIZE = 200
DELIVERY_LEASE_SECONDS = 300
#: How many connections (SMTP sessions, HTTP sessions) one worker sends a
#: batch over at once, each in a thread of its own. Outcomes are still
#: recorded one by one by the worker; TARGET_HOURLY_CAP still holds.
DELIVERY_CONNECTIONS = 1
#: 0: each letter's outcome is committed as soon as it is known. Above 0:
#: outcomes are committed together, at most this many seconds after the
#: oldest of them (and at the end of each batch): faster on SQLite, but a
#: worker killed meanwhile sends those letters again once their lease ends
#: (docs/delivery.md). Under a fifth of DELIVERY_LEASE_SECONDS.
DELIVERY_COMMIT_SECONDS = 0
#: A letter that failed temporarily this many times is marked failed.
DELIVERY_MAX_ATTEMPTS = 10
#: A letter still failing temporarily this many seconds after it was queued is
#: marked failed (5 days, as RFC 5321 suggests for mail).
DELIVERY_MAX_AGE = 5 * 24 * 3600
#: Letters one target address may receive per hour; the rest wait their turn.
#: 0 or None: no cap.
TARGET_HOURLY_CAP = 60
#: Hard bounces in a row (no delivery in between) that suspend a target address (app/states/targets.py).
TARGET_BOUNCE_LIMIT = 3
#: In a campaign with ``overflow = "digest"``: a letter that has waited this
#: many seconds for its target's TARGET_HOURLY_CAP goes in that target's next
#: digest, and a target gets at most one digest per this many seconds (or
#: per day, when this is longer). See docs/delivery.md, "Floods and digests".
DIGEST_AFTER = 86400
#: A digest larger than this (bytes of text, about) is split into several.
DIGEST_MAX_BYTES = 2_000_000

#: Organisers are emailed (once per stall) when a letter has waited this many
#: minutes to go out; 0 or None: never. See docs/delivery.md, "Queue alarm".
QUEUE_ALERT_MINUTES = 60
#: When set, every letter goes to this address instead of its target, its
#: subject marked "[TEST] ", so an organiser can rehearse.
TEST_MODE_RECIPIENT = None
#: Backoff after a temporary failure: full jitter in [0, min(cap, base * 2**n)].
DELIVERY_RETRY_BASE = 60
DELIVERY_RETRY_CAP = 6 * 3600

#: Where bounces of letters to targets go, e.g. "bounces@union.org": each
#: letter's envelope sender becomes bounces+<token>@union.org (VERP,
#: app/verp.py), so its bounce finds it. None: the envelope sender is
#: SENDER_ADDRESS, as the From header is. See docs/delivery.md, "Bounces".
BOUNCE_ADDRESS = None
#: An IMAP mailbox that ``clamor bounces fetch`` (and ``clamor deliver``, every
#: BOUNCE_POLL_SECONDS) reads bounces from: "imaps://user:pass@host/INBOX"
#: (user and password percent-encoded; the certificate is verified).
BOUNCE_IMAP_URL = None
BOUNCE_POLL_SECONDS = 300
#: IMAP folders (made when missing) for the messages a fetch handled, and for
#: those that match no letter, kept for an organiser.
BOUNCE_IMAP_DONE_FOLDER = "Clamor-handled"
BOUNCE_IMAP_UNMATCHED_FOLDER = "Clamor-unmatched"

#: The DNS servers ``clamor doctor`` asks for the sender domain's SPF and DMARC
#: records: ["192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53"]; None: the
#: system's (/etc/resolv.conf). Nothing else in Clamor resolves names this way.
DOCTOR_NAMESERVERS = None

#: Longest letter a supporter may send, in characters.
MESSAGE_MAX_LENGTH = 5000
#: Largest request body accepted (bytes).
MAX_CONTENT_LENGTH = 64 * 1024

#: Interface languages Clamor offers; a campaign picks among them.
LANGUAGES = ["en", "fr", "ru", "kk"]
BABEL_DEFAULT_LOCALE = "en"

#: Every process looks at most this often (seconds) whether a campaign file in
#: instance/campaigns/ changed, was added or deleted, and serves the new
#: version without a restart. A negative number: never (read at start-up only).
CAMPAIGN_RELOAD_SECONDS = 2

#: Campaign shown at ``/<lang>/``; None: the only open campaign, else the
#: first by slug.
DEFAULT_CAMPAIGN = None

#: Installed plugin packages (entry-point names) allowed to load; None: all.
PLUGINS = None

#: Python logging level for Clamor's messages when nothing else configured logging.
LOG_LEVEL = "INFO"

#: Ask each supporter to confirm by email before their letters go out.
CONFIRM_SUPPORTER_EMAIL = False
#: Without confirmation: mail each supporter a receipt with the link to their
#: letter's own page (and a repeat signer "you signed this on D"). The link
#: is never shown on the thank-you page, which is the same for everyone.
SEND_RECEIPT = True
#: Unconfirmed signatures older than this are deleted by ``clamor purge``.
CONFIRM_EXPIRY_DAYS = 7
#: Days after a campaign's ``closed_at`` until ``clamor purge`` deletes the
#: data of supporters who did not opt in, and every letter's text.
RETENTION_DAYS = 180

#: Failed admin logins per client address (Flask-Limiter syntax). Per account
#: there is no hard limit but a growing wait (docs/admin.md).
ADMIN_LOGIN_RATE_LIMIT = "5 per minute"
#: An admin session nobody used for this many minutes ends (to within a minute).
ADMIN_SESSION_IDLE_MINUTES = 60
#: An admin session ends this many hours after login, however busy.
ADMIN_SESSION_MAX_HOURS = 12
#: Supporters, or held submissions, per page in the admin lists.
ADMIN_PAGE_SIZE = 50
#: The site's public address, e.g. "https://act.example.org". Every absolute
#: link in an email or an export is built from it, never from the request's
#: Host header. Required (outside debug) when anything mails a link:
#: SEND_RECEIPT or CONFIRM_SUPPORTER_EMAIL.
BASE_URL = None
#: Host names the site answers to (Flask's setting); a request for any other
#: gets a 400 and stores nothing. None: BASE_URL's host, 127.0.0.1, localhost.
TRUSTED_HOSTS = None

#: Origins (``"https://union.org"``) whose pages may show the campaign in an
#: <iframe>, at /<lang>/<slug>/embed (see docs/deploying.md). Empty: no site
#: may frame any page.
EMBED_ORIGINS = []

#: Behind HTTPS set this to True (see docs/deploying.md).
SESSION_COOKIE_SECURE = False
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

#: The CSRF token lives as long as the session: a supporter may take an hour
#: to edit their letter.
WTF_CSRF_TIME_LIMIT = None
#: Flask-WTF's own before-request check stays off: the app registers the same
#: check (every POST but exempt views) asking the method first (check_csrf in app/security.py).
WTF_CSRF_CHECK_DEFAULT = False

SQLALCHEMY_ENGINE_OPTIONS = {}


def load_settings(config: Config, test_config: Mapping[str, Any] | None = None) -> Config:
    """Fill ``config`` (a :class:`flask.Config` rooted at the instance folder) in Clamor's order, and return it.

    The defaults in this module, then the instance folder's ``config.py`` (if
    any), then ``CLAMOR_*`` environment variables, then ``test_config``: each
    overrides the one before. ``create_app`` and the commands that run without
    an app (``clamor campaign check``, ``clamor translations``) both read the
    settings through here, so they cannot disagree on a deployment's settings.
    """
    config.from_object(__name__)
    config.from_pyfile("config.py", silent=True)
    config.from_prefixed_env("CLAMOR")
    if test_config:
        config.update(test_config)
    return config

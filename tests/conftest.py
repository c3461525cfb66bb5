"""Fixtures: the app built by the factory, a real SMTP server on loopback, helpers to sign."""

import asyncio
import collections
import os
import re
import shutil
import socket
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from flask_migrate import upgrade
from hypothesis import settings
from pgcluster import Cluster, postgres_bin
from werkzeug.serving import make_server

from app import create_app
from app.extensions import db
from app.models import Delivery, Signature

ROOT = Path(__file__).resolve().parent.parent
#: The tests' own copy of the example campaign: a translator adding a language
#: to instance/campaigns/ changes what `clamor init` installs, not the tests.
EXAMPLE_CAMPAIGNS = ROOT / "tests" / "fixtures" / "campaigns"
#: The example campaign as shipped, for the tests that check that file itself.
SHIPPED_CAMPAIGNS = ROOT / "instance" / "campaigns"
SLUG = "free-erzhan-elshibayev"

# What the property tests check is what comes out, never how fast: under a
# loaded CI machine Hypothesis's default 200 ms deadline per example would
# fail a test whose answer was right.
settings.register_profile("clamor", deadline=None)
settings.load_profile("clamor")


@pytest.fixture
def instance_path(tmp_path):
    """An instance folder holding the example campaign (the tests' copy)."""
    path = tmp_path / "instance"
    (path / "campaigns").mkdir(parents=True)
    for example in EXAMPLE_CAMPAIGNS.glob("*.toml"):
        shutil.copy(example, path / "campaigns")
    return path


@pytest.fixture
def app_config(tmp_path):
    """Settings for the test app; tests change keys before ``app`` is built."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "BASE_URL": "http://localhost",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "DELIVERY_WORKER": "external",
        "RATELIMIT_ENABLED": False,
        "SENDER_ADDRESS": "campaigns@clamor.test",
        # Tests post the form at once; test_spam.py checks fill_time itself.
        "FILL_TIME_MIN": 0,
        # Most tests count the letters to targets; the receipt to the
        # supporter's own mailbox (on by default) is tested where it is the
        # subject (test_probing.py, test_links.py).
        "SEND_RECEIPT": False,
    }


@pytest.fixture
def make_app(app_config, instance_path):
    """Build an app from ``app_config`` (plus ``overrides``) with its database migrated."""
    made = []

    def make(plugins=None, **overrides):
        app = create_app({**app_config, **overrides}, instance_path=instance_path, plugins=plugins)
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def unused_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK queued"

    @property
    def messages(self):
        from email import message_from_bytes, policy

        return [message_from_bytes(e.original_content, policy=policy.default) for e in self.envelopes]


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1 (aiosmtpd); ``.inbox`` holds what arrived."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=unused_port())
    controller.start()
    controller.inbox = inbox
    yield controller
    controller.stop()


class SlowInbox(Inbox):
    """Takes ``delay`` seconds per message, so a batch is still running when we look."""

    def __init__(self, delay=0.0):
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def message_ids(self):
        return collections.Counter(m["Message-ID"] for m in self.messages)


@pytest.fixture
def sink():
    """Start SMTP sinks (:class:`SlowInbox`) on ``port`` or a fresh one, ``delay`` s a message."""
    controllers = []

    def start(port=None, delay=0.0):
        inbox = SlowInbox(delay)
        controller = Controller(inbox, hostname="127.0.0.1", port=port or unused_port())
        controller.start()
        controller.inbox = inbox
        controllers.append(controller)
        return controller

    yield start
    for controller in controllers:
        controller.stop()


class ScriptedInbox(Inbox):
    """Answers MAIL, RCPT and DATA from scripts of replies (then accepts); counts connections.

    ``pipelining``: offer PIPELINING (RFC 2920) in the EHLO reply.

    ``senders`` records every MAIL FROM, refused letters' too.
    """

    def __init__(self, rcpt_replies=(), data_replies=(), mail_replies=(), pipelining=False):
        super().__init__()
        self.pipelining = pipelining
        self.mail_replies = list(mail_replies)
        self.rcpt_replies = list(rcpt_replies)
        self.data_replies = list(data_replies)
        self.connections = 0
        self.refused = []
        self.senders = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.senders.append(address)
        reply = self.mail_replies.pop(0) if self.mail_replies else None
        if reply:
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads commands one line at a time, so it copes with a client that pipelines.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.pop(0) if self.rcpt_replies else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        action = self.data_replies.pop(0) if self.data_replies else None
        if action == "drop":
            server.transport.close()
            return "451 never seen"
        if isinstance(action, (int, float)):
            await asyncio.sleep(action)
        elif action:
            self.refused.append(envelope.original_content)
            return action
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def scripted_smtp():
    """Start an aiosmtpd server with a :class:`ScriptedInbox`; returns (controller, inbox)."""
    controllers = []

    def start(**script):
        inbox = ScriptedInbox(**script)
        controller = Controller(inbox, hostname="127.0.0.1", port=unused_port())
        controller.start()
        controllers.append(controller)
        return controller, inbox

    yield start
    for controller in controllers:
        controller.stop()


def smtp_backed_app(make_app, controller, **overrides):
    """An app whose letters go by the smtp backend to ``controller`` (an aiosmtpd server on loopback)."""
    return make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, **overrides)


def forget_during_a_slow_batch(make_app, scripted_smtp, forgotten, **overrides):
    """Anna and Bob sign; while the first letter (Anna's) takes two seconds at DATA, ``clamor forget forgotten``.

    Returns ``(app, inbox, claimed)``: ``claimed`` holds what the batch's
    ``deliver_due`` returned, once it finished.
    """
    import time

    from app.delivery import deliver_due

    controller, inbox = scripted_smtp(data_replies=[2])
    app = smtp_backed_app(make_app, controller, **overrides)
    sign(app.test_client(), email="anna@example.org", name="Anna")
    sign(app.test_client(), email="bob@example.org", name="Bob")
    claimed = []

    def worker():
        with app.app_context():
            claimed.append(deliver_due())

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.5)
    result = app.test_cli_runner().invoke(args=["forget", forgotten])
    assert result.exit_code == 0, result.output
    thread.join(timeout=30)
    return app, inbox, claimed


class _HiddenInputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")


def form_fields(html):
    """The hidden inputs of the action form, and the number question answered as a person would."""
    parser = _HiddenInputs()
    parser.feed(html)
    fields = parser.fields
    number = re.search(r'<label for="number_question">[^<]*?(\d{4})', html)
    if number:
        fields["number_question"] = number.group(1)
    return fields


def sign(client, lang="fr", slug=SLUG, headers=None, **values):
    """Open the campaign page, fill in the form like a person, and post it (both with ``headers``)."""
    url = f"/{lang}/{slug}/"
    page = client.get(url, headers=headers)
    assert page.status_code == 200, page.status_code
    data = form_fields(page.get_data(as_text=True))
    data.update(
        {
            "name": "Anna Example",
            "email": "anna@example.org",
            "organisation": "Example Workers' Union",
            "country": "FR",
            "message": "Free Erzhan Elshibayev now.",
            "opt_in": "no",
        }
    )
    data.update(values)
    return client.post(url, data={k: v for k, v in data.items() if v is not None}, headers=headers)


def status_path(app, email="anna@example.org"):
    """The path of the letter page of ``email``'s signature, as its receipt email links it."""
    from app.links import status_url

    with app.app_context():
        signature = db.session.scalars(db.select(Signature).where(Signature.email == email)).one()
        return status_url(signature).removeprefix(app.config["BASE_URL"])


def statements_during(app, action, parameters=False):
    """The SQL statements ``action()`` sent to ``app``'s database, in order; (statement, parameters) pairs if asked."""
    from sqlalchemy import event

    seen = []
    with app.app_context():
        engine = db.engine

    def listener(conn, cursor, statement, sent, *args):
        seen.append((statement, sent) if parameters else statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return seen


def sqlite_plan(statement, parameters):
    """SQLite's plan for ``statement`` (EXPLAIN QUERY PLAN), its steps joined by " / ". Needs an app context."""
    cursor = db.session.connection().connection.cursor()
    return " / ".join(row[3] for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters))


def counts():
    """(signatures, deliveries) stored right now; needs an app context."""
    return db.session.query(Signature).count(), db.session.query(Delivery).count()


class LiveServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


@pytest.fixture
def live_server(app):
    with LiveServer(app) as server:
        yield server


def postgres_or_skip():
    """The PostgreSQL programs' folder; fails in CI and skips elsewhere when PostgreSQL is not installed."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; `make test` installs it with apt-get")
        pytest.skip("PostgreSQL binaries not installed (make test installs them)")
    return bindir


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster on 127.0.0.1.

    Yields a function that creates a fresh database and returns its URI.
    """
    cluster = Cluster(postgres_or_skip())
    cluster.start()
    counter = iter(range(1, 10_000))
    yield lambda: cluster.create_database(f"clamor_test_{next(counter)}")
    cluster.destroy()


#: A campaign with one fax target, in Kazakh (the fax backend tests).
FAX_CAMPAIGN = """\
slug = "fax-test"
status = "open"
default_language = "kk"
languages = ["kk"]
sender = "LabourStart"
[[targets]]
name = "Ақорда баспасөз қызметі"
fax = "+7 7172 74-56-31"
[text.kk]
title = "Ержан Елшібаевты босатыңыз"
short_name = "Ержанды босатыңыз"
body = ["p"]
subject = "Ержан Елшібаевты босатыңыз"
letter = "Құрметті Президент!"
"""


#: A real plugin (a single file in instance/plugins/) that writes each
#: letter_bounced call to instance/bounces.jsonl, read back by :func:`logged_bounces`.
BOUNCE_LOG_PLUGIN = (
    "import json\nfrom pathlib import Path\n\nfrom flask import current_app\n\nfrom app import hookimpl\n\n\n"
    "@hookimpl\ndef letter_bounced(delivery, report):\n"
    "    with open(Path(current_app.instance_path) / 'bounces.jsonl', 'a') as out:\n"
    "        out.write(json.dumps([delivery.id, delivery.status, report]) + '\\n')\n"
)


def install_bounce_log(instance_path):
    """Put :data:`BOUNCE_LOG_PLUGIN` in ``instance_path``'s plugins (before the app is made)."""
    (instance_path / "plugins").mkdir(exist_ok=True)
    (instance_path / "plugins" / "bounce_log.py").write_text(BOUNCE_LOG_PLUGIN)


def logged_bounces(instance_path):
    """The ``[delivery id, status, report]`` of every letter_bounced call so far."""
    import json

    path = instance_path / "bounces.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


ORGANISER = "organiser@union.test"
PASSWORD = "correct horse battery staple"

#: A real spam-filter plugin (a single file in instance/plugins/) that holds
#: any letter saying "hold me".
HOLD_PLUGIN = '''
from app import Verdict, hookimpl


@hookimpl
def check_submission(submission, campaign):
    if "hold me" in submission.message:
        return Verdict.hold("the letter says hold me")
'''


@pytest.fixture
def hold_filter(instance_path):
    """Install the ``hold_words`` filter; returns the SPAM_FILTERS that enable it."""
    folder = instance_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / "hold_words.py").write_text(HOLD_PLUGIN)
    return ["number_question", "hold_words"]


def add_organiser(app, email=ORGANISER, password=PASSWORD):
    """`clamor admin add EMAIL`, typing the password twice as an organiser would."""
    result = app.test_cli_runner().invoke(args=["admin", "add", email], input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output
    return email


def login(client, email=ORGANISER, password=PASSWORD, **kwargs):
    """Fill in the admin login form and post it; returns the response.

    Forgets the language a public page remembered (the admin follows it), so
    that the admin pages read in English as the tests expect.
    """
    client.delete_cookie("clamor_lang")
    page = client.get("/admin/login", **kwargs)
    token = form_fields(page.get_data(as_text=True))["csrf_token"]
    return client.post("/admin/login", data={"csrf_token": token, "email": email, "password": password}, **kwargs)


def csrf_token(client, url="/admin/"):
    """The CSRF token of this client's session, read from a page that has a form."""
    return form_fields(client.get(url).get_data(as_text=True))["csrf_token"]


def add_campaign(instance_path, slug, **changes):
    """Write a copy of the example campaign as ``slug``, with top-level keys changed."""
    import tomllib

    source = (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text()
    lines = [line for line in source.splitlines() if not any(line.startswith(f"{k} =") for k in ("slug", *changes))]
    head = [f"slug = {slug!r}".replace("'", '"')]
    for key, value in changes.items():
        head.append(f"{key} = {value}")
    text = "\n".join(head + lines) + "\n"
    tomllib.loads(text)
    (instance_path / "campaigns" / f"{slug}.toml").write_text(text)


def person_traces(needles):
    """Every (table, column, value) in the database containing any of ``needles`` (any case)."""
    found = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).mappings():
            for column, value in row.items():
                if value is not None and any(n.lower() in str(value).lower() for n in needles):
                    found.append((table.name, column, value))
    return found


CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused on a closed network; these
# flags keep it quiet, and --no-sandbox is needed when running as root.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (never `playwright install`)."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; `make test` installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()

"""The worker and the built-in backends, against a real SMTP server on loopback."""

import email.utils
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import SLUG, sign, unused_port

from app import create_app, hookimpl
from app.delivery import DeliveryBackend, PermanentFailure, Receipt, deliver_due, queue_deliveries
from app.extensions import db
from app.models import Delivery, Signature
from app.plugins import PluginError


@pytest.fixture
def smtp_config(app_config, smtp_server):
    app_config.update(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    return app_config


@pytest.mark.slow
def test_worker_delivers_every_letter_to_a_real_smtp_server(smtp_config, smtp_server, app, client):
    letter = "Monsieur le Président,\n\nLibérez Erzhan Elshibayev.\n\nAvec mes salutations."
    sign(client, name="Anna Example", email="anna@example.org", organisation="Unite", country="GB", message=letter)
    with app.app_context():
        assert deliver_due() == 5
        deliveries = Delivery.query.all()
        assert {d.status for d in deliveries} == {"sent"}
        message_ids = {d.target_key: d.message_id for d in deliveries}

    messages = smtp_server.inbox.messages
    assert len(messages) == 5
    assert sorted(e.rcpt_tos[0] for e in smtp_server.inbox.envelopes) == sorted(message_ids)
    for envelope, msg in zip(smtp_server.inbox.envelopes, messages, strict=True):
        target = envelope.rcpt_tos[0]
        assert envelope.mail_from == "campaigns@clamor.test"
        assert msg["From"].addresses[0].display_name == "Anna Example via Libérez Erzhan Elshibayev"
        assert msg["From"].addresses[0].addr_spec == "campaigns@clamor.test"
        assert msg["Reply-To"].addresses[0].addr_spec == "anna@example.org"
        assert msg["To"].addresses[0].addr_spec == target
        assert msg["Subject"] == "Libérez Erzhan Elshibayev"
        assert msg["Message-ID"] == message_ids[target]
        sent = email.utils.parsedate_to_datetime(msg["Date"])
        assert sent.tzinfo is not None and abs(datetime.now(UTC) - sent) < timedelta(minutes=5)
        body = msg.get_content().replace("\r\n", "\n")
        assert body.startswith(letter)
        # The signature block, with the country named in the letter's language.
        assert body.rstrip().endswith("Anna Example\nUnite\nRoyaume-Uni\nanna@example.org")

    with app.app_context():
        assert deliver_due() == 0  # nothing is sent twice


def test_a_batch_logs_one_line_for_the_letters_each_backend_sent(smtp_config, smtp_server, app, client, caplog):
    # A line a letter, at hundreds of letters a second, is more than journald
    # takes from a service by default: the batch says what it sent in one.
    caplog.set_level(logging.INFO, logger="app.delivery")
    sign(client, email="anna@example.org")
    sign(app.test_client(), email="bob@example.org", name="Bob")
    with app.app_context():
        assert deliver_due() == 10
        ids = sorted(d.id for d in Delivery.query if d.status == "sent")
    assert len(ids) == 10 and len(smtp_server.inbox.messages) == 10
    lines = [r.getMessage() for r in caplog.records if r.name == "app.delivery" and r.levelno >= logging.INFO]
    assert lines == [f"10 letters sent by smtp (deliveries {ids[0]} to {ids[-1]})"]


def test_crlf_in_name_adds_no_header(smtp_config, smtp_server, app):
    """Even a name that got past the form cannot add a header."""
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[SLUG]
        signature = Signature(
            campaign=SLUG, name="Eve\r\nBcc: victim@example.org", email="eve@example.org",
            message="Hello", language="fr",
        )
        queue_deliveries(signature, campaign, app.config)
        db.session.add(signature)
        db.session.commit()
        deliver_due()
    assert len(smtp_server.inbox.envelopes) == 5
    for envelope, msg in zip(smtp_server.inbox.envelopes, smtp_server.inbox.messages, strict=True):
        assert msg["Bcc"] is None
        assert "victim@example.org" not in envelope.rcpt_tos
        assert not any(line.lower().startswith(b"bcc:") for line in envelope.original_content.splitlines())


@pytest.mark.slow
def test_outbox_files_is_the_default_and_writes_eml_files(app, client, instance_path):
    sign(client)
    with app.app_context():
        assert deliver_due() == 5
    files = sorted((instance_path / "outbox").glob("*.eml"))
    assert len(files) == 5
    raw = files[0].read_text()
    assert "Reply-To: anna@example.org" in raw or "Reply-To: Anna Example <anna@example.org>" in raw
    assert "anna" not in files[0].name


@pytest.mark.slow
def test_temporary_failure_keeps_the_letter_pending(make_app):
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=unused_port(), SMTP_TIMEOUT=2)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        deliveries = Delivery.query.all()
        assert {d.status for d in deliveries} == {"pending"}
        assert all("Connection refused" in d.last_error or "111" in d.last_error for d in deliveries)
        assert all(d.attempts == 1 for d in deliveries)
        assert deliver_due() == 0  # not due again before its backoff


class RecordingBackend(DeliveryBackend):
    """A throwaway third-party backend: refuses one target, keeps the rest."""

    name = "recording"
    verbose_name = "Recording (tests)"
    letters = []

    def send(self, letter):
        if letter.to_address == "press@mfa.kz":
            raise PermanentFailure("550 mailbox unavailable")
        RecordingBackend.letters.append(letter)
        return Receipt(provider_id=f"rec-{letter.delivery_id}")


class RecordingPlugin:
    """Passed to ``create_app(plugins=[…])``: its hooks note what the worker reports."""

    def __init__(self):
        self.sent, self.failed = [], []

    @hookimpl
    def register_delivery_backends(self):
        return [RecordingBackend]

    @hookimpl
    def letter_sent(self, delivery, receipt):
        self.sent.append(receipt.provider_id)

    @hookimpl
    def letter_failed(self, delivery, error):
        self.failed.append((delivery.target_key, str(error)))


@pytest.fixture
def recording_plugin():
    RecordingBackend.letters.clear()
    return RecordingPlugin()


def test_a_plugin_backend_receives_the_letters(recording_plugin, make_app):
    app = make_app(plugins=[recording_plugin], DELIVERY={"email": "recording"})
    assert app.extensions["clamor"].plugin_manager.get_plugin("RecordingPlugin") is recording_plugin
    sign(app.test_client(), name="Bolat", message="Босатыңыз!")
    with app.app_context():
        assert deliver_due() == 5
        statuses = {d.target_key: (d.status, d.backend, d.provider_id, d.last_error) for d in Delivery.query}
    assert len(RecordingBackend.letters) == 4
    assert all(letter.body.startswith("Босатыңыз!") for letter in RecordingBackend.letters)
    assert statuses["press@mfa.kz"] == ("failed", "recording", "", "550 mailbox unavailable")
    assert statuses["press@akorda.kz"][0:2] == ("sent", "recording")
    assert len(recording_plugin.sent) == 4
    assert recording_plugin.failed == [("press@mfa.kz", "550 mailbox unavailable")]


def test_a_plugin_passed_to_create_app_is_named_like_any_other(recording_plugin, make_app, instance_path):
    """A plugin object passed in under a name already taken stops start-up, as a plugin file would."""
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "RecordingPlugin.py").write_text("# a file of the same name\n")
    with pytest.raises(PluginError, match="passed to create_app is called 'RecordingPlugin'"):
        make_app(plugins=[recording_plugin])


def test_unknown_backend_stops_start_up_and_lists_known_names(app_config, instance_path):
    app_config["DELIVERY"] = {"email": "carrier_pigeon"}
    with pytest.raises(PluginError) as excinfo:
        create_app(app_config, instance_path=instance_path)
    message = str(excinfo.value)
    assert "carrier_pigeon" in message
    assert "outbox_files" in message and "smtp" in message


def test_duplicate_backend_name_stops_start_up(app_config, instance_path):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "dupe.py").write_text(
        "from app import hookimpl\nfrom app.delivery import DeliveryBackend\n"
        "class Dupe(DeliveryBackend):\n    name = 'smtp'\n"
        "@hookimpl\ndef register_delivery_backends():\n    return [Dupe]\n"
    )
    with pytest.raises(PluginError, match="two delivery backends are called 'smtp'"):
        create_app(app_config, instance_path=instance_path)


def test_misspelt_hook_stops_start_up(app_config, instance_path):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "typo.py").write_text(
        "from app import hookimpl\n@hookimpl\ndef register_delivery_backend():\n    return []\n"
    )
    with pytest.raises(PluginError, match="register_delivery_backend"):
        create_app(app_config, instance_path=instance_path)


@pytest.mark.slow
def test_thread_worker_delivers_without_a_separate_process(make_app, instance_path):
    """The embedded default: a delivery thread in the web process, woken by a signature."""
    app = make_app(DELIVERY_WORKER="thread", DELIVERY_POLL_SECONDS=30)
    client = app.test_client()
    assert sign(client).status_code == 303
    worker = app.extensions["clamor"].worker
    deadline = time.monotonic() + 20
    while len(list((instance_path / "outbox").glob("*.eml"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    worker.thread.join(10)
    assert len(list((instance_path / "outbox").glob("*.eml"))) == 5
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"sent"}


@pytest.mark.slow
@pytest.mark.parametrize("forgotten, arrived", [("bob", {"anna": 5}), ("anna", {"anna": 1, "bob": 5})],
                         ids=["later-in-the-batch", "while-their-letter-is-at-data"])
def test_a_supporter_forgotten_while_the_batch_is_sending_gets_no_more_letters(make_app, scripted_smtp,
                                                                                forgotten, arrived):
    """`clamor forget` during a batch: that person's letters still in the batch do not go out.

    The letter at DATA when they are forgotten has left already; its outcome has no row to go to.
    """
    from conftest import forget_during_a_slow_batch

    app, inbox, claimed = forget_during_a_slow_batch(make_app, scripted_smtp, f"{forgotten}@example.org")
    assert claimed == [10]  # both supporters' letters were in the one batch, and it finished
    senders = [message["Reply-To"].addresses[0].addr_spec.split("@")[0] for message in inbox.messages]
    assert {name: senders.count(name) for name in set(senders)} == arrived
    with app.app_context():
        deliveries = Delivery.query.all()
        assert {d.status for d in deliveries} == {"sent"}
        remaining = {"anna@example.org", "bob@example.org"} - {f"{forgotten}@example.org"}
        assert {d.signature.email for d in deliveries} == remaining

"""Plugins as their authors write them: the installed example package, and every docs example.

``examples/clamor-maildir`` is installed into the test environment (``make
install-test``) and found through its ``clamor.plugins`` entry point, like any
third-party package. Each example in docs/plugins.md is loaded as a file in
``instance/plugins/`` and made to do its work against real servers
(pytest-httpserver, a UDP socket), so the docs cannot show code that does not
run. Every hook has a ``test_hook_<name>…`` here; a test fails when one has none.
"""

import email
import email.policy
import importlib.metadata
import json
import mailbox
import socket
from pathlib import Path

import pytest
from conftest import SLUG, counts, sign, smtp_backed_app
from test_docs import hook_example, hook_names
from test_mailgun_events import PERMANENT, event_body, send_through_mailgun
from werkzeug import Response

from app import create_app
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, Signature
from app.plugins import ENTRY_POINT_GROUP, PluginError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PACKAGE = ROOT / "examples" / "clamor-maildir"


def install_docs_example(instance_path, hook, name):
    """Save the example of ``hook`` in docs/plugins.md as ``instance/plugins/<name>.py``."""
    folder = instance_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(hook_example(hook))


def maildir_messages(path):
    """``{Maildir key: parsed message}`` of every letter filed in the Maildir at ``path``."""
    folder = mailbox.Maildir(path, factory=None, create=False)
    return {key: email.message_from_bytes(folder.get_bytes(key), policy=email.policy.default) for key in folder.keys()}


def test_every_hook_has_a_test():
    tests = [name for name in globals() if name.startswith("test_hook_")]
    untested = [hook for hook in hook_names() if not any(name.startswith(f"test_hook_{hook}") for name in tests)]
    assert untested == []


# The example package, installed -------------------------------------------


def test_the_example_package_loads_through_its_entry_point(app):
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "maildir"]
    assert entry_point.value == "clamor_maildir"
    assert entry_point.dist.name == "clamor-maildir"
    module = entry_point.load()
    # Installed editable: the tests run the code in examples/, not a stale copy.
    assert Path(module.__file__).resolve() == EXAMPLE_PACKAGE / "clamor_maildir.py"

    state = app.extensions["clamor"]  # default config: PLUGINS = None, every installed plugin
    assert state.plugin_manager.get_plugin("maildir") is module
    assert state.backends["maildir"] is module.MaildirBackend
    assert module.MaildirBackend.verbose_name


def test_plugins_config_leaves_out_an_installed_package_it_does_not_name(make_app, app_config, instance_path):
    state = make_app(PLUGINS=[]).extensions["clamor"]
    assert not state.plugin_manager.has_plugin("maildir")
    assert "maildir" not in state.backends
    assert {"outbox_files", "smtp"} <= set(state.backends)  # built-ins do not depend on PLUGINS

    with pytest.raises(PluginError) as excinfo:
        create_app({**app_config, "PLUGINS": [], "DELIVERY": {"email": "maildir"}}, instance_path=instance_path)
    message = str(excinfo.value)
    assert "DELIVERY['email'] names the backend 'maildir', which no plugin registers" in message
    assert "outbox_files" in message


def test_plugins_config_naming_the_package_loads_it(make_app):
    state = make_app(PLUGINS=["maildir"], DELIVERY={"email": "maildir"}, MAILDIR_PATH="unused").extensions["clamor"]
    assert state.plugin_manager.has_plugin("maildir")
    assert state.backends["maildir"].__module__ == "clamor_maildir"


def test_a_backend_missing_its_settings_stops_start_up(app_config, instance_path):
    # Not at the first batch, as failed letters: at start-up, saying what is missing.
    with pytest.raises(PluginError,
                       match=r"DELIVERY\['email'\] = 'maildir' cannot work: the maildir backend needs MAILDIR_PATH"):
        create_app({**app_config, "DELIVERY": {"email": "maildir"}}, instance_path=instance_path)


def test_a_misspelt_name_in_plugins_stops_start_up(app_config, instance_path):
    with pytest.raises(PluginError,
                       match=r"PLUGINS names 'maildri', which no installed package provides \(installed: .*maildir"):
        create_app({**app_config, "PLUGINS": ["maildri"]}, instance_path=instance_path)


@pytest.mark.slow
def test_hook_register_delivery_backends_maildir_files_one_letter_per_target(make_app, tmp_path):
    path = tmp_path / "letters"
    app = make_app(DELIVERY={"email": "maildir"}, MAILDIR_PATH=str(path))
    client = app.test_client()
    assert sign(client, name="Anna Müller", email="anna@example.org", message="Libérez-le.").status_code == 303
    with app.app_context():
        assert deliver_due() == 5
        deliveries = {d.target_key: d for d in Delivery.query}
        targets = {t.key for t in app.extensions["clamor"].campaigns[SLUG].targets}
        assert {(d.status, d.backend) for d in deliveries.values()} == {("sent", "maildir")}

        messages = maildir_messages(path)
        assert len(messages) == len(targets) == 5
        assert {msg["To"].addresses[0].addr_spec for msg in messages.values()} == targets
        for key, msg in messages.items():
            delivery = deliveries[msg["To"].addresses[0].addr_spec]
            assert msg["Message-ID"] == delivery.message_id
            assert delivery.provider_id == key  # organisers can find the file from the admin
            assert msg["Reply-To"].addresses[0].display_name == "Anna Müller"
            assert msg["Reply-To"].addresses[0].addr_spec == "anna@example.org"
            assert msg["From"].addresses[0].addr_spec == "campaigns@clamor.test"
            assert msg["Subject"] == "Libérez Erzhan Elshibayev"
            assert msg.get_content().startswith("Libérez-le.")
    # Delivered as new mail; nothing half-written left behind.
    assert len(list((path / "new").iterdir())) == 5
    assert list((path / "tmp").iterdir()) == []


def test_maildir_that_cannot_be_written_is_a_temporary_failure(make_app, tmp_path):
    not_a_folder = tmp_path / "letters"
    not_a_folder.write_text("a file where the Maildir should be")
    app = make_app(DELIVERY={"email": "maildir"}, MAILDIR_PATH=str(not_a_folder))
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        outcomes = {(d.status, d.last_error) for d in Delivery.query}
    (status, error), = outcomes
    assert status == "pending"  # tried again later
    assert error.startswith(f"cannot write to {not_a_folder}")


# The examples in docs/plugins.md, loaded as plugin files -------------------


def test_hook_register_delivery_backends_docs_example_posts_each_letter(make_app, instance_path, httpserver):
    """The ≤40-line third-party backend: 2xx sent, 5xx retried, 4xx failed, all against a real HTTP server."""
    assert len(hook_example("register_delivery_backends").strip().splitlines()) <= 40
    install_docs_example(instance_path, "register_delivery_backends", "webhook")
    received = []

    def receive(request):
        letter = json.loads(request.data)
        received.append(letter)
        if letter["to"] == "press@mfa.kz":
            return Response("unknown recipient", status=400)
        if letter["to"] == "press@akorda.kz":
            return Response("busy", status=503)
        return Response("{}", headers={"X-Request-Id": f"req-{len(received)}"}, content_type="application/json")

    httpserver.expect_request("/letters", method="POST").respond_with_handler(receive)
    app = make_app(DELIVERY={"email": "webhook"}, WEBHOOK_URL=httpserver.url_for("/letters"))
    assert app.extensions["clamor"].backends["webhook"].__module__ == "clamor_instance_plugins.webhook"
    sign(app.test_client(), email="anna@example.org", message="Free him.")
    with app.app_context():
        assert deliver_due() == 5
        deliveries = {d.target_key: d for d in Delivery.query}

    assert len(received) == 5
    for letter in received:
        delivery = deliveries[letter["to"]]
        assert letter["message_id"] == delivery.message_id
        assert letter["reply_to"] == "anna@example.org"
        assert letter["subject"] == "Libérez Erzhan Elshibayev"
        assert letter["text"].startswith("Free him.")
    assert (deliveries["press@mfa.kz"].status, deliveries["press@mfa.kz"].last_error) == (
        "failed", "HTTP 400: unknown recipient")
    assert (deliveries["press@akorda.kz"].status, deliveries["press@akorda.kz"].last_error) == ("pending", "HTTP 503")
    sent = [d for d in deliveries.values() if d.status == "sent"]
    assert len(sent) == 3
    assert all(d.backend == "webhook" and d.provider_id.startswith("req-") for d in sent)


def test_hook_extend_action_form_docs_example_adds_a_required_box(make_app, instance_path):
    install_docs_example(instance_path, "extend_action_form", "own_name")
    app = make_app(SPAM_FILTERS=["number_question", "own_name"])
    client = app.test_client()
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert 'type="checkbox"' in page and "I send this letter in my own name" in page

    refused = sign(client, lang="en")
    assert refused.status_code == 200
    assert "Please tick the box to send your letter." in refused.get_data(as_text=True)
    with app.app_context():
        assert counts() == (0, 0)

    assert sign(client, lang="en", own_name="y").status_code == 303
    with app.app_context():
        assert counts() == (1, 5)


@pytest.mark.slow
def test_hook_check_submission_docs_example_rejects_spam(make_app, instance_path):
    install_docs_example(instance_path, "check_submission", "myplugin")
    app = make_app(SPAM_FILTERS=["number_question", "myplugin"])
    client = app.test_client()
    refused = sign(client, lang="en", message="Cheap VIAGRA here.")
    assert refused.status_code == 200
    assert "Your letter looks like spam." in refused.get_data(as_text=True)
    with app.app_context():
        assert counts() == (0, 0)
    assert sign(client, lang="en").status_code == 303


@pytest.mark.slow
def test_hook_register_settings_docs_example_gives_its_setting_a_default(make_app, instance_path):
    install_docs_example(instance_path, "register_settings", "shouting")
    app = make_app(SPAM_FILTERS=["number_question", "shouting"])
    assert app.config["SHOUTING_MAX"] == 0.5
    shouting = sign(app.test_client(), lang="en", email="a@example.org", message="FREE HIM NOW, free him.")
    assert shouting.status_code == 303
    assert sign(app.test_client(), lang="en", email="b@example.org", message="Free him now.").status_code == 303
    with app.app_context():
        statuses = dict(db.session.execute(db.select(Signature.email, Signature.status)).all())
    assert statuses == {"a@example.org": "held", "b@example.org": "accepted"}
    # The deployment's value wins over the plugin's default.
    tolerant = make_app(SPAM_FILTERS=["number_question", "shouting"], SHOUTING_MAX=0.9)
    assert tolerant.config["SHOUTING_MAX"] == 0.9


def test_hook_letter_sent_docs_example_counts_in_statsd(make_app, instance_path):
    install_docs_example(instance_path, "letter_sent", "statsd")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(5)
        app = make_app(STATSD_ADDRESS=statsd.getsockname())
        sign(app.test_client())
        with app.app_context():
            assert deliver_due() == 5
            assert {d.status for d in Delivery.query} == {"sent"}
        packets = [statsd.recv(512) for _ in range(5)]
    assert packets == [f"clamor.{SLUG}.letter.sent:1|c".encode()] * 5


@pytest.mark.slow
@pytest.mark.parametrize("confirm", [False, True])
def test_hook_letter_failed_docs_example_alerts_about_targets_only(make_app, instance_path, httpserver,
                                                                   scripted_smtp, confirm):
    """Letters to targets raise an alert; a supporter's own confirmation email, whose address is private, does not."""
    install_docs_example(instance_path, "letter_failed", "alerts")
    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_data("ok")
    # An SMTP server that refuses every recipient: every letter fails for good.
    controller, _ = scripted_smtp(rcpt_replies=["550 5.1.1 no such user"] * 5)
    app = smtp_backed_app(make_app, controller, ALERT_WEBHOOK_URL=httpserver.url_for("/hooks/alerts"),
                          CONFIRM_SUPPORTER_EMAIL=confirm)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == (1 if confirm else 5)
        failed = {d.id: (d.target_key, d.last_error) for d in Delivery.query.filter_by(status="failed")}
    assert len(failed) == (1 if confirm else 5)
    assert all("550 5.1.1 no such user" in error for _, error in failed.values())

    alerts = [json.loads(request.data)["text"] for request, _ in httpserver.log]
    if confirm:
        assert alerts == []
    else:
        assert sorted(alerts) == sorted(f"Letter {id} to {target} failed: {error}"
                                        for id, (target, error) in failed.items())
    assert not any("anna@example.org" in alert for alert in alerts)


@pytest.mark.slow
def test_hook_letter_bounced_docs_example_alerts_with_the_report(make_app, instance_path, httpserver):
    install_docs_example(instance_path, "letter_bounced", "bounce_alerts")
    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_data("ok")
    app, variables = send_through_mailgun(make_app, httpserver, ALERT_WEBHOOK_URL=httpserver.url_for("/hooks/alerts"))
    letter = min(variables)
    response = app.test_client().post("/hooks/mailgun", json=event_body("failed", variables[letter], **PERMANENT))
    assert response.status_code == 200
    with app.app_context():
        target = db.session.get(Delivery, letter).target_key
    alerts = [json.loads(request.data)["text"] for request, _ in httpserver.log
              if request.path == "/hooks/alerts"]
    report = "Mailgun failed: 550 5.1.1 The email account does not exist"
    assert alerts == [f"Letter {letter} to {target} bounced: {report}"]


@pytest.mark.slow
def test_hook_register_blueprints_docs_example_records_fax_receipts(make_app, instance_path, httpserver):
    install_docs_example(instance_path, "register_blueprints", "fax_receipts")
    app, _ = send_through_mailgun(make_app, httpserver, FAX_RECEIPT_SECRET="s3cret")
    with app.app_context():
        letters = {d.provider_id: d.id for d in Delivery.query.filter_by(kind="letter")}
    client = app.test_client()
    first, second, third = sorted(letters)[:3]

    def post(message_id, status, secret="s3cret"):
        return client.post("/hooks/fax-receipts", json={"message_id": message_id, "status": status},
                           headers={"X-Fax-Secret": secret})

    assert post(first.strip("<>"), "delivered").status_code == 200  # the id without its brackets finds it too
    assert post(second, "failed").status_code == 200
    assert post(third, "busy").status_code == 200
    # A wrong secret, and a receipt about no letter of ours, change nothing.
    assert post(third, "failed", secret="guess").status_code == 404
    assert post("<unknown@gateway>", "failed").status_code == 200
    response = client.post("/hooks/fax-receipts", data="[]", content_type="application/json",
                           headers={"X-Fax-Secret": "s3cret"})
    assert response.status_code == 400
    # Served like every page: its security headers, without a CSRF token.
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    with app.app_context():
        rows = {d.provider_id: (d.status, d.note) for d in Delivery.query.filter_by(kind="letter")}
    assert rows[first] == ("delivered", "Fax gateway: delivered")
    assert rows[second] == ("bounced", "Fax gateway: failed")
    assert rows[third] == ("sent", "Fax gateway: busy")
    assert sorted(status for status, _ in rows.values()) == ["bounced", "delivered", "sent", "sent", "sent"]


# Names --------------------------------------------------------------------


def test_a_plugin_file_named_like_a_built_in_stops_start_up_clearly(app_config, instance_path):
    folder = instance_path / "plugins"
    folder.mkdir()
    (folder / "smtp.py").write_text("# my own smtp tweaks\n")
    with pytest.raises(PluginError, match=r"plugin file .*smtp\.py is called 'smtp', like the plugin already "
                                          r"loaded from plugins\.smtp; give it another name"):
        create_app(app_config, instance_path=instance_path)


def test_an_installed_package_named_like_a_built_in_stops_start_up_clearly(app_config, instance_path, tmp_path,
                                                                             monkeypatch):
    # A real distribution on the import path, as pip would leave it.
    site = tmp_path / "site"
    dist_info = site / "clamor_own_smtp-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: clamor-own-smtp\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nsmtp = clamor_own_smtp\n")
    (site / "clamor_own_smtp.py").write_text("# another smtp\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match=r"the entry point 'smtp' of clamor-own-smtp is called 'smtp', like the "
                                          r"plugin already loaded from plugins\.smtp"):
        create_app(app_config, instance_path=instance_path)

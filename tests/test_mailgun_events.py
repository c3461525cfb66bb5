"""``POST /hooks/mailgun``: letters sent through the mailgun backend (pytest-httpserver as
Mailgun) become delivered or bounced on Mailgun's signed events; anything forged, stale
or replayed is refused with 406 and changes nothing."""

import hashlib
import hmac
import re
import secrets
import time

import pytest
from conftest import SLUG, add_organiser, install_bounce_log, logged_bounces, login, sign
from sqlalchemy import select
from test_backends import MailgunStub

from app import letter_variable, states
from app.delivery import deliver_due
from app.extensions import db
from app.links import status_url
from app.models import Delivery, Signature

KEY = "whsec-test-signing-key"


def signature(key=KEY, timestamp=None, token=None):
    """A signature block as Mailgun makes it: hex HMAC-SHA256 of timestamp + token."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def event_body(event, variable=None, message_id="", sig=None, **fields):
    data = {"event": event, "message": {"headers": {"message-id": message_id}}, **fields}
    if variable is not None:
        data["user-variables"] = {"clamor-letter": variable}
    return {"signature": sig or signature(), "event-data": data}


PERMANENT = {"severity": "permanent", "reason": "bounce",
             "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"}}
TEMPORARY = {"severity": "temporary", "reason": "generic",
             "delivery-status": {"code": 452, "message": "4.2.2 Mailbox full, try later"}}


def send_through_mailgun(make_app, httpserver, **overrides):
    """An app whose five letters went out through the mailgun backend; ``(app, {id: v:clamor-letter})``."""
    stub = MailgunStub()
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = make_app(DELIVERY={"email": "mailgun"}, MAILGUN_DOMAIN="mg.clamor.test", MAILGUN_API_KEY="key-123",
                   MAILGUN_BASE_URL=httpserver.url_for("/v3"), MAILGUN_WEBHOOK_SIGNING_KEY=KEY, **overrides)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 5
        ids = {d.target_key: d.id for d in Delivery.query}
    return app, {ids[request.form["to"]]: request.form["v:clamor-letter"] for request in stub.requests}


@pytest.fixture
def sent_app(make_app, httpserver):
    return lambda **overrides: send_through_mailgun(make_app, httpserver, **overrides)


def state(app, delivery_id):
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        return delivery.status, delivery.note


def everything(app):
    with app.app_context():
        return sorted((d.id, d.status, d.note) for d in Delivery.query)


@pytest.mark.slow
def test_events_make_letters_delivered_bounced_or_noted(sent_app, instance_path):
    install_bounce_log(instance_path)

    def seen():
        return [tuple(call) for call in logged_bounces(instance_path)]
    app, variables = sent_app()
    client = app.test_client()
    first, second, third, fourth = sorted(variables)[:4]

    assert client.post("/hooks/mailgun", json=event_body("delivered", variables[first])).status_code == 200
    assert state(app, first)[0] == "delivered"

    assert client.post("/hooks/mailgun", json=event_body("failed", variables[second], **PERMANENT)).status_code == 200
    assert state(app, second) == ("bounced", "Mailgun failed: 550 5.1.1 The email account does not exist")
    assert seen() == [(second, "bounced", "Mailgun failed: 550 5.1.1 The email account does not exist")]

    assert client.post("/hooks/mailgun", json=event_body("failed", variables[third], **TEMPORARY)).status_code == 200
    assert state(app, third) == ("sent", "Mailgun failed: 452 4.2.2 Mailbox full, try later")

    # Mailgun's suppression of an address that bounced before (605) is a bounce too.
    suppressed = {"severity": "permanent", "reason": "suppress-bounce",
                  "delivery-status": {"code": 605, "message": "Not delivering to previously bounced address"}}
    assert client.post("/hooks/mailgun", json=event_body("failed", variables[fourth], **suppressed)).status_code == 200
    assert state(app, fourth)[0] == "bounced"

    # Out of order: a late "delivered" for a bounced letter is a note, not a change or a crash.
    assert client.post("/hooks/mailgun", json=event_body("delivered", variables[second])).status_code == 200
    assert state(app, second) == ("bounced", "Mailgun delivered:")
    assert [row[0] for row in seen()] == [second, fourth]


@pytest.mark.slow
def test_the_message_id_finds_a_letter_without_its_variable(sent_app):
    app, variables = sent_app()
    with app.app_context():
        delivery = db.session.get(Delivery, min(variables))
        # Mailgun's events carry the id without its angle brackets.
        message_id = delivery.provider_id.strip("<>")
    response = app.test_client().post("/hooks/mailgun", json=event_body("delivered", message_id=message_id))
    assert response.status_code == 200
    assert state(app, min(variables))[0] == "delivered"


@pytest.mark.slow
def test_forged_stale_replayed_and_malformed_posts_get_406_and_change_nothing(sent_app):
    app, variables = sent_app()
    client = app.test_client()
    letter = variables[min(variables)]
    before = everything(app)
    refused = [
        event_body("delivered", letter, sig=signature(key="not-the-key")),
        event_body("delivered", letter, sig={**signature(), "signature": "0" * 64}),
        event_body("delivered", letter, sig={**signature(), "signature": "é" * 64}),
        event_body("delivered", letter, sig=signature(timestamp=int(time.time()) - 11 * 60)),
        event_body("delivered", letter, sig=signature(timestamp=int(time.time()) + 11 * 60)),
        {"event-data": {"event": "delivered"}},
        {"signature": "nonsense", "event-data": []},
        {"signature": signature()},
        [1, 2, 3],
    ]
    for body in refused:
        assert client.post("/hooks/mailgun", json=body).status_code == 406, body
    assert client.post("/hooks/mailgun", data=b"{not json", content_type="application/json").status_code == 406
    assert client.post("/hooks/mailgun", data=b"token=x").status_code == 406
    # Nested deeper than the JSON parser goes, within MAX_CONTENT_LENGTH.
    assert client.post("/hooks/mailgun", data=b"[" * 60000, content_type="application/json").status_code == 406
    assert everything(app) == before

    # A genuine event, then the very same post again: the replay is refused.
    once = event_body("failed", letter, **TEMPORARY)
    assert client.post("/hooks/mailgun", json=once).status_code == 200
    after = everything(app)
    assert after != before
    with app.app_context():
        # Reset the note so a replay that took effect would show.
        states.reported(db.session.get(Delivery, min(variables)), "")
        db.session.commit()
    again = everything(app)
    assert client.post("/hooks/mailgun", json=once).status_code == 406
    assert everything(app) == again


@pytest.mark.slow
def test_an_unknown_message_or_other_event_gets_200_and_changes_nothing(sent_app):
    app, variables = sent_app()
    client = app.test_client()
    before = everything(app)
    with app.app_context():
        not_ours = letter_variable(999999)
    for body in (event_body("delivered", message_id="<nobody@mg.clamor.test>"),
                 event_body("delivered", "not-a-sealed-value"),
                 event_body("delivered", not_ours),
                 event_body("opened", variables[min(variables)]),
                 event_body("delivered")):
        assert client.post("/hooks/mailgun", json=body).status_code == 200, body
    assert everything(app) == before


def test_without_a_signing_key_the_endpoint_is_off(make_app):
    app = make_app()
    assert app.test_client().post("/hooks/mailgun", json=event_body("delivered")).status_code == 404


@pytest.mark.slow
def test_delivered_and_bounced_show_on_the_dashboard_the_supporters_page_and_clamor_deliveries(sent_app):
    app, variables = sent_app()
    client = app.test_client()
    first, second = sorted(variables)[:2]
    assert client.post("/hooks/mailgun", json=event_body("delivered", variables[first])).status_code == 200
    assert client.post("/hooks/mailgun", json=event_body("failed", variables[second], **PERMANENT)).status_code == 200
    with app.app_context():
        keys = {d.id: d.target_key for d in Delivery.query}
        link = status_url(db.session.scalar(select(Signature))).removeprefix(app.config["BASE_URL"])

    page = app.test_client().get(link).get_data(as_text=True)
    # The supporter signed in French: the page says it in French.
    assert re.search(r'class="state-delivered">\s*distribué', page)
    assert re.search(r'class="state-bounced">\s*rejeté : la boîte du destinataire l’a refusé', page)
    assert len(re.findall(r'class="state-sent">', page)) == 3

    add_organiser(app)
    login(client)
    html = client.get(f"/admin/{SLUG}/").get_data(as_text=True)

    def row(key):
        return re.search(rf'<tr data-target="{re.escape(key)}">(.*?)</tr>', html, re.S).group(1)

    assert re.search(r'class="num delivered">1<', row(keys[first]))
    assert re.search(r'class="num sent">0<', row(keys[first]))
    assert re.search(r'class="num bounced">1<', row(keys[second]))
    # Delivered and bounced letters were sent: all five count as sent today.
    assert re.search(r'id="fig-sent-today">5<', html)

    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert "sent: 3  delivered: 1  bounced: 1  failed: 0" in output

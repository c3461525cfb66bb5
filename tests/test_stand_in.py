"""A dropped submission (an address that signed already) gets the pages a new signer gets.

Someone who types a supporter's address into the form must not learn whether
that person signed: the answer, the thank-you page, the status link and the
status page over time are compared with those of a new signer who signs at
the same moment, through a real SMTP server that refuses one letter.
"""

import json
import re
import time
from base64 import urlsafe_b64decode
from datetime import timedelta

from app.delivery import deliver_due
from app.extensions import db
from app.letter_status import StandIn
from app.models import Signature, utcnow
from app.tokens import make_status_token
from conftest import SLUG, TOKEN, counts, form_fields, sign, smtp_backed_app, thanks_and_status


def public_count(app):
    """The number on the campaign page: "N personnes ont signé"."""
    page = app.test_client().get(f"/fr/{SLUG}/").get_data(as_text=True)
    return int(re.search(r"(\d+) personnes? (?:a|ont) signé", page).group(1))


def payload(token):
    """The readable part of a status token (itsdangerous signs it but does not hide it)."""
    data = token.split(".")[0]
    return json.loads(urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def test_a_duplicate_sees_what_a_new_signer_sees_at_every_step(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = smtp_backed_app(make_app, controller)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 5
    prober, newcomer = app.test_client(), app.test_client()
    again = sign(prober, email="Anna@example.org", name="Someone")
    # The public counter moves as for anyone: watching it tells nothing either.
    assert public_count(app) == 2
    new = sign(newcomer, email="bob@example.org", name="Bob")
    assert public_count(app) == 3
    assert (again.status_code, again.headers["Location"]) == (new.status_code, new.headers["Location"])
    assert again.get_data() == new.get_data()
    with app.app_context():
        assert counts() == (2, 10)  # nothing stored for the duplicate

    # Queued: the same pages, and status links of the same shape and length.
    prober_pages, newcomer_pages = thanks_and_status(prober), thanks_and_status(newcomer)
    assert prober_pages == newcomer_pages
    assert prober_pages[1].count("en attente") == 5
    prober_token = TOKEN.search(prober.get(f"/fr/{SLUG}/thanks").get_data(as_text=True)).group(1)
    newcomer_token = TOKEN.search(newcomer.get(f"/fr/{SLUG}/thanks").get_data(as_text=True)).group(1)
    assert len(prober_token) == len(newcomer_token)
    assert [type(v) for v in payload(prober_token)] == [type(v) for v in payload(newcomer_token)]

    # The first target refuses Bob's letter for good; the rest arrive.
    inbox.rcpt_replies.append("550 5.1.1 no such user")
    with app.app_context():
        assert deliver_due() == 5
    assert len(inbox.envelopes) == 9
    prober_pages, newcomer_pages = thanks_and_status(prober), thanks_and_status(newcomer)
    assert prober_pages == newcomer_pages
    assert newcomer_pages[1].count(">envoyé<") == 4 and newcomer_pages[1].count(">échec<") == 1


def test_a_duplicate_with_nobody_after_it_follows_the_letter_before_it(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    # DELIVERY_POLL_SECONDS=1: the stand-in shows "queued" for a second at least.
    app = smtp_backed_app(make_app, controller, DELIVERY_POLL_SECONDS=1)
    newcomer, prober = app.test_client(), app.test_client()
    sign(newcomer, email="bob@example.org")
    sign(prober, email="bob@example.org")  # Bob's address, by someone else, before any letter left
    prober_status, newcomer_status = thanks_and_status(prober)[1], thanks_and_status(newcomer)[1]
    assert prober_status == newcomer_status and newcomer_status.count("en attente") == 5

    inbox.rcpt_replies.append("550 5.1.1 no such user")
    with app.app_context():
        assert deliver_due() == 5
    time.sleep(1.1)
    prober_status, newcomer_status = thanks_and_status(prober)[1], thanks_and_status(newcomer)[1]
    assert prober_status == newcomer_status and newcomer_status.count(">échec<") == 1


def test_while_delivery_is_paused_a_stand_in_stays_queued(make_app, runner):
    app = make_app(DELIVERY_POLL_SECONDS=1)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        deliver_due()
    prober = app.test_client()
    sign(prober, email="anna@example.org")
    app.test_cli_runner().invoke(args=["deliveries", "pause"])
    time.sleep(1.1)
    assert thanks_and_status(prober)[1].count("en attente") == 5
    app.test_cli_runner().invoke(args=["deliveries", "resume"])
    assert thanks_and_status(prober)[1].count(">envoyé<") == 5


def test_a_duplicate_that_another_filter_would_hold_looks_held(app):
    sign(app.test_client(), email="anna@example.org")
    links = "Voyez http://a.example http://b.example http://c.example"
    prober, newcomer = app.test_client(), app.test_client()
    sign(prober, email="anna@example.org", message=links)
    sign(newcomer, email="bob@example.org", message=links)
    assert public_count(app) == 1  # neither moves it: a held letter counts once approved
    with app.app_context():
        assert db.session.query(Signature).filter_by(status="held").count() == 1
        deliver_due()
    prober_pages, newcomer_pages = thanks_and_status(prober), thanks_and_status(newcomer)
    assert prober_pages == newcomer_pages
    assert "la vérifiera avant son envoi" in newcomer_pages[1] and newcomer_pages[1].count("en attente") == 5


def test_with_confirmation_a_duplicate_is_asked_to_confirm_too(make_app):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True)
    sign(app.test_client(), lang="ru", email="anna@example.org")
    prober, newcomer = app.test_client(), app.test_client()
    sign(prober, lang="ru", email="anna@example.org")
    sign(newcomer, lang="ru", email="bob@example.org")
    with app.app_context():
        # Two signatures, each with 5 letters and a confirmation email, and Anna's
        # confirmation email once more (see the test below).
        assert counts() == (2, 13)
    assert public_count(app) == 0
    prober_pages, newcomer_pages = thanks_and_status(prober, "ru"), thanks_and_status(newcomer, "ru")
    assert prober_pages == newcomer_pages
    assert 'class="confirm-needed"' in newcomer_pages[0]


def test_an_unconfirmed_stand_in_is_gone_when_a_real_one_would_have_expired(make_app):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True, CONFIRM_EXPIRY_DAYS=7)
    with app.test_request_context():
        fresh = make_status_token(StandIn(SLUG, "unconfirmed", 0, utcnow().replace(microsecond=0)))
        old = make_status_token(StandIn(SLUG, "unconfirmed", 0, utcnow().replace(microsecond=0) - timedelta(days=8)))
    client = app.test_client()
    assert client.get(f"/fr/letter/{fresh}").status_code == 200
    assert client.get(f"/fr/letter/{old}").status_code == 404


def test_a_status_link_does_not_open_after_its_signature_is_forgotten(app, client, runner):
    sign(client, email="anna@example.org")
    link = TOKEN.search(client.get(f"/fr/{SLUG}/thanks").get_data(as_text=True)).group(0)
    assert client.get(f"/fr{link}").status_code == 200
    runner.invoke(args=["forget", "anna@example.org"])
    with app.app_context():
        assert counts()[0] == 0
    assert client.get(f"/fr{link}").status_code == 404


def test_a_stand_in_waits_when_its_targets_had_their_hourly_fill(make_app):
    # Anna's letters fill TARGET_HOURLY_CAP=1: a new letter now would wait an hour.
    app = make_app(DELIVERY_POLL_SECONDS=1, TARGET_HOURLY_CAP=1)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        deliver_due()
    prober = app.test_client()
    sign(prober, email="anna@example.org")
    time.sleep(1.1)
    assert thanks_and_status(prober)[1].count("en attente") == 5


def test_signing_again_before_confirming_sends_the_confirmation_email_again(make_app, smtp_server):
    """Someone who lost the confirmation email signs again: "we have sent you an email" is true."""
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True, DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1",
                   SMTP_PORT=smtp_server.port)
    runner = app.test_cli_runner()
    sign(app.test_client(), lang="ru", email="anna@example.org")
    runner.invoke(args=["deliver", "--once"])
    again = app.test_client()
    sign(again, lang="fr", email="Anna@example.org")
    assert 'class="confirm-needed"' in thanks_and_status(again)[0]
    runner.invoke(args=["deliver", "--once"])
    first, second = smtp_server.inbox.messages
    assert {m["To"].addresses[0].addr_spec for m in (first, second)} == {"anna@example.org"}
    assert second["Content-Language"] == "ru" and second["Subject"] == first["Subject"]  # as the first one
    links = [re.search(r"http://localhost(/\w\w/confirm/\S+)", m.get_content()).group(1) for m in (first, second)]
    assert links[0].split("/confirm/")[1] == links[1].split("/confirm/")[1]  # the same signature to confirm

    # The second email's link confirms the first signature, and its letters go.
    supporter = app.test_client()
    token = form_fields(supporter.get(links[1]).get_data(as_text=True))["csrf_token"]
    assert supporter.post(links[1], data={"csrf_token": token}).status_code == 200
    runner.invoke(args=["deliver", "--once"])
    assert len(smtp_server.inbox.messages) == 2 + 5
    with app.app_context():
        assert counts() == (1, 7)

    # Once confirmed, signing again sends nobody anything.
    sign(app.test_client(), email="anna@example.org")
    runner.invoke(args=["deliver", "--once"])
    assert len(smtp_server.inbox.messages) == 7

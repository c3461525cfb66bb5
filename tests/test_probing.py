"""A prober who types an address learns nothing; the supporter's mailbox learns everything.

The thank-you page is the same for everyone and carries no per-letter link.
The link to a letter's own page goes to the mailbox of the address typed: a
receipt for a new signer, "you signed this on D" for a repeat. Mail to a typed
address carries nothing that was typed.
"""

import re
from email import message_from_bytes, policy

import pytest
from conftest import SLUG, add_campaign, counts, sign, statements_during
from sqlalchemy import select

from app.delivery import deliver_due
from app.extensions import db, limiter
from app.models import CampaignTally, Delivery, Signature


@pytest.fixture
def app(make_app):
    """The default configuration: receipts on."""
    return make_app(SEND_RECEIPT=True)


def mask(html):
    """``html`` without what changes on every request: hidden form tokens and the number question."""
    html = re.sub(r'(type="hidden"[^>]*?value=")[^"]*', r"\1X", html)
    return re.sub(r"\b\d{4}\b", "NNNN", html)


def mailbox(app):
    """{address: [parsed messages]} of every email to a supporter's mailbox written to the outbox so far."""
    with app.app_context():
        while deliver_due(app):
            pass
    found = {}
    outbox = app.config["OUTBOX_DIR"]
    import pathlib

    for path in sorted(pathlib.Path(outbox).glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found.setdefault(message["To"].addresses[0].addr_spec, []).append(message)
    return found


def link_in(message):
    return re.search(r"http://localhost(/\w+/letter/[\w-]+)", message.get_content()).group(1)


@pytest.mark.slow
def test_a_prober_sees_exactly_what_a_new_signer_sees(app):
    sign(app.test_client(), email="anna@example.org")
    before = app.test_client().get(f"/fr/{SLUG}/").get_data(as_text=True)

    newcomer, prober = app.test_client(), app.test_client()
    new = sign(newcomer, email="boris@example.org")
    probe = sign(prober, email="ANNA+probe@example.org")
    assert (new.status_code, new.headers["Location"]) == (probe.status_code, probe.headers["Location"]) == (
        303, f"/fr/{SLUG}/thanks")
    assert newcomer.get(new.headers["Location"]).get_data() == prober.get(probe.headers["Location"]).get_data()
    # The public counter moved by one for each of them.
    after = app.test_client().get(f"/fr/{SLUG}/").get_data(as_text=True)
    assert "1 personne" in before and "3 personnes" in after
    assert mask(newcomer.get(f"/fr/{SLUG}/").get_data(as_text=True)) == mask(
        prober.get(f"/fr/{SLUG}/").get_data(as_text=True))
    with app.app_context():
        assert db.session.get(CampaignTally, SLUG).accepted == 3
        assert db.session.scalar(select(Signature.email).where(Signature.email_key == "anna@example.org")) == \
            "anna@example.org"
        assert counts()[0] == 2  # the repeat stored no signature


def test_the_thank_you_page_has_no_link_to_a_letter_and_lists_the_targets(app, client):
    sign(client, lang="en")
    thanks = client.get(f"/en/{SLUG}/thanks").get_data(as_text=True)
    assert "/letter/" not in thanks
    assert "We have sent you an email with a link to your letter" in thanks
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[SLUG]
    for target in campaign.targets:
        assert f"<li>{target.name}</li>" in thanks.replace("&#34;", '"').replace("&#39;", "'")


@pytest.mark.slow
def test_receipt_and_reminder_reach_the_mailbox_with_the_real_letters_link(app):
    sign(app.test_client(), email="anna@example.org", message="My own words for Erzhan.")
    sign(app.test_client(), email="Anna@Example.org", message="A second try.")
    mail = mailbox(app)["anna@example.org"]
    receipt, reminder = sorted(mail, key=lambda m: "déjà" in m["Subject"])
    assert "déjà" in reminder["Subject"] and "déjà" not in receipt["Subject"]
    # Both links open the one real letter, with the supporter's own copy.
    assert link_in(receipt) != link_in(reminder)  # fresh tokens …
    pages = [app.test_client().get(link_in(m)) for m in (receipt, reminder)]
    for page in pages:
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "My own words for Erzhan." in html and "A second try." not in html
        assert page.headers["Cache-Control"] == "private, no-store"
    with app.app_context():
        first = db.session.scalars(select(Signature)).one()
        assert first.created_at.strftime("%Y") in reminder.get_content()


@pytest.mark.slow
def test_mail_to_a_typed_address_carries_nothing_that_was_typed(app):
    typed = {"name": "Cheap Pills Online", "organisation": "Visit pills.example", "message": "BUY NOW at pills.example"}
    sign(app.test_client(), email="victim@example.org", **typed)
    sign(app.test_client(), email="victim@example.org", **typed)
    mail = mailbox(app)["victim@example.org"]
    assert len(mail) == 2
    for message in mail:
        raw = message.as_string()
        for value in typed.values():
            assert value not in raw
            assert value not in message.get_content()
        assert message["To"].addresses[0].display_name == ""


def _writes(app, action):
    """The shape of each write ``action()`` sends (no values, no savepoint names)."""
    shapes = []
    for statement in statements_during(app, action):
        words = statement.split()
        if words[0].upper() in ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE", "ROLLBACK"):
            shapes.append(" ".join(w for w in words[:3] if not w.startswith("sa_savepoint")))
    return shapes


@pytest.mark.slow
def test_a_repeat_does_the_same_writes_as_a_new_signer(app):
    sign(app.test_client(), email="anna@example.org")
    new = _writes(app, lambda: sign(app.test_client(), email="boris@example.org"))
    repeat = _writes(app, lambda: sign(app.test_client(), email="anna@example.org"))
    assert "INSERT INTO signature" in new and "INSERT INTO delivery" in new
    # The repeat writes its signature and letters too, then rolls them back.
    assert [w.replace("ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT") for w in repeat] == new
    assert "ROLLBACK TO SAVEPOINT" in " ".join(repeat)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["held", "confirm"])
def test_held_and_unconfirmed_repeats_look_like_new_signers(make_app, hold_filter, mode):
    if mode == "held":
        app = make_app(SPAM_FILTERS=[*hold_filter, "duplicate_signer"], SEND_RECEIPT=True)
        values = {"message": "hold me"}
    else:
        app = make_app(CONFIRM_SUPPORTER_EMAIL=True)
        values = {}
    sign(app.test_client(), email="anna@example.org", **values)
    newcomer, prober = app.test_client(), app.test_client()
    sign(newcomer, email="boris@example.org", **values)
    sign(prober, email="anna@example.org", **values)
    assert newcomer.get(f"/fr/{SLUG}/thanks").get_data() == prober.get(f"/fr/{SLUG}/thanks").get_data()
    with app.app_context():
        assert db.session.get(CampaignTally, SLUG) is None  # neither held nor unconfirmed ones count
    mail = mailbox(app)
    if mode == "confirm":
        # The one still waiting for confirmation gets its confirmation again.
        assert len(mail["anna@example.org"]) == 2
        assert all("confirm" in m.get_content() for m in mail["anna@example.org"])
    else:
        assert len(mail["anna@example.org"]) == 2 and len(mail["boris@example.org"]) == 1


@pytest.mark.slow
def test_mail_to_a_typed_address_stays_under_the_per_address_limit(make_app):
    app = make_app(RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="2 per minute", SEND_RECEIPT=True)
    with app.app_context():
        limiter.reset()
    answers = [sign(app.test_client(), email="victim@example.org",
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                    environ_overrides={"REMOTE_ADDR": f"198.51.100.{i}"}).status_code for i in range(5)]
    assert answers == [303, 303, 429, 429, 429]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Delivery).where(Delivery.kind != "letter")) == 2


@pytest.mark.slow
def test_status_links_are_opaque_and_bound_to_their_purpose(app):
    sign(app.test_client(), email="anna@example.org")
    message = mailbox(app)["anna@example.org"][0]
    link = link_in(message)
    token = link.rsplit("/", 1)[1]
    assert len(token) == 59
    with app.app_context():
        signature = db.session.scalars(select(Signature)).one()
    import hashlib

    assert hashlib.sha256(b"anna@example.org").hexdigest()[:12] not in token
    client = app.test_client()
    assert client.get(link).status_code == 200
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert client.get(f"/fr/letter/{flipped}").status_code == 404
    # A status token is not an unsubscribe or a confirm token.
    assert client.get(f"/fr/unsubscribe/{token}").status_code == 404
    assert client.get(f"/fr/confirm/{token}").status_code == 404
    # Purged, the letter's link opens nothing.
    from app.privacy import forget

    with app.app_context():
        forget(signature.email)
    assert client.get(link).status_code == 404


@pytest.mark.slow
def test_tokens_expire_confirm_after_expiry_days_status_with_retention(make_app, instance_path):
    from datetime import timedelta

    from app.models import utcnow
    from app.tokens import make_token

    add_campaign(instance_path, "closed-long-ago", status='"closed"', closed_at="2020-01-31")
    app = make_app(CONFIRM_EXPIRY_DAYS=7, RETENTION_DAYS=30)
    client = app.test_client()
    sign(client, email="anna@example.org")
    with app.app_context():
        signature = db.session.scalars(select(Signature)).one()
        signature.status = "unconfirmed"
        signature.created_at = utcnow() - timedelta(days=6)
        db.session.commit()
        fresh = make_token(signature, "confirm")
        signature.created_at = utcnow() - timedelta(days=8)
        db.session.commit()
        stale = make_token(signature, "confirm")
        signature.campaign = "closed-long-ago"
        db.session.commit()
        expired_status = make_token(signature, "status")
        unsubscribe = make_token(signature, "unsubscribe")
    assert client.get(f"/fr/confirm/{stale}").status_code == 404
    # ``fresh`` was bound to the earlier creation time: a row whose time changed is another row.
    assert client.get(f"/fr/confirm/{fresh}").status_code == 404
    assert client.get(f"/fr/letter/{expired_status}").status_code == 404  # retention ended in 2020
    assert client.get(f"/fr/unsubscribe/{unsubscribe}").status_code == 200  # kept while consent is kept
    with app.app_context():
        signature = db.session.scalars(select(Signature)).one()
        signature.campaign = SLUG
        signature.created_at = utcnow() - timedelta(days=6)
        db.session.commit()
        valid = make_token(signature, "confirm"), make_token(signature, "status")
    assert client.get(f"/fr/confirm/{valid[0]}").status_code == 200
    assert client.get(f"/fr/letter/{valid[1]}").status_code == 200


@pytest.mark.slow
def test_the_request_log_shows_no_link_token(app, caplog):
    import logging

    from conftest import LiveServer, status_path

    sign(app.test_client())
    path = status_path(app)
    token = path.rsplit("/", 1)[1]
    import urllib.request

    with caplog.at_level(logging.INFO, logger="werkzeug"), LiveServer(app) as server:
        assert urllib.request.urlopen(server.url + path).status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/fr/letter/…" in line for line in lines), lines
    assert not any(token in line or "127.0.0.1" in line for line in lines)

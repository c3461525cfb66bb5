"""VERP: with BOUNCE_ADDRESS each letter's SMTP envelope sender names it (aiosmtpd records MAIL FROM);
the token is stable across retries, unique per letter, and cannot be forged."""

from base64 import b32decode, b32encode

import pytest
from conftest import FAX_CAMPAIGN, sign, smtp_backed_app

from app import verp
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, utcnow

BOUNCES = "bounces@union.test"


def tokens_by_delivery(app):
    with app.app_context():
        return {d.id: verp.return_path(d.id, BOUNCES) for d in Delivery.query}


@pytest.mark.slow
def test_each_letter_has_its_own_envelope_sender_stable_across_a_retry(make_app, scripted_smtp):
    controller, inbox = scripted_smtp(data_replies=["451 4.3.0 try again later"])
    app = smtp_backed_app(make_app, controller, BOUNCE_ADDRESS=BOUNCES)
    sign(app.test_client(), email="anna@example.org", name="Anna")
    with app.app_context():
        assert deliver_due() == 5
        retried = Delivery.query.filter_by(status="pending").one()
        retried_id = retried.id
        retried.next_attempt_at = utcnow()
        db.session.commit()
        assert deliver_due() == 1
        assert {d.status for d in Delivery.query} == {"sent"}
    expected = tokens_by_delivery(app)
    # Six envelopes: five letters, the refused one twice, with the same sender both times.
    assert len(inbox.senders) == 6
    assert inbox.senders.count(expected[retried_id]) == 2
    assert sorted(set(inbox.senders)) == sorted(expected.values())
    assert len(set(expected.values())) == 5
    for sender in inbox.senders:
        local, _, domain = sender.partition("@")
        assert domain == "union.test" and local.startswith("bounces+") and local == local.lower()
    # From and Reply-To are the letter's, as without VERP.
    for message in inbox.messages:
        assert message["From"].addresses[0].addr_spec == "campaigns@clamor.test"
        assert message["Reply-To"].addresses[0].addr_spec == "anna@example.org"
        assert "bounces" not in str(message)


@pytest.mark.slow
def test_without_bounce_address_the_envelope_sender_is_sender_address(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = smtp_backed_app(make_app, controller)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 5
    assert inbox.senders == ["campaigns@clamor.test"] * 5


@pytest.mark.slow
def test_mail_to_the_supporters_own_mailbox_keeps_the_sender_address(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = smtp_backed_app(make_app, controller, BOUNCE_ADDRESS=BOUNCES, SEND_RECEIPT=True)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 6
        receipt = Delivery.query.filter_by(kind="receipt").one()
        assert receipt.status == "sent"
    assert inbox.senders.count("campaigns@clamor.test") == 1
    assert sum(s.startswith("bounces+") for s in inbox.senders) == 5


@pytest.mark.slow
def test_a_fax_over_smtp_has_the_verp_envelope_sender(make_app, instance_path, scripted_smtp):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    controller, inbox = scripted_smtp()
    app = make_app(DELIVERY={"email": "smtp", "fax": "fax_email"}, SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port,
                   FAX_ADDRESS_TEMPLATE="{e164}@fax.tc", FAX_SENDER="fax@clamor.test", BOUNCE_ADDRESS=BOUNCES)
    sign(app.test_client(), lang="kk", slug="fax-test", email="aigul@example.kz", country="KZ")
    with app.app_context():
        assert deliver_due() == 1
        delivery = Delivery.query.one()
        assert (delivery.status, delivery.channel) == ("sent", "fax")
        assert inbox.senders == [verp.return_path(delivery.id, BOUNCES)]
    assert inbox.messages[0]["From"].addresses[0].addr_spec == "fax@clamor.test"


def test_a_token_reads_back_and_a_tampered_one_does_not(app):
    with app.app_context():
        address = verp.return_path(42, BOUNCES)
        local = address.partition("@")[0]
        token = local.partition("+")[2]
        assert len(token) == verp.TOKEN_LENGTH and token == token.lower()
        assert verp.delivery_id_from(address, BOUNCES) == 42
        assert verp.delivery_id_from(f"<{address.upper()}>", BOUNCES) == 42
        assert verp.delivery_id_from(local, BOUNCES) == 42
        assert verp.return_path(42, BOUNCES) == address
        assert verp.return_path(43, BOUNCES) != address
        # One character changed, anywhere in the token.
        for i in range(len(token)):
            changed = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1:]
            assert verp.delivery_id_from(f"bounces+{changed}@union.test", BOUNCES) is None
        # Another delivery's id with the MAC of this one.
        raw = b32decode(token.upper() + "======")
        forged = b32encode((43).to_bytes(6, "big") + raw[6:]).decode().rstrip("=").lower()
        assert verp.delivery_id_from(f"bounces+{forged}@union.test", BOUNCES) is None
        for junk in ("bounces@union.test", "bounces+@union.test", f"other+{token}@union.test",
                     f"bounces+{token}x@union.test", "bounces+" + "!" * 26 + "@union.test", ""):
            assert verp.delivery_id_from(junk, BOUNCES) is None


def test_another_secret_key_makes_other_tokens(make_app):
    first, second = make_app(), make_app(SECRET_KEY="another-secret")
    with first.app_context():
        address = verp.return_path(7, BOUNCES)
    with second.app_context():
        assert verp.return_path(7, BOUNCES) != address
        assert verp.delivery_id_from(address, BOUNCES) is None


@pytest.mark.parametrize("bad", ["bounces", "bounces@", "@union.org", "bounces+x@union.org", "a b@union.org", 42])
def test_a_bounce_address_that_is_no_address_stops_start_up(make_app, bad):
    from app import ConfigError

    with pytest.raises(ConfigError, match="BOUNCE_ADDRESS"):
        make_app(BOUNCE_ADDRESS=bad)

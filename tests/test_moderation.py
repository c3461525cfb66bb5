"""Held signatures: `clamor moderation list/approve/reject` and app.moderation."""

import pytest
from conftest import SLUG, counts, sign

from app import moderation
from app.delivery import deliver_due
from app.models import Delivery, Signature

LINKS = "Voir http://a.example http://b.example http://c.example"


@pytest.fixture
def smtp_app(make_app, smtp_server):
    return make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)


def held_signature(app, **values):
    """Sign with a letter the links filter holds; return the signature's id."""
    assert sign(app.test_client(), **{"message": LINKS, **values}).status_code == 303
    with app.app_context():
        return Signature.query.filter_by(status="held").order_by(Signature.id.desc()).first().id


@pytest.mark.slow
def test_list_shows_held_signatures_with_their_reason(app, runner):
    held = held_signature(app, name="Anna <b>Example</b>")
    sign(app.test_client(), email="bob@example.org")  # accepted: not listed
    result = runner.invoke(args=["moderation", "list"])
    assert result.exit_code == 0, result.output
    assert f"#{held}  {SLUG}" in result.output
    assert "Anna <b>Example</b> <anna@example.org>" in result.output
    assert "The letter contains 3 links (more than 2)." in result.output
    assert "bob@example.org" not in result.output
    with app.app_context():
        assert [s.id for s in moderation.held_signatures(SLUG)] == [held]
        assert moderation.held_signatures("another-campaign") == []


@pytest.mark.slow
def test_approve_queues_the_letters_and_the_worker_delivers_them(smtp_app, smtp_server):
    held = held_signature(smtp_app, message=LINKS + "\n<script>alert(1)</script>")
    with smtp_app.app_context():
        assert deliver_due() == 0  # held letters are not due
    assert smtp_server.inbox.envelopes == []

    result = smtp_app.test_cli_runner().invoke(args=["moderation", "approve", str(held)])
    assert result.exit_code == 0, result.output
    assert "5 letters queued" in result.output
    with smtp_app.app_context():
        assert Signature.query.one().status == "accepted"
        assert deliver_due() == 5
        assert {d.status for d in Delivery.query} == {"sent"}
    assert len(smtp_server.inbox.messages) == 5
    message = smtp_server.inbox.messages[0]
    # What the supporter typed goes out as plain text, as typed.
    assert message.get_content_type() == "text/plain"
    assert "<script>alert(1)</script>" in message.get_content()


@pytest.mark.slow
def test_reject_deletes_the_supporter_s_data(app, runner):
    held = held_signature(app)
    result = runner.invoke(args=["moderation", "reject", str(held)], input="y\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert counts() == (0, 0)


def test_reject_asks_first(app, runner):
    held = held_signature(app)
    result = runner.invoke(args=["moderation", "reject", str(held)], input="n\n")
    assert result.exit_code != 0
    with app.app_context():
        assert counts() == (1, 5)


@pytest.mark.slow
def test_only_held_signatures_can_be_approved_or_rejected(app, runner):
    sign(app.test_client())
    with app.app_context():
        accepted = Signature.query.one().id
        for action in (moderation.approve, moderation.reject):
            with pytest.raises(LookupError):
                action(accepted)
            with pytest.raises(LookupError):
                action(9999)
        assert counts() == (1, 5)
    result = runner.invoke(args=["moderation", "reject", "--yes", str(accepted)])
    assert result.exit_code != 0
    assert f"no held signature with id {accepted}" in result.output


def test_approving_twice_queues_once(app):
    held = held_signature(app)
    with app.app_context():
        assert moderation.approve(held).status == "accepted"
        with pytest.raises(LookupError):
            moderation.approve(held)
        assert {d.status for d in Delivery.query} == {"pending"}

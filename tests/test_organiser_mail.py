"""An alert to organisers goes through the outbox: one email each, by the campaign's email backend."""

from conftest import SLUG, add_organiser, smtp_backed_app
from sqlalchemy import select

from app.delivery import ORGANISER_KIND, deliver_due, queue_organiser_emails
from app.extensions import db
from app.models import Delivery


def test_every_organiser_gets_one_email_through_the_smtp_backend(make_app, smtp_server):
    app = smtp_backed_app(make_app, smtp_server)
    add_organiser(app, "one@union.test")
    add_organiser(app, "two@union.test")
    with app.app_context():
        assert queue_organiser_emails(SLUG, app.config, "Target suspended", "Three bounces in a row.") == 2
        db.session.commit()
        deliver_due(app)
        rows = db.session.scalars(select(Delivery).where(Delivery.kind == ORGANISER_KIND)).all()
        assert sorted((row.target_key, row.status) for row in rows) == [
            ("one@union.test", "sent"), ("two@union.test", "sent")]
    messages = smtp_server.inbox.messages
    assert sorted(str(m["To"]) for m in messages) == ["one@union.test", "two@union.test"]
    assert {m["Subject"] for m in messages} == {"Target suspended"}
    assert {m.get_content().strip() for m in messages} == {"Three bounces in a row."}
    assert {m["From"].addresses[0].addr_spec for m in messages} == {app.config["SENDER_ADDRESS"]}


def test_without_organisers_nothing_is_queued(app):
    with app.app_context():
        assert queue_organiser_emails(SLUG, app.config, "s", "b") == 0
        assert db.session.scalars(select(Delivery)).all() == []

"""The same signing and delivery path on a real PostgreSQL (psycopg 3)."""

import pytest
from conftest import SLUG, sign

from app.delivery import deliver_due
from app.extensions import db
from app.models import CampaignTally, Delivery, Signature

pytestmark = pytest.mark.postgres


def test_sign_and_deliver_on_postgresql(postgres_cluster, make_app, smtp_server):
    app = make_app(
        SQLALCHEMY_DATABASE_URI=postgres_cluster(),
        DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
    )
    client = app.test_client()
    assert sign(client, name="Айгүл Сәрсенова", message="Ержанды босатыңыз!").status_code == 303
    with app.app_context():
        assert app.extensions["sqlalchemy"].engines[None].dialect.name == "postgresql"
        assert Signature.query.one().name == "Айгүл Сәрсенова"
        assert deliver_due() == 5
        assert {d.status for d in Delivery.query} == {"sent"}
    assert len(smtp_server.inbox.envelopes) == 5
    assert "Ержанды босатыңыз!" in smtp_server.inbox.messages[0].get_content()


def test_a_repeat_is_rolled_back_and_looks_like_a_new_signer_on_postgresql(postgres_cluster, make_app):
    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster(), SEND_RECEIPT=True)
    sign(app.test_client(), email="anna@example.org")
    prober, newcomer = app.test_client(), app.test_client()
    sign(prober, email="anna@example.org")
    sign(newcomer, email="bob@example.org")
    assert prober.get(f"/fr/{SLUG}/thanks").get_data() == newcomer.get(f"/fr/{SLUG}/thanks").get_data()
    with app.app_context():
        # Two signatures with five letters each; receipts for both, one reminder.
        assert Signature.query.count() == 2
        kinds = sorted(d.kind for d in Delivery.query)
        assert kinds == ["letter"] * 10 + ["receipt"] * 2 + ["reminder"]
        assert db.session.get(CampaignTally, SLUG).accepted == 3


def test_dashboard_counter_and_forget_on_postgresql(postgres_cluster, make_app):
    from conftest import add_organiser, login, person_traces

    from app.models import CampaignTally

    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())
    client = app.test_client()
    sign(client, name="Pg One", email="one@example.org", opt_in="yes")
    sign(client, name="Pg Two", email="two@example.org")
    app.test_cli_runner().invoke(args=["deliver", "--once"])
    add_organiser(app)
    login(client)
    html = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert 'id="fig-signatures">2<' in html and 'id="fig-sent-total">10<' in html
    assert html.count('class="bar"') == 1
    assert app.test_cli_runner().invoke(args=["forget", "one@example.org"]).exit_code == 0
    with app.app_context():
        assert db.session.get(CampaignTally, SLUG).accepted == 1
        assert person_traces(["Pg One", "one@example.org"]) == []


def test_nul_and_replays_never_reach_postgresql(postgres_cluster, make_app):
    """PostgreSQL refuses NUL in text: the form must refuse it first, in every field."""
    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())
    client = app.test_client()
    for field in ("name", "email", "organisation", "country", "message", "number_question", "website"):
        value = {"email": "anna\x00@example.org"}.get(field, "x\x00y")
        assert sign(client, **{field: value}).status_code == 200, field
    with app.app_context():
        assert Signature.query.count() == 0
    # A held letter and a spent one-time token, on PostgreSQL.
    assert sign(client, message="http://a.example http://b.example http://c.example").status_code == 303
    with app.app_context():
        assert Signature.query.one().status == "held"
        assert {d.status for d in Delivery.query} == {"held"}

"""The supporters' side of issue 6: counter, confirmation, consent and unsubscribe,
the letter's status page, privacy page, closed campaigns, forget and purge."""

import hashlib
import re
from datetime import timedelta
from html import unescape

import pytest
from conftest import SLUG, add_campaign, counts, form_fields, person_traces, sign, statements_during, status_path
from sqlalchemy import select, update

from app.extensions import db
from app.models import CampaignTally, Delivery, Signature, utcnow

CONSENT_FR = "Si vous désirez recevoir d’autres messages d’alerte urgents, choisissez « Oui » :"


@pytest.mark.slow
def test_counter_and_goal_bar_without_counting_rows(app, client):
    sign(client, email="a@example.org")
    sign(client, email="b@example.org")
    pages = {}

    def view():
        pages["campaign"] = client.get(f"/en/{SLUG}/").get_data(as_text=True)
        pages["thanks"] = client.get(f"/en/{SLUG}/thanks").get_data(as_text=True)

    statements = [s.lower() for s in statements_during(app, view)]
    assert not [s for s in statements if "count(" in s]
    for html in pages.values():
        assert "2 people have signed so far." in html
        assert '<progress class="goal" max="2000" value="2"' in html
    with app.app_context():
        assert db.session.get(CampaignTally, SLUG).accepted == 2


def test_consent_is_recorded_with_its_version_and_language(app, client):
    page = client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    assert unescape(CONSENT_FR) in unescape(page)
    sign(client, opt_in="yes", email="yes@example.org")
    sign(client, opt_in="no", email="no@example.org")
    with app.app_context():
        yes, no = db.session.scalars(select(Signature).order_by(Signature.id))
        assert yes.consent_version == hashlib.sha256(CONSENT_FR.encode()).hexdigest()
        assert yes.consent_language == "fr" and yes.consented_at is not None
        assert (no.consent_version, no.consent_language, no.consented_at) == (None, None, None)


def unsubscribe_path(app, signature_id):
    from app.links import unsubscribe_url

    with app.test_request_context():
        return unsubscribe_url(db.session.get(Signature, signature_id)).removeprefix("http://localhost")


@pytest.mark.slow
def test_unsubscribe_by_page_and_by_one_click_post(app, client):
    sign(client, opt_in="yes", email="page@example.org")
    sign(client, opt_in="yes", email="oneclick@example.org")
    with app.app_context():
        first, second = db.session.scalars(select(Signature.id).order_by(Signature.id))
        by_page, one_click = unsubscribe_path(app, first), unsubscribe_path(app, second)
    visitor = app.test_client()
    page = visitor.get(by_page)
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Signature, first).opt_in is True  # a GET changes nothing
    done = visitor.post(by_page)
    assert "Vous êtes désabonné" in done.get_data(as_text=True)
    # RFC 8058: the mail client posts List-Unsubscribe=One-Click, no cookie, no token.
    assert app.test_client().post(one_click, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with app.app_context():
        for signature_id in (first, second):
            signature = db.session.get(Signature, signature_id)
            assert signature.opt_in is False and signature.consented_at is None
            assert signature.status == "accepted"  # the signature still counts
    # A forged or altered link opens nothing.
    assert visitor.get(by_page[:-3] + "abc").status_code == 404
    assert visitor.post(f"/fr/unsubscribe/{first}").status_code == 404


@pytest.mark.slow
def test_confirmation_by_post_only_then_letters_go(make_app, smtp_server):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True, DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1",
                   SMTP_PORT=smtp_server.port)
    client = app.test_client()
    runner = app.test_cli_runner()
    assert sign(client, lang="ru", email="ivan@example.org", name="Ivan").status_code == 303
    thanks = client.get(f"/ru/{SLUG}/thanks").get_data(as_text=True)
    assert "/letter/" not in thanks  # the letter's link goes to the mailbox only
    runner.invoke(args=["deliver", "--once"])
    inbox = smtp_server.inbox.messages
    assert len(inbox) == 1  # only the confirmation: letters wait
    mail = inbox[0]
    assert mail["To"].addresses[0].addr_spec == "ivan@example.org"
    assert mail["Content-Language"] == "ru"
    body = mail.get_content()
    link = re.search(r"http://localhost(/ru/confirm/\S+)", body).group(1)
    assert re.search(r"http://localhost/ru/letter/\S+", body)
    with app.app_context():
        assert db.session.scalar(select(Signature.status)) == "unconfirmed"
        assert db.session.get(CampaignTally, SLUG) is None

    # A mail scanner fetching the link confirms nothing.
    scanner = app.test_client()
    page = scanner.get(link)
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    runner.invoke(args=["deliver", "--once"])
    assert len(smtp_server.inbox.messages) == 1
    with app.app_context():
        assert db.session.scalar(select(Signature.status)) == "unconfirmed"

    supporter = app.test_client()
    token = form_fields(supporter.get(link).get_data(as_text=True))["csrf_token"]
    assert supporter.post(link, data={"csrf_token": token}).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Signature.status)) == "accepted"
        assert db.session.get(CampaignTally, SLUG).accepted == 1
    runner.invoke(args=["deliver", "--once"])
    recipients = sorted(m["To"].addresses[0].addr_spec for m in smtp_server.inbox.messages[1:])
    assert len(recipients) == 5 and "ivan@example.org" not in recipients
    # Confirming twice changes nothing.
    supporter.post(link, data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(CampaignTally, SLUG).accepted == 1


@pytest.mark.slow
def test_unconfirmed_signatures_expire(make_app):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True)
    client = app.test_client()
    sign(client, name="Old Unconfirmed", email="old@example.org")
    sign(client, name="New Unconfirmed", email="new@example.org")
    with app.app_context():
        db.session.execute(update(Signature).where(Signature.email == "old@example.org")
                           .values(created_at=utcnow() - timedelta(days=8)))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["purge"])
    assert "deleted 1 unconfirmed" in result.output
    with app.app_context():
        assert person_traces(["Old Unconfirmed", "old@example.org"]) == []
        assert db.session.scalar(select(Signature.email)) == "new@example.org"


@pytest.mark.slow
def test_letter_status_page(app, client, runner):
    sign(client, message="Libérez-le.\n\nMaintenant.")
    link = status_path(app)
    other = app.test_client()  # the link alone opens it, from any browser
    page = other.get(link)
    assert page.headers["X-Robots-Tag"].startswith("noindex")
    assert page.get_data(as_text=True).count("en attente") == 5
    runner.invoke(args=["deliver", "--once"])
    page = other.get(link).get_data(as_text=True)
    assert page.count(">envoyé<") == 5
    # The supporter's own copy: their paragraphs and signature block.
    assert "<p>Libérez-le.</p>" in page and "<p>Maintenant.</p>" in page
    assert "Anna Example<br>Example Workers&#39; Union<br>France" in page
    assert other.get(link.replace("/letter/", "/letter/x")).status_code == 404


@pytest.mark.slow
def test_privacy_page_default_and_from_the_campaign_file(make_app, instance_path):
    app = make_app(RETENTION_DAYS=90)
    client = app.test_client()
    form = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert f'href="/en/{SLUG}/privacy"' in form
    default = client.get(f"/en/{SLUG}/privacy").get_data(as_text=True)
    assert "90 days after the campaign closes" in default and "What we store" in default

    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace(
        '[text.en]\n', '[text.en]\nprivacy = """We keep little.\n\nAsk us to delete it."""\n'))
    custom = make_app().test_client().get(f"/en/{SLUG}/privacy").get_data(as_text=True)
    assert "<p>We keep little.</p>" in custom and "<p>Ask us to delete it.</p>" in custom
    add_campaign(instance_path, "elsewhere", privacy_url='"https://union.example/privacy"')
    client = make_app().test_client()
    assert 'href="https://union.example/privacy"' in client.get("/en/elsewhere/").get_data(as_text=True)
    assert client.get("/en/elsewhere/privacy").headers["Location"] == "https://union.example/privacy"


@pytest.mark.slow
def test_closed_campaign_shows_final_count_and_stores_nothing(make_app, instance_path):
    client = make_app().test_client()
    sign(client, email="early@example.org")
    form = form_fields(client.get(f"/fr/{SLUG}/").get_data(as_text=True))
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace('status = "open"', 'status = "closed"'))
    app = make_app()
    client_after = app.test_client()
    page = client_after.get(f"/fr/{SLUG}/").get_data(as_text=True)
    assert "Cette campagne est terminée" in page
    assert "1 personne l'a signée" in unescape(page)
    assert "<form" not in page
    # A form kept open from before the campaign closed is refused, in French.
    with client.session_transaction() as session:
        cookie_session = dict(session)
    with client_after.session_transaction() as session:
        session.update(cookie_session)
    refused = client_after.post(f"/fr/{SLUG}/", data={**form, "name": "Late", "email": "late@example.org",
                                                       "message": "too late", "opt_in": "no"})
    assert refused.status_code == 403
    assert "Cette campagne est terminée" in refused.get_data(as_text=True)
    with app.app_context():
        assert counts() == (1, 5)
        assert person_traces(["late@example.org"]) == []


@pytest.mark.slow
def test_forget_leaves_no_trace_in_any_table(make_app, instance_path):
    add_campaign(instance_path, "second-campaign")
    app = make_app()
    client = app.test_client()
    runner = app.test_cli_runner()
    sign(client, name="Zebulon Quixote", email="Zebulon.Q@example.org", organisation="Quixote Union",
         message="Free him. Zebulon", opt_in="yes")
    sign(client, slug="second-campaign", name="Zebulon Quixote", email="zebulon.q@example.org")
    sign(client, name="Someone Else", email="else@example.org")
    runner.invoke(args=["deliver", "--once"])
    with app.app_context():
        zebulon = select(Signature.id).where(Signature.name == "Zebulon Quixote")
        db.session.execute(update(Delivery).where(Delivery.target_key == "press@mfa.kz",
                                                  Delivery.signature_id.in_(zebulon))
                           .values(status="failed", last_error="550 no such user zebulon.q@example.org"))
        db.session.commit()
        assert person_traces(["zebulon", "quixote"])
    result = runner.invoke(args=["forget", "ZEBULON.Q@example.org"])
    assert result.exit_code == 0 and "removed 2 signature(s)" in result.output
    with app.app_context():
        assert person_traces(["zebulon", "quixote"]) == []
        # Their sent letters are still counted: target and time only.
        anonymous = db.session.scalars(select(Delivery).where(Delivery.signature_id.is_(None))).all()
        assert len(anonymous) == 8  # 5 + 5 targets, minus the two to press@mfa.kz marked failed
        assert all(d.sent_at and d.target_key and d.campaign and d.status == "sent" for d in anonymous)
        assert db.session.get(CampaignTally, SLUG).accepted == 1
        assert db.session.get(CampaignTally, "second-campaign").accepted == 0
        assert db.session.scalar(select(Signature.email)) == "else@example.org"
    html = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert "1 person has signed so far." in html


@pytest.mark.slow
def test_purge_applies_retention_after_the_campaign_closes(make_app, instance_path):
    app = make_app()
    client = app.test_client()
    sign(client, name="Purged Person", email="purged@example.org", message="Letter of Purged", opt_in="no")
    sign(client, name="Kept Person", email="kept@example.org", message="Letter of Kept", opt_in="yes")
    app.test_cli_runner().invoke(args=["deliver", "--once"])
    # Still open: purge touches nothing.
    assert "0 supporter(s)" in app.test_cli_runner().invoke(args=["purge"]).output
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    closed = (utcnow() - timedelta(days=181)).date().isoformat()
    path.write_text(path.read_text().replace('status = "open"', f'status = "closed"\nclosed_at = {closed}'))
    app = make_app()
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert "1 supporter(s) without opt-in" in result.output
    with app.app_context():
        assert person_traces(["Purged Person", "purged@example.org", "Letter of Purged"]) == []
        kept = db.session.scalar(select(Signature))
        assert (kept.email, kept.opt_in, kept.message) == ("kept@example.org", True, "")
        assert person_traces(["Letter of Kept"]) == []
        assert db.session.scalar(select(Delivery.id).where(Delivery.signature_id.is_(None))) is not None
    # The closed campaign keeps its final count.
    assert "2 personnes l'ont signée" in unescape(app.test_client().get(f"/fr/{SLUG}/").get_data(as_text=True))

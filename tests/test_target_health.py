"""Target health: hard bounces reported by real signed Mailgun webhooks suspend a target;
its letters are held (aiosmtpd shows what went out), every organiser is emailed once,
and ``clamor targets`` (and the dashboard's buttons) resume, reroute or cancel them."""

import re

import pytest
from conftest import ORGANISER, SLUG, add_organiser, csrf_token, login, sign, smtp_backed_app, status_path
from sqlalchemy import select
from test_mailgun_events import KEY, PERMANENT, event_body
from test_totals import assert_true_totals, database_uri  # noqa: F401, F811 (a fixture: SQLite and PostgreSQL)

from app import letter_variable
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, Signature, TargetHealth

TARGET = "press@akorda.kz"
OTHER_ORGANISER = "second@union.test"


def health_app(make_app, smtp_server, **overrides):
    """Letters by the smtp backend to aiosmtpd; Mailgun's webhook on (its events name letters by v:clamor-letter)."""
    return smtp_backed_app(make_app, smtp_server, MAILGUN_WEBHOOK_SIGNING_KEY=KEY, TARGET_HOURLY_CAP=0, **overrides)


def letters_to(app, key=TARGET):
    """``[(id, status, signature's email)]`` of the letters to ``key``, oldest first."""
    with app.app_context():
        return [(d.id, d.status, d.signature.email if d.signature else None) for d in db.session.scalars(
            select(Delivery).where(Delivery.kind == "letter", Delivery.target_key == key).order_by(Delivery.id))]


def report(app, delivery_id, event, **fields):
    """Post one Mailgun event about ``delivery_id``, signed as Mailgun signs it."""
    with app.app_context():
        variable = letter_variable(delivery_id)
    response = app.test_client().post("/hooks/mailgun", json=event_body(event, variable, **fields))
    assert response.status_code == 200


def bounce(app, delivery_id):
    report(app, delivery_id, "failed", **PERMANENT)


def arrived_for(smtp_server, key):
    return sum(key in envelope.rcpt_tos for envelope in smtp_server.inbox.envelopes)


def health(app, key=TARGET):
    with app.app_context():
        row = db.session.get(TargetHealth, key)
        return row and (row.bounces_in_row, row.suspended_at is not None, row.complaint)


def suspended_app(make_app, smtp_server, **overrides):
    """One signature sent; its letter to TARGET bounced once with TARGET_BOUNCE_LIMIT 1: TARGET is suspended."""
    app = health_app(make_app, smtp_server, TARGET_BOUNCE_LIMIT=1, **overrides)
    sign(app.test_client(), email="first@example.org")
    with app.app_context():
        assert deliver_due() == 5
    bounce(app, letters_to(app)[0][0])
    assert health(app)[1]
    return app


@pytest.mark.slow
def test_three_bounces_in_a_row_suspend_a_target_and_resume_sends_its_held_letter(make_app, smtp_server):
    app = health_app(make_app, smtp_server)
    add_organiser(app)
    add_organiser(app, OTHER_ORGANISER)
    supporters = [f"supporter{n}@example.org" for n in range(7)]
    for email in supporters:
        sign(app.test_client(), email=email, name=f"Name{email[9]}")
    with app.app_context():
        assert deliver_due() == 35
    letters = [row[0] for row in letters_to(app)]

    # Two bounces, a delivery, two bounces: never three in a row.
    for n, event in enumerate(["failed", "failed", "delivered", "failed", "failed"]):
        report(app, letters[n], event, **(PERMANENT if event == "failed" else {}))
    assert health(app) == (2, False, "")
    bounce(app, letters[5])
    assert health(app)[:2] == (3, True)

    # Every organiser's email goes out through the outbox, once: a fourth bounce sends no second one.
    bounce(app, letters[6])
    assert health(app)[:2] == (4, True)
    with app.app_context():
        assert deliver_due() == 2
    alerts = [m for m in smtp_server.inbox.messages if m["To"] in (ORGANISER, OTHER_ORGANISER)]
    assert sorted(m["To"] for m in alerts) == sorted([ORGANISER, OTHER_ORGANISER])
    for alert in alerts:
        body = alert.get_body().get_content()
        assert TARGET in alert["Subject"] and TARGET in body
        assert "5.1.1 The email account does not exist" in body
        assert f"clamor targets resume {TARGET}" in body
        assert not any(email in body or email in alert["Subject"] for email in supporters)
        assert "Name" not in body

    # The next signature's letter to the suspended target is held; the others go out.
    sign(app.test_client(), email="late@example.org")
    before = arrived_for(smtp_server, TARGET)
    with app.app_context():
        assert deliver_due() == 4
    assert arrived_for(smtp_server, TARGET) == before
    assert arrived_for(smtp_server, "press@mfa.kz") == 8
    assert letters_to(app)[-1][1:] == ("held", "late@example.org")
    page = app.test_client().get(status_path(app, "late@example.org")).get_data(as_text=True)
    assert 'class="state-on_hold"' in page

    listing = app.test_cli_runner().invoke(args=["targets"])
    assert listing.exit_code == 0
    line = next(line for line in listing.output.splitlines() if line.startswith(TARGET))
    assert re.search(r"yes, since \d{4}-\d\d-\d\d", line)
    assert line.split()[1:8] == ["0", "1", "6", "0", "1", "0", "0"]

    result = app.test_cli_runner().invoke(args=["targets", "resume", TARGET.upper()])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{TARGET} resumed: 1 held letters due now"
    with app.app_context():
        assert deliver_due() == 1
    assert arrived_for(smtp_server, TARGET) == before + 1
    assert health(app)[:2] == (0, False)


@pytest.mark.slow
def test_resume_releases_the_letters_held_for_the_target_and_keeps_those_held_for_a_moderator(
    make_app, smtp_server, hold_filter,
):
    app = suspended_app(make_app, smtp_server, SPAM_FILTERS=hold_filter)
    sign(app.test_client(), email="waiting@example.org")
    sign(app.test_client(), email="moderated@example.org", message="hold me")
    result = app.test_cli_runner().invoke(args=["targets", "resume", TARGET])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{TARGET} resumed: 1 held letters due now"
    assert [row[1:] for row in letters_to(app)[1:]] == [("pending", "waiting@example.org"),
                                                         ("held", "moderated@example.org")]


@pytest.mark.slow
def test_approving_a_held_signature_does_not_release_its_letter_to_a_suspended_target(
    make_app, smtp_server, hold_filter,
):
    app = suspended_app(make_app, smtp_server, SPAM_FILTERS=hold_filter)
    sign(app.test_client(), email="held@example.org", message="hold me")
    with app.app_context():
        signature_id = db.session.scalar(select(Signature.id).where(Signature.email == "held@example.org"))
    result = app.test_cli_runner().invoke(args=["moderation", "approve", str(signature_id)])
    assert result.exit_code == 0, result.output
    before = arrived_for(smtp_server, TARGET)
    with app.app_context():
        assert deliver_due() == 4
    assert arrived_for(smtp_server, TARGET) == before
    assert letters_to(app)[-1][1:] == ("held", "held@example.org")


@pytest.mark.slow
def test_reroute_sends_the_waiting_letters_to_the_corrected_address(make_app, smtp_server, instance_path):
    app = suspended_app(make_app, smtp_server)
    sign(app.test_client(), email="second@example.org")
    sign(app.test_client(), email="third@example.org")
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["targets", "reroute", TARGET, "nobody@akorda.kz"])
    assert refused.exit_code == 1
    assert "Error: nobody@akorda.kz is not a target of campaign" in refused.output
    assert runner.invoke(args=["targets", "reroute", "unknown@example.net", TARGET]).exit_code == 1

    # The organiser corrects the campaign file: the office has a new address.
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace(TARGET, "press-office@akorda.kz"))
    app = health_app(make_app, smtp_server, TARGET_BOUNCE_LIMIT=1)
    assert_true_totals(app, "before reroute")
    result = app.test_cli_runner().invoke(args=["targets", "reroute", TARGET, "press-office@akorda.kz"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"2 letters moved from {TARGET} to press-office@akorda.kz"
    assert_true_totals(app, "after reroute")
    with app.app_context():
        assert deliver_due() == 10
    assert arrived_for(smtp_server, "press-office@akorda.kz") == 2
    assert [row[1] for row in letters_to(app)] == ["bounced"]


@pytest.mark.slow
def test_the_dashboard_reroutes_the_letters_of_an_address_the_campaign_file_no_longer_lists(
    make_app, smtp_server, instance_path,
):
    app = suspended_app(make_app, smtp_server)
    sign(app.test_client(), email="second@example.org")
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace(TARGET, "press-office@akorda.kz"))
    app = health_app(make_app, smtp_server, TARGET_BOUNCE_LIMIT=1)
    add_organiser(app)
    client = app.test_client()
    login(client)
    page = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert f'data-former-target="{TARGET}"' in page
    token = csrf_token(client, f"/admin/{SLUG}/")
    form = {"target": TARGET, "new": "press-office@akorda.kz"}
    assert client.post(f"/admin/{SLUG}/targets/reroute", data=form).status_code == 400
    assert client.post(f"/admin/{SLUG}/targets/reroute", data={**form, "target": "x@example.net",
                                                              "csrf_token": token}).status_code == 400
    answer = client.post(f"/admin/{SLUG}/targets/reroute", data={**form, "csrf_token": token})
    assert answer.status_code == 303
    page = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert f"1 letters moved from {TARGET} to press-office@akorda.kz." in page
    assert "data-former-target" not in page
    with app.app_context():
        assert deliver_due() == 5
    assert arrived_for(smtp_server, "press-office@akorda.kz") == 1


@pytest.mark.slow
def test_retrying_failed_letters_leaves_those_to_a_suspended_target(make_app, scripted_smtp):
    # The first signature's letter to TARGET (the second target) is refused at RCPT: failed.
    controller, inbox = scripted_smtp(rcpt_replies=[None, "550 5.1.1 no such mailbox"])
    app = health_app(make_app, controller, TARGET_BOUNCE_LIMIT=1)
    sign(app.test_client(), email="first@example.org")
    sign(app.test_client(), email="second@example.org")
    with app.app_context():
        assert deliver_due() == 10
    failed, sent = letters_to(app)
    assert failed[1] == "failed" and sent[1] == "sent"
    bounce(app, sent[0])
    result = app.test_cli_runner().invoke(args=["deliveries", "retry", "--failed"])
    assert result.output.strip() == "0 deliveries due now"
    assert [row[1] for row in letters_to(app)] == ["failed", "bounced"]


@pytest.mark.slow
def test_cancel_ends_the_waiting_letters_cancelled_everywhere_and_sends_nothing(
    make_app, smtp_server, database_uri,  # noqa: F811
):
    app = suspended_app(make_app, smtp_server, SQLALCHEMY_DATABASE_URI=database_uri)
    sign(app.test_client(), email="second@example.org")
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["targets", "cancel", "unknown@example.net"])
    assert unknown.exit_code == 1 and unknown.output.startswith("Error: no target unknown@example.net")
    result = runner.invoke(args=["targets", "cancel", TARGET])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"1 letters to {TARGET} cancelled"
    assert_true_totals(app, "after cancel")
    assert letters_to(app)[-1][1:] == ("cancelled", "second@example.org")

    before = arrived_for(smtp_server, TARGET)
    with app.app_context():
        assert deliver_due() == 4
    resumed = runner.invoke(args=["targets", "resume", TARGET]).output.strip()
    assert resumed == f"{TARGET} resumed: 0 held letters due now"
    with app.app_context():
        assert deliver_due() == 0
    assert arrived_for(smtp_server, TARGET) == before
    assert_true_totals(app, "after resume")

    page = app.test_client().get(status_path(app, "second@example.org"))
    html = page.get_data(as_text=True)
    assert '<html lang="fr"' in html and 'class="state-cancelled"' in html
    deliveries = runner.invoke(args=["deliveries"]).output
    header = next(line for line in deliveries.splitlines() if line.startswith("target"))
    row = next(line for line in deliveries.splitlines() if line.startswith(TARGET))
    assert dict(zip(header.split()[1:], row.split()[1:], strict=True))["cancelled"] == "1"
    add_organiser(app)
    client = app.test_client()
    login(client)
    dashboard = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert re.search(rf'data-target="{re.escape(TARGET)}".*?<td class="num cancelled">1</td>', dashboard, re.S)


@pytest.mark.slow
def test_dashboard_shows_the_suspended_target_first_and_its_buttons_need_csrf(make_app, smtp_server):
    app = suspended_app(make_app, smtp_server)
    sign(app.test_client(), email="second@example.org")
    add_organiser(app)
    client = app.test_client()
    login(client)
    page = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    rows = re.findall(r'<tr data-target="([^"]+)"', page)
    assert rows[0] == TARGET and len(rows) == 5
    first = page[page.index(f'<tr data-target="{TARGET}"'):page.index(f'<tr data-target="{rows[1]}"')]
    assert 'class="suspended"' in first and ">Suspended<" in first
    assert "5.1.1 The email account does not exist" in first

    form = {"target": TARGET}
    assert client.post(f"/admin/{SLUG}/targets/resume", data=form).status_code == 400
    assert client.post(f"/admin/{SLUG}/targets/cancel", data=form).status_code == 400
    assert health(app)[1] and letters_to(app)[-1][1] == "held"
    token = csrf_token(client, f"/admin/{SLUG}/")
    assert client.post(f"/admin/{SLUG}/targets/resume", data={**form, "csrf_token": "x"}).status_code == 400
    answer = client.post(f"/admin/{SLUG}/targets/resume", data={**form, "csrf_token": token})
    assert answer.status_code == 303
    assert f"{TARGET} resumed: 1 held letters will be sent." in client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert not health(app)[1] and letters_to(app)[-1][1] == "pending"

    answer = client.post(f"/admin/{SLUG}/targets/cancel", data={**form, "csrf_token": token})
    assert answer.status_code == 303
    assert f"1 letters to {TARGET} cancelled." in client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert letters_to(app)[-1][1] == "cancelled"
    assert client.post(f"/admin/{SLUG}/targets/reroute",
                       data={**form, "new": "nobody@example.net", "csrf_token": token}).status_code == 400


@pytest.mark.slow
def test_a_complaint_flags_the_target_without_suspending_it(make_app, smtp_server):
    app = health_app(make_app, smtp_server)
    sign(app.test_client(), email="first@example.org")
    with app.app_context():
        assert deliver_due() == 5
    report(app, letters_to(app)[0][0], "complained")
    assert health(app) == (0, False, "Mailgun complained:")
    assert letters_to(app)[0][1] == "sent"
    listing = app.test_cli_runner().invoke(args=["targets"]).output
    line = next(line for line in listing.splitlines() if line.startswith(TARGET))
    assert line.split()[-2:] == ["no", "yes"]
    assert f"{TARGET} complaint" in listing
    add_organiser(app)
    client = app.test_client()
    login(client)
    page = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert ">Complaint<" in page

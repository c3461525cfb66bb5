"""The dashboard's running totals (app/totals.py) stay equal to a full count of the rows,
whatever changes them: signing, holding, approving, rejecting, confirming, withdrawing
consent, forgetting, purging, sending, failing and retrying; on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from conftest import SLUG, add_organiser, csrf_token, form_fields, login, sign, unused_port
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, func, select, text, update

from app import create_app, states, totals
from app.admin import counted_figures, dashboard_figures
from app.delivery import claim_due
from app.extensions import db
from app.links import confirm_url, unsubscribe_url
from app.models import Delivery, Figure, Signature, utcnow


def plain(figures):
    """The figures with rows made plain tuples, so both sides compare."""
    out = dict(figures)
    for key in ("per_day", "by_country", "by_language"):
        out[key] = [tuple(row) for row in figures[key]]
    out["targets"] = [{**t, "target": t["target"].key} for t in figures["targets"]]
    return out


def assert_true_totals(app, step):
    with app.app_context():
        db.session.expire_all()
        campaign = app.extensions["clamor"].campaigns[SLUG]
        assert plain(dashboard_figures(campaign)) == plain(counted_figures(campaign)), step


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'totals.sqlite3'}"
    return request.getfixturevalue("postgres_cluster")()


@pytest.mark.slow
def test_totals_match_a_recount_after_every_kind_of_change(make_app, hold_filter, database_uri):
    # Letters first fail: an SMTP port nobody listens on, one attempt allowed.
    app = make_app(SQLALCHEMY_DATABASE_URI=database_uri, SPAM_FILTERS=hold_filter, DELIVERY={"email": "smtp"},
                   SMTP_HOST="127.0.0.1", SMTP_PORT=unused_port(), SMTP_TIMEOUT=2, DELIVERY_MAX_ATTEMPTS=1,
                   TARGET_HOURLY_CAP=0)
    client, runner = app.test_client(), app.test_cli_runner()
    assert_true_totals(app, "empty")
    sign(client, email="a@example.org", country="FR", opt_in="yes")
    sign(client, lang="en", email="b@example.org", country="KZ")
    sign(client, lang="ru", email="c@example.org", country="KZ", opt_in="yes")
    sign(client, email="held1@example.org", message="hold me", opt_in="yes")
    sign(client, email="held2@example.org", message="hold me")
    sign(client, email="a@example.org", country="DE")  # no duplicate_signer here: a second signature
    assert_true_totals(app, "signed and held")

    with app.app_context():
        held = {s.email: s.id for s in db.session.scalars(select(Signature).where(Signature.status == "held"))}
    add_organiser(app)
    login(client)
    token = csrf_token(client)
    assert client.post(f"/admin/moderation/{held['held1@example.org']}/approve",
                       data={"csrf_token": token}).status_code == 303
    assert client.post(f"/admin/moderation/{held['held2@example.org']}/reject",
                       data={"csrf_token": token}).status_code == 303
    assert_true_totals(app, "approved and rejected")

    assert runner.invoke(args=["deliver", "--once"]).exit_code == 0
    with app.app_context():
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
    assert sum(t["failed"] for t in figures["targets"]) == 25 and figures["sent_total"] == 0
    assert_true_totals(app, "failed")

    # One target retried from the dashboard, the rest from the command line; now they go out.
    app.config.update(DELIVERY={"email": "outbox_files"}, DELIVERY_MAX_ATTEMPTS=10)
    target = app.extensions["clamor"].campaigns[SLUG].targets[0].key
    assert client.post(f"/admin/{SLUG}/retry", data={"csrf_token": token, "target": target}).status_code == 303
    assert_true_totals(app, "retried one target")
    assert runner.invoke(args=["deliver", "--once"]).exit_code == 0
    assert runner.invoke(args=["deliveries", "retry", "--failed"]).exit_code == 0
    assert_true_totals(app, "retried the rest")
    assert runner.invoke(args=["deliver", "--once"]).exit_code == 0
    with app.app_context():
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
    assert figures["sent_total"] == 25 and figures["sent_today"] == 25
    assert_true_totals(app, "sent")

    # Reports come in: some letters delivered, some bounced, one bounced after its delivery.
    with app.app_context():
        letters = db.session.scalars(select(Delivery).where(Delivery.kind == "letter").order_by(Delivery.id)).all()
        for delivery in letters[:6]:
            states.delivered(delivery, "Mailgun delivered: 250 OK")
        for delivery in letters[5:9]:
            states.bounced(delivery, "Mailgun failed: 550 no such mailbox")
        db.session.commit()
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
    assert sum(t["delivered"] for t in figures["targets"]) == 5
    assert sum(t["bounced"] for t in figures["targets"]) == 4
    assert sum(t["sent"] for t in figures["targets"]) == 16
    # A delivered or bounced letter was sent: "sent" today and in all stays 25.
    assert figures["sent_total"] == 25 and figures["sent_today"] == 25
    assert_true_totals(app, "delivered and bounced")

    # Confirmation: two sign, one confirms, the other's link expires and is purged.
    app.config["CONFIRM_SUPPORTER_EMAIL"] = True
    sign(client, lang="en", email="confirms@example.org", country="BR", opt_in="yes")
    sign(client, email="never@example.org", country="BR")
    assert_true_totals(app, "unconfirmed")
    with app.app_context():
        confirms = db.session.scalar(select(Signature).where(Signature.email == "confirms@example.org"))
        link = confirm_url(confirms).removeprefix(app.config["BASE_URL"])
        page = client.get(link).get_data(as_text=True)
        token = form_fields(page)["csrf_token"]
    assert client.post(link, data={"csrf_token": token}).status_code == 200
    assert_true_totals(app, "confirmed")
    with app.app_context():
        db.session.execute(update(Signature).where(Signature.email == "never@example.org")
                           .values(created_at=utcnow() - timedelta(days=30)))
        db.session.commit()
    assert runner.invoke(args=["purge"]).exit_code == 0
    assert_true_totals(app, "purged")

    # Withdrawing consent moves the opt-ins; forgetting removes a supporter (their sent letters stay).
    with app.app_context():
        link = unsubscribe_url(db.session.scalar(select(Signature).where(Signature.email == "c@example.org")))
    assert app.test_client().post(link.removeprefix(app.config["BASE_URL"])).status_code == 200
    assert runner.invoke(args=["forget", "b@example.org"]).exit_code == 0
    assert_true_totals(app, "unsubscribed and forgotten")

    with app.app_context():
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
        assert figures["signatures"] == 5 and figures["opt_ins"] == 3 and figures["sent_total"] == 25
        assert dict(figures["by_country"]) == {"FR": 2, "KZ": 1, "BR": 1, "DE": 1}
        # A recount from the rows (the migration's backfill) finds the same totals.
        before = set(db.session.execute(select(Figure.campaign, Figure.name, Figure.key, Figure.n)
                                        .where(Figure.n != 0)).all())
        totals.recount(db.session.connection())
        db.session.commit()
        after = set(db.session.execute(select(Figure.campaign, Figure.name, Figure.key, Figure.n)).all())
        assert before == after


@pytest.mark.slow
def test_the_migration_counts_the_rows_that_exist(app_config, instance_path, tmp_path):
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.sqlite3'}"},
                     instance_path=instance_path)
    directory = app.extensions["migrate"].directory
    # Signed through today's models, then taken back to before the totals:
    # an old schema cannot take today's rows.
    with app.app_context():
        upgrade(directory=directory)
    client = app.test_client()
    sign(client, email="a@example.org", country="FR", opt_in="yes")
    sign(client, lang="en", email="b@example.org", country="KZ")
    with app.app_context():
        downgrade(directory=directory, revision="3cfed682b8e5")
        assert "figure" not in db.inspect(db.engine).get_table_names()
        upgrade(directory=directory)
    assert_true_totals(app, "after the migration")
    with app.app_context():
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
        assert figures["signatures"] == 2 and dict(figures["by_language"]) == {"fr": 1, "en": 1}
        db.engine.dispose()


@pytest.mark.slow
def test_a_workers_claim_touches_no_total(make_app, database_uri):
    """Claiming letters (pending to sending) leaves every figure row alone.

    On PostgreSQL two workers claiming at once each locked figure rows in the
    order of their own letters and deadlocked (seen in CI). Here another
    transaction holds every figure row locked while a worker claims: a claim
    that wrote a figure would wait and time out.
    """
    app = make_app(SQLALCHEMY_DATABASE_URI=database_uri, DELIVERY_WORKER="external")
    client = app.test_client()
    sign(client, email="a@example.org")
    sign(client, lang="en", email="b@example.org")
    with app.app_context():
        before = set(db.session.execute(select(Figure.campaign, Figure.name, Figure.key, Figure.n)).all())
        letters = db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.kind == "letter"))
        assert letters == 10
        if db.engine.dialect.name == "postgresql":
            holder = create_engine(database_uri)
            with holder.connect() as other:
                other.execute(text("SELECT * FROM figure FOR UPDATE"))
                db.session.execute(text("SET lock_timeout = '2s'"))
                ids = claim_due(100, 60)
                other.rollback()
            holder.dispose()
        else:
            changes = db.session.scalar(text("SELECT total_changes()"))
            ids = claim_due(100, 60)
            # total_changes counts rows written by triggers as well: only the claimed rows changed.
            assert db.session.scalar(text("SELECT total_changes()")) - changes == len(ids)
        assert len(ids) == letters
        assert set(db.session.execute(select(Figure.campaign, Figure.name, Figure.key, Figure.n)).all()) == before
        db.session.remove()
        db.engine.dispose()

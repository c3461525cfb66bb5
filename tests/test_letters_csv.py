"""The letters' CSV: ``clamor deliveries --csv`` and the admin download give the same rows (issue 14, point 8)."""

import csv
import io

import pytest
from conftest import SLUG, add_organiser, login, sign, sqlite_plan, statements_during
from sqlalchemy import select, update

from app.extensions import db
from app.letters_csv import COLUMNS
from app.models import Delivery

HEADER = "id,message_id,campaign,target,channel,status,attempts,updated_at,detail"


def cli_csv(app, *args):
    result = app.test_cli_runner().invoke(args=["deliveries", "--csv", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_the_cli_and_the_download_give_the_same_rows(app):
    sign(app.test_client())
    sign(app.test_client(), email="bob@example.org", name="Bob")
    with app.app_context():
        first, second, third = db.session.scalars(select(Delivery.id).order_by(Delivery.id).limit(3)).all()
        db.session.execute(update(Delivery).where(Delivery.id == first).values(
            status="failed", attempts=3,
            last_error="SMTP answered 550 <anna@example.org> unknown; to press@prokuror.kz, cc Bob@Example.org"))
        db.session.execute(update(Delivery).where(Delivery.id == second).values(
            status="sent", note='=HYPERLINK("http://evil.example","click")'))
        db.session.execute(update(Delivery).where(Delivery.id == third).values(status="sent", note="queued; -1+1"))
        db.session.commit()
        message_id = db.session.get(Delivery, first).message_id
    add_organiser(app)
    client = app.test_client()
    login(client)
    response = client.get(f"/admin/{SLUG}/letters.csv")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="deliveries-{SLUG}-')
    assert response.mimetype == "text/csv"
    downloaded = response.get_data(as_text=True)

    printed = cli_csv(app)
    # Line ends aside (the CLI runner's output stream turns CRLF into LF), the same text.
    assert printed.splitlines() == downloaded.splitlines() == cli_csv(app, "--campaign", SLUG).splitlines()
    assert printed.splitlines()[0] == HEADER == ",".join(COLUMNS)
    rows = list(csv.DictReader(io.StringIO(printed)))
    assert len(rows) == 10  # five targets, two supporters
    failed = rows[0]
    assert failed["id"] == str(first) and failed["status"] == "failed" and failed["attempts"] == "3"
    assert failed["message_id"] == message_id.strip("<>") and "<" not in failed["message_id"]
    assert failed["campaign"] == SLUG and failed["channel"] == "email"
    assert failed["target"] == "press@prokuror.kz"
    # The supporters' addresses are gone, the target's own stays.
    assert failed["detail"] == "SMTP answered 550 <supporter> unknown; to press@prokuror.kz, cc <supporter>"
    assert "anna" not in printed.lower() and "bob@" not in printed.lower()
    assert rows[1]["detail"] == """'=HYPERLINK("http://evil.example","click")"""
    assert rows[2]["detail"] == "queued; '-1+1"
    assert all(row["updated_at"].endswith("Z") and row["updated_at"][10] == "T" for row in rows)


@pytest.mark.slow
def test_only_letters_to_targets_are_rows(make_app):
    app = make_app(SEND_RECEIPT=True)
    sign(app.test_client())
    with app.app_context():
        kinds = set(db.session.scalars(select(Delivery.kind)))
    assert kinds == {"letter", "receipt"}
    rows = list(csv.DictReader(io.StringIO(cli_csv(app))))
    assert len(rows) == 5 and "anna" not in cli_csv(app).lower()


def test_the_download_needs_an_organiser(client):
    response = client.get(f"/admin/{SLUG}/letters.csv")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_rows_are_read_a_batch_at_a_time(app, monkeypatch):
    from app import letters_csv

    sign(app.test_client())
    monkeypatch.setattr(letters_csv, "BATCH", 2)  # five letters: batches of 2, 2 and 1
    with app.app_context():
        ids = [row[0] for row in letters_csv.letter_rows(SLUG)]
        assert ids == [str(i) for i in db.session.scalars(select(Delivery.id).order_by(Delivery.id))]


def test_each_batch_of_a_campaigns_letters_reads_on_in_id_order_without_sorting_them_all(app):
    # SQLite keeps no statistics: given the campaign's index, it read all of
    # the campaign's letters and sorted them for every batch of 500.
    from app.letters_csv import letter_rows

    sign(app.test_client())
    with app.app_context():
        rows = []
        seen = statements_during(app, lambda: rows.extend(letter_rows(SLUG)), parameters=True)
        assert len(rows) == 5
        [(statement, parameters)] = [(s, p) for s, p in seen if "FROM delivery" in s]
        plan = sqlite_plan(statement, parameters)
        assert "USING INTEGER PRIMARY KEY (rowid>?)" in plan and "TEMP B-TREE" not in plan, plan

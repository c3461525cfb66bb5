"""app/states/ owns every status change: each legal one changes the row and its counter, each illegal one raises."""

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import ROOT, SLUG, sqlite_plan, statements_during
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from app import privacy, states, tally, totals
from app.delivery import Receipt, queue_deliveries
from app.extensions import db
from app.models import Delivery, Signature, utcnow
from app.states import DeliveryStatus, IllegalTransition, SignatureStatus


def new_signature(app, email="anna@example.org"):
    """A transient signature of the test campaign, with its letters (no status yet)."""
    return Signature(campaign=SLUG, name="Anna", email=email, message="Free him.", language="fr")


def store(app, transition, *args, email="anna@example.org"):
    """A signature made new by ``transition`` (accept, hold, await_confirmation), its letters queued; committed."""
    signature = new_signature(app, email)
    transition(signature, *args)
    campaign = app.extensions["clamor"].campaigns[SLUG]
    queue_deliveries(signature, campaign, app.config, status=states.letter_status(signature))
    db.session.add(signature)
    db.session.commit()
    return signature.id


def letters(signature_id):
    return sorted(db.session.scalars(select(Delivery.status).where(Delivery.signature_id == signature_id)))


def signature_counts():
    """(public counter, dashboard's figure of accepted, of held, of unconfirmed)."""
    status = totals.figures(SLUG).get("status", {})
    return (tally.accepted(SLUG), status.get("accepted", 0), status.get("held", 0), status.get("unconfirmed", 0))


# --- signatures ---------------------------------------------------------------------------


def test_accept_counts_and_queues_the_letters(app):
    with app.app_context():
        signature_id = store(app, states.accept)
        assert db.session.get(Signature, signature_id).status == "accepted"
        assert set(letters(signature_id)) == {"pending"}
        assert signature_counts() == (1, 1, 0, 0)


def test_hold_and_await_confirmation_hold_the_letters_and_count_nothing(app):
    with app.app_context():
        held = store(app, states.hold, "a link", email="h@example.org")
        unconfirmed = store(app, states.await_confirmation, email="u@example.org")
        assert ((db.session.get(Signature, held).status, db.session.get(Signature, held).status_reason)
                == ("held", "a link"))
        assert db.session.get(Signature, unconfirmed).status == "unconfirmed"
        assert set(letters(held)) == set(letters(unconfirmed)) == {"held"}
        assert signature_counts() == (0, 0, 1, 1)


def test_confirm_accepts_counts_and_releases_the_letters(app):
    with app.app_context():
        signature_id = store(app, states.await_confirmation)
        signature = db.session.get(Signature, signature_id)
        assert states.confirm(signature) == SignatureStatus.ACCEPTED
        db.session.commit()
        assert db.session.get(Signature, signature_id).status == "accepted"
        assert set(letters(signature_id)) == {"pending"}
        assert signature_counts() == (1, 1, 0, 0)


def test_confirm_with_a_filters_reason_holds_it_for_a_moderator(app):
    with app.app_context():
        signature_id = store(app, states.await_confirmation, "a link")
        assert states.confirm(db.session.get(Signature, signature_id)) == SignatureStatus.HELD
        db.session.commit()
        assert set(letters(signature_id)) == {"held"}
        assert signature_counts() == (0, 0, 1, 0)


@pytest.mark.slow
def test_approve_accepts_counts_and_releases_the_letters(app):
    with app.app_context():
        signature_id = store(app, states.hold, "a link")
        assert states.approve(signature_id).status == "accepted"
        db.session.commit()
        assert set(letters(signature_id)) == {"pending"}
        assert signature_counts() == (1, 1, 0, 0)


def test_reject_deletes_a_held_signature_and_its_letters(app):
    with app.app_context():
        signature_id = store(app, states.hold, "a link")
        states.reject(signature_id)
        db.session.commit()
        assert db.session.get(Signature, signature_id) is None and letters(signature_id) == []
        assert signature_counts() == (0, 0, 0, 0)


def test_forget_lowers_the_counter_by_the_accepted_and_keeps_sent_letters_anonymous(app):
    with app.app_context():
        accepted = store(app, states.accept, email="a@example.org")
        held = store(app, states.hold, "a link", email="b@example.org")
        first = db.session.scalars(select(Delivery).where(Delivery.signature_id == accepted)).first()
        first.status, first.note, first.sent_at = DeliveryStatus.SENT, "queued for faxing", utcnow()
        db.session.commit()
        sent_id = first.id
        rows = db.session.execute(select(Signature.id, Signature.campaign, Signature.status)).all()
        states.forget(rows)
        db.session.commit()
        db.session.expire_all()
        assert db.session.scalars(select(Signature)).all() == []
        kept = db.session.scalars(select(Delivery)).all()
        assert [(d.id, d.signature_id, d.status, d.note) for d in kept] == [(sent_id, None, "sent", "")]
        assert letters(held) == []
        assert signature_counts() == (0, 0, 0, 0)


@pytest.mark.slow
def test_purge_expires_old_unconfirmed_signatures_a_chunk_per_transaction(app, monkeypatch):
    monkeypatch.setattr(privacy, "PURGE_CHUNK", 2)
    with app.app_context():
        old = [store(app, states.await_confirmation, email=f"old{i}@example.org") for i in range(5)]
        young = store(app, states.await_confirmation, email="young@example.org")
        accepted = store(app, states.accept, email="a@example.org")
        db.session.execute(update(Signature).where(Signature.id.in_(old))
                           .values(created_at=utcnow() - timedelta(days=30)))
        db.session.commit()
        path = db.engine.url.database
        seen = []

        def between(session):
            # Another connection, as a signing request is: it can take the write lock at once.
            other = sqlite3.connect(path, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                if not seen:
                    # Confirmed after purge read the list: it must stay.
                    other.execute("UPDATE signature SET status = 'accepted' WHERE id = ?", (old[-1],))
                other.commit()
                left = other.execute("SELECT count(*) FROM signature WHERE status = 'unconfirmed' AND id IN "
                                     f"({', '.join(map(str, old))})").fetchone()[0]
                orphans = other.execute("SELECT count(*) FROM delivery WHERE signature_id IS NOT NULL "
                                        "AND signature_id NOT IN (SELECT id FROM signature)").fetchone()[0]
            finally:
                other.close()
            seen.append((left, orphans))

        event.listen(Session, "after_commit", between)
        try:
            report = privacy.purge(app.extensions["clamor"].campaigns, app.config)
        finally:
            event.remove(Session, "after_commit", between)
        # A commit after the list is read, then one per chunk of two, each whole.
        assert seen == [(4, 0), (2, 0), (0, 0), (0, 0)]
        assert report.expired_unconfirmed == 4
        assert set(db.session.scalars(select(Signature.id))) == {young, accepted, old[-1]}
        assert all(letters(signature_id) == [] for signature_id in old[:-1])
        assert letters(young) == ["held"] * 5 and letters(accepted) == ["pending"] * 5


def test_removing_signatures_finds_their_letters_by_the_signature_index(app):
    # SQLite keeps no statistics: given a status in the WHERE it may look the
    # rows up by status and read every sent letter of the database.
    with app.app_context():
        # More signatures than there are statuses a sent letter can have: fewer, and SQLite takes signature_id's.
        removed = [store(app, states.accept, email=f"s{i}@example.org") for i in range(5)]
        seen = statements_during(app, lambda: (states.remove(removed), db.session.commit()), parameters=True)
        on_letters = [(s, p) for s, p in seen if s.startswith(("DELETE FROM delivery ", "UPDATE delivery "))]
        assert len(on_letters) == 2
        for statement, parameters in on_letters:
            plan = sqlite_plan(statement, parameters)
            assert "INDEX ix_delivery_signature_id (signature_id=?)" in plan and "status" not in plan, plan
        assert letters(removed[0]) == [] and db.session.get(Signature, removed[0]) is None


@pytest.mark.parametrize("start", ["accept", "hold", "await_confirmation"])
def test_a_signature_with_a_status_cannot_be_made_new_again(app, start):
    with app.app_context():
        signature_id = store(app, states.accept)
        signature = db.session.get(Signature, signature_id)
        before = signature_counts()
        args = () if start == "accept" else ("a reason",)
        with pytest.raises(IllegalTransition, match="from accepted"):
            getattr(states, start)(signature, *args)
        assert (signature.status, signature.status_reason) == ("accepted", "")
        db.session.commit()
        assert signature_counts() == before


@pytest.mark.parametrize(("start", "status"), [("accept", "accepted"), ("hold", "held")])
def test_only_an_unconfirmed_signature_can_be_confirmed(app, start, status):
    with app.app_context():
        signature_id = store(app, getattr(states, start), *(() if start == "accept" else ("a link",)))
        before = (signature_counts(), letters(signature_id))
        signature = db.session.get(Signature, signature_id)
        with pytest.raises(IllegalTransition) as raised:
            states.confirm(signature)
        assert raised.value.from_status == signature.status == status
        db.session.commit()
        assert (signature_counts(), letters(signature_id)) == before


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_only_a_held_signature_can_be_approved_or_rejected(app, decision):
    with app.app_context():
        signature_id = store(app, states.accept)
        before = (signature_counts(), letters(signature_id))
        with pytest.raises(IllegalTransition, match="from accepted to"):
            getattr(states, decision)(signature_id)
        db.session.commit()
        assert db.session.get(Signature, signature_id).status == "accepted"
        assert (signature_counts(), letters(signature_id)) == before
        with pytest.raises(LookupError):
            getattr(states, decision)(signature_id + 1)


# --- deliveries ---------------------------------------------------------------------------


def claimed_letter(app):
    """A letter of an accepted signature, claimed (sending); its target's key."""
    with app.app_context():
        signature_id = store(app, states.accept)
        ids = states.claim(100, timedelta(minutes=5), utcnow())
        db.session.commit()
        assert sorted(letters(signature_id)) == ["sending"] * len(ids)
        delivery = db.session.get(Delivery, ids[0])
        return delivery.id, delivery.target_key


def letter_figures(key):
    return {name: keys[key] for name, keys in totals.figures(SLUG).items()
            if name.startswith("letters:") and key in keys}


def test_claim_takes_due_pending_letters_and_expired_leases_only(app):
    with app.app_context():
        signature_id = store(app, states.accept)
        later = db.session.scalars(select(Delivery).where(Delivery.signature_id == signature_id)).first()
        later.next_attempt_at = utcnow() + timedelta(hours=1)
        db.session.commit()
        ids = states.claim(100, timedelta(minutes=5), utcnow())
        db.session.commit()
        assert later.id not in ids and len(ids) == len(letters(signature_id)) - 1
        assert {d.attempts for d in db.session.scalars(select(Delivery).where(Delivery.id.in_(ids)))} == {1}
        # Claimed again only once the lease ran out.
        assert states.claim(100, timedelta(minutes=5), utcnow()) == []
        assert states.claim(100, timedelta(minutes=5), utcnow() + timedelta(minutes=6)) == ids


def test_sent_records_the_receipt_with_its_note_in_note(app):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        delivery.last_error = "an earlier error"
        states.sent(delivery, Receipt(provider_id="<id@x>", note="queued for faxing"))
        db.session.commit()
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.provider_id, delivery.note, delivery.last_error) == (
            "sent", "<id@x>", "queued for faxing", "")
        assert delivery.lease_until is None and delivery.sent_at is not None
        assert letter_figures(key) == {"letters:sent": 1}


def test_failed_and_requeued_record_the_error(app):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        due = utcnow() + timedelta(minutes=3)
        states.requeued(delivery, "451 greylisted", due)
        db.session.commit()
        assert (delivery.status, delivery.last_error, delivery.next_attempt_at, delivery.attempts) == (
            "pending", "451 greylisted", due, 1)
        assert letter_figures(key) == {"letters:queued": 1}
        delivery.status = DeliveryStatus.SENDING  # claimed again
        states.failed(delivery, "550 no such mailbox")
        db.session.commit()
        assert (delivery.status, delivery.last_error, delivery.lease_until) == ("failed", "550 no such mailbox", None)
        assert letter_figures(key) == {"letters:failed": 1}


def test_waiting_gives_the_attempt_back_and_writes_a_note_not_an_error(app):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        due = utcnow() + timedelta(hours=1)
        states.waiting(delivery, due, "waiting: x had 60 letters in the last hour (TARGET_HOURLY_CAP)")
        db.session.commit()
        assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_error) == (
            "pending", 0, due, "")
        assert delivery.note.startswith("waiting: ")
        assert letter_figures(key) == {"letters:queued": 1}


def test_retry_makes_failed_letters_due_with_fresh_attempts(app):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        states.failed(delivery, "550 no such mailbox")
        delivery.next_attempt_at = utcnow() + timedelta(days=1)
        db.session.commit()
        assert states.retry(Delivery.id == delivery_id) == 1
        db.session.commit()
        db.session.expire_all()
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        assert delivery.next_attempt_at <= utcnow()
        assert letter_figures(key) == {"letters:queued": 1}
        # A pending one is made due only when asked for, and keeps its attempts.
        assert states.retry(Delivery.id == delivery_id) == 0


@pytest.mark.slow
@pytest.mark.parametrize("transition", ["sent", "failed", "requeued", "waiting"])
@pytest.mark.parametrize("status", ["failed", "sent", "pending", "held"])
def test_only_a_claimed_letter_can_be_recorded(app, transition, status):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        delivery.status = status
        db.session.commit()
        before = {column: getattr(delivery, column) for column in ("status", "attempts", "last_error", "note",
                                                                     "next_attempt_at", "sent_at", "provider_id")}
        figures = letter_figures(key)
        args = {"sent": (Receipt(provider_id="x", note="n"),), "failed": ("e",),
                "requeued": ("e", utcnow()), "waiting": (utcnow(), "n")}[transition]
        with pytest.raises(IllegalTransition, match=f"from {status} to"):
            getattr(states, transition)(delivery, *args)
        db.session.commit()
        db.session.expire_all()
        delivery = db.session.get(Delivery, delivery_id)
        assert {column: getattr(delivery, column) for column in before} == before
        assert letter_figures(key) == figures


def sent_letter(app):
    """A letter claimed and sent; ``(id, target key)``."""
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        states.sent(db.session.get(Delivery, delivery_id), Receipt(provider_id="<id@x>", note="accepted"))
        db.session.commit()
    return delivery_id, key


def test_reports_make_a_sent_letter_delivered_or_bounced_and_late_ones_are_notes(app):
    delivery_id, key = sent_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        states.reported(delivery, "452 mailbox full, try later")
        assert (delivery.status, delivery.note, delivery.last_error) == ("sent", "452 mailbox full, try later", "")
        assert states.delivered(delivery, "250 ok") is True
        db.session.commit()
        assert letter_figures(key) == {"letters:delivered": 1}
        # A second delivery report: a note.
        assert states.delivered(delivery, "250 ok again") is False
        assert (delivery.status, delivery.note) == ("delivered", "250 ok again")
        # A bounce after the delivery report wins: the later, worse news.
        assert states.bounced(delivery, "550 no such user") is True
        db.session.commit()
        assert letter_figures(key) == {"letters:bounced": 1}
        # Out of order: a late "delivered", or a second bounce, changes no status.
        assert states.delivered(delivery, "250 late") is False
        assert states.bounced(delivery, "550 again") is False
        db.session.commit()
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.note, delivery.last_error) == ("bounced", "550 again", "")
        assert letter_figures(key) == {"letters:bounced": 1}


@pytest.mark.slow
@pytest.mark.parametrize("transition", ["delivered", "bounced", "reported"])
@pytest.mark.parametrize("status", ["pending", "sending", "failed", "held"])
def test_only_a_sent_letter_takes_a_providers_report(app, transition, status):
    delivery_id, key = claimed_letter(app)
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        delivery.status = status
        db.session.commit()
        with pytest.raises(IllegalTransition, match=f"from {status} to"):
            getattr(states, transition)(delivery, "a report")
        db.session.commit()
        db.session.expire_all()
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.note) == (status, "")


def test_forget_keeps_delivered_and_bounced_letters_anonymous(app):
    with app.app_context():
        accepted = store(app, states.accept, email="a@example.org")
        first, second, *_ = db.session.scalars(select(Delivery).where(Delivery.signature_id == accepted)
                                               .order_by(Delivery.id)).all()
        first.status, first.note, first.sent_at = DeliveryStatus.DELIVERED, "250 ok", utcnow()
        second.status, second.note, second.sent_at = DeliveryStatus.BOUNCED, "550 gone", utcnow()
        db.session.commit()
        states.forget(db.session.execute(select(Signature.id, Signature.campaign, Signature.status)).all())
        db.session.commit()
        db.session.expire_all()
        kept = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [(d.signature_id, d.status, d.note) for d in kept] == [(None, "delivered", ""), (None, "bounced", "")]


def test_a_sent_or_held_letter_cannot_be_retried(app):
    with app.app_context():
        for status in (DeliveryStatus.SENT, DeliveryStatus.HELD, DeliveryStatus.SENDING):
            with pytest.raises(IllegalTransition, match=f"from {status} to pending"):
                states.retry(statuses=(status,))


@pytest.mark.slow
def test_the_enums_are_the_strings_the_database_stores(app):
    assert [str(s) for s in SignatureStatus] == ["accepted", "held", "unconfirmed", "rejected"]
    assert [str(s) for s in DeliveryStatus] == ["pending", "sending", "sent", "delivered", "bounced", "failed",
                                                 "held", "cancelled", "in_digest"]
    with app.app_context():
        store(app, states.accept)
        stored = db.session.scalar(select(Signature.status))
        assert type(stored) is str and stored == SignatureStatus.ACCEPTED


#: Files that may call tally.add: the owner of the transitions (and the
#: counter's own module, the models and migrations, which only name it).
ALLOWED = {"app/states/signatures.py", "app/states/deliveries.py", "app/tally.py", "app/models.py", "app/totals.py"}


def test_only_app_states_calls_tally_add():
    callers = []
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if name in ALLOWED or name.startswith("app/migrations/"):
            continue
        if re.search(r"\btally\s*\.\s*add\b|\bfrom\s+\S*tally\s+import\s+[^\n]*\badd\b", path.read_text()):
            callers.append(name)
    assert callers == []
    # The search finds a call where there is one.
    assert re.search(r"\btally\s*\.\s*add\b", Path(ROOT / "app" / "states" / "signatures.py").read_text())


def test_the_hourly_cap_counts_delivered_and_bounced_letters_as_sent(app):
    from app.delivery.queue import sent_in_last_hour

    with app.app_context():
        accepted = store(app, states.accept)
        target = db.session.scalars(select(Delivery).where(Delivery.signature_id == accepted)).first().target_key
        for status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED):
            signature_id = store(app, states.accept, email=f"{status}@example.org")
            letter = db.session.scalar(select(Delivery).where(Delivery.signature_id == signature_id,
                                                              Delivery.target_key == target))
            letter.status, letter.sent_at = status, utcnow()
        db.session.commit()
        assert db.session.scalar(select(func.count()).where(sent_in_last_hour(target))) == 3


@pytest.mark.parametrize("outcome", ["requeued", "waiting"])
def test_a_letter_put_back_after_its_target_was_suspended_is_held_not_pending(app, outcome):
    """A letter at the server while its target is suspended comes back held, with the other letters to it."""
    from app.models import TargetHealth

    with app.app_context():
        store(app, states.accept)
        ids = states.claim(100, timedelta(minutes=5), utcnow())
        db.session.commit()
        letter, other = db.session.get(Delivery, ids[0]), db.session.get(Delivery, ids[1])
        db.session.add(TargetHealth(target_key=letter.target_key, bounces_in_row=3, last_bounce="550 gone",
                                    suspended_at=utcnow()))
        later = utcnow() + timedelta(minutes=5)
        for delivery in (letter, other):
            if outcome == "requeued":
                states.requeued(delivery, "451 try later", later)
            else:
                states.waiting(delivery, later, "waiting: cap")
        db.session.commit()
        assert (letter.status, letter.note) == ("held", "target suspended: 550 gone")
        assert other.status == "pending"  # its target is not suspended

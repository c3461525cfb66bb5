"""Daily digests (``overflow = "digest"``): letters the cap held back go as one email that keeps every signer.

Real parts throughout: the web form, the worker, an aiosmtpd server on
loopback, ``clamor deliver`` processes racing, PostgreSQL where it says so.
"""

import collections
import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pypdf
import pytest
import time_machine
from conftest import FAX_CAMPAIGN, SLUG, sign, smtp_backed_app, status_path
from sqlalchemy import text
from test_faults import start_worker

from app import ConfigError, digests, states, totals
from app.campaigns import CampaignError, load_campaign
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery

SENDER = "campaigns@clamor.test"
EDITED = ("Monsieur le Président,\n\nJe suis infirmière à Liège et je vous écris en mon nom propre :\n"
          "libérez Erzhan Elshibayev, dont le seul tort est d'avoir défendu ses collègues.\n\nMarie")
#: The 12th signer wrote their own letter; the first two go alone (TARGET_HOURLY_CAP = 2).
EDITOR = 11


def digest_campaign(instance_path):
    """The example campaign (five email targets) with ``overflow = "digest"``."""
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    source = path.read_text().replace('sender = "LabourStart"', 'sender = "LabourStart"\noverflow = "digest"', 1)
    path.write_text(source)
    return path


def digest_app(make_app, instance_path, controller, **overrides):
    digest_campaign(instance_path)
    return smtp_backed_app(make_app, controller, TARGET_HOURLY_CAP=2, DIGEST_AFTER=5, **overrides)


def french_letter(app):
    with app.app_context():
        return app.extensions["clamor"].campaigns[SLUG].text("fr").letter


def sign_twelve(app):
    """Twelve supporters sign on the French page; all but :data:`EDITOR` keep the campaign's letter."""
    letter = french_letter(app)
    for n in range(12):
        response = sign(app.test_client(), name=f"Signer {n:02d}", email=f"s{n}@example.org",
                        organisation=f"Union {n}", country="BE", message=EDITED if n == EDITOR else letter)
        assert response.status_code == 303


def drain(app):
    with app.app_context():
        while deliver_due():
            pass


def later(seconds=10):
    """The clock ``seconds`` ahead (and ticking): past DIGEST_AFTER, within the cap's hour."""
    return time_machine.travel(datetime.now(UTC) + timedelta(seconds=seconds), tick=True)


def by_target(messages):
    found = collections.defaultdict(lambda: {"singles": [], "digests": []})
    for message in messages:
        kind = "digests" if message["Reply-To"].addresses[0].addr_spec == SENDER else "singles"
        found[message["To"].addresses[0].addr_spec][kind].append(message)
    return found


def text_of(message):
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def digest_names(message):
    return {f"Signer {n:02d}" for n in range(12) if f"Signer {n:02d}, Union {n}, Belgique" in text_of(message)}


@pytest.mark.slow
def test_each_target_gets_two_letters_and_one_digest_of_the_other_ten(make_app, instance_path, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = digest_app(make_app, instance_path, controller)
    sign_twelve(app)
    drain(app)
    assert len(inbox.messages) == 10  # two per target; ten letters each wait for the cap
    with later():
        drain(app)
    targets = by_target(inbox.messages)
    assert len(targets) == 5
    for key, got in targets.items():
        assert len(got["singles"]) == 2 and len(got["digests"]) == 1, key
        (digest,) = got["digests"]
        alone = {m["Reply-To"].addresses[0].display_name for m in got["singles"]}
        assert alone == {"Signer 00", "Signer 01"}
        assert digest_names(digest) == {f"Signer {n:02d}" for n in range(2, 12)}
        body = text_of(digest)
        # The cover in the campaign's language, the letter once, the one letter in its own words in full.
        assert body.startswith("10 personnes vous ont envoyé cette lettre entre le ")
        assert body.count(french_letter(app).strip()) == 1
        assert EDITED in body
        assert "1 d’entre elles a écrit la lettre avec ses propres mots" in body
        assert str(digest["Subject"]) == "Libérez Erzhan Elshibayev (10 lettres)"
        # No supporter's address anywhere in the digest.
        assert "@example.org" not in digest.as_string()
    with app.app_context():
        letters = Delivery.query.filter_by(kind="letter").all()
        assert len(letters) == 60 and {d.status for d in letters} == {"sent"}
        assert sum(d.digest_id is not None for d in letters) == 50
        digest_rows = Delivery.query.filter_by(kind="digest").all()
        assert len(digest_rows) == 5 and {d.status for d in digest_rows} == {"sent"}
        # The dashboard counts every supporter's letter, not the digest.
        assert totals.figures(SLUG)["letters:sent"] == {key: 12 for key in targets}
    page = app.test_client().get(status_path(app, f"s{EDITOR}@example.org")).get_data(as_text=True)
    assert page.count("dans un résumé de 10 lettres le ") == 5


@pytest.mark.slow
def test_a_supporter_forgotten_before_the_digest_goes_is_not_in_it(make_app, instance_path, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = digest_app(make_app, instance_path, controller)
    sign_twelve(app)
    drain(app)
    with later():
        with app.app_context():
            assert digests.gather_due(app.extensions["clamor"], app.config) == 5
        # Gathered, not sent yet: the supporter asks to be forgotten.
        result = app.test_cli_runner().invoke(args=["forget", "s5@example.org"])
        assert result.exit_code == 0, result.output
        drain(app)
    for got in by_target(inbox.messages).values():
        (digest,) = got["digests"]
        assert digest_names(digest) == {f"Signer {n:02d}" for n in range(2, 12) if n != 5}
        assert text_of(digest).startswith("9 personnes")
    assert not any("Signer 05" in m.as_string() or "s5@example.org" in m.as_string() for m in inbox.messages)


@pytest.mark.slow
def test_a_digest_that_fails_for_now_is_retried_whole(make_app, instance_path, scripted_smtp):
    # Ten letters go, then the first digest is refused for now.
    controller, inbox = scripted_smtp(data_replies=[None] * 10 + ["451 4.3.0 try again later"])
    app = digest_app(make_app, instance_path, controller)
    sign_twelve(app)
    drain(app)
    with later():
        drain(app)
        with app.app_context():
            retried = Delivery.query.filter_by(kind="digest", status="pending").one()
            assert "451" in retried.last_error
            # Its letters wait with it, in the digest: none goes alone meanwhile.
            assert {d.status for d in Delivery.query.filter_by(digest_id=retried.id)} == {"in_digest"}
        page = app.test_client().get(status_path(app, f"s{EDITOR}@example.org")).get_data(as_text=True)
        assert "dans le prochain résumé des lettres à ce destinataire" in page
        with app.app_context():
            db.session.execute(db.update(Delivery).where(Delivery.id == retried.id)
                               .values(next_attempt_at=datetime.now(UTC).replace(tzinfo=None)))
            db.session.commit()
        drain(app)
    assert len(inbox.refused) == 1
    ids = collections.Counter(m["Message-ID"] for m in inbox.messages)
    assert set(ids.values()) == {1} and len(ids) == 15
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"sent"}


@pytest.mark.slow
def test_a_digest_over_the_size_limit_is_split_with_nobody_twice(make_app, instance_path, scripted_smtp):
    controller, inbox = scripted_smtp()
    digest_campaign(instance_path)
    app = smtp_backed_app(make_app, controller, TARGET_HOURLY_CAP=2, DIGEST_AFTER=5, DIGEST_MAX_BYTES=3000)
    for n in range(12):
        own = f"Lettre de {n:02d} : " + "libérez Erzhan " * 60  # ~900 characters each, all edited
        assert sign(app.test_client(), name=f"Signer {n:02d}", email=f"s{n}@example.org",
                    organisation=f"Union {n}", country="BE", message=own).status_code == 303
    drain(app)
    with later():
        drain(app)
    for got in by_target(inbox.messages).values():
        assert len(got["digests"]) > 1
        named = [name for digest in got["digests"] for name in digest_names(digest)]
        assert sorted(named) == [f"Signer {n:02d}" for n in range(2, 12)]
        assert all(len(text_of(digest).encode()) < 3000 + 2000 for digest in got["digests"])


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_workers_gather_and_send_without_a_duplicate(database, request, make_app, instance_path,
                                                          scripted_smtp):
    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_cluster")()
    controller, inbox = scripted_smtp()
    digest_campaign(instance_path)
    app = make_app(**overrides)
    sign_twelve(app)
    settings = {"TARGET_HOURLY_CAP": 2, "DIGEST_AFTER": 5, "DELIVERY_BATCH_SIZE": 7}

    def two_workers():
        workers = [start_worker(app, instance_path, controller.port, "--once", **settings) for _ in range(2)]
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err

    two_workers()
    time.sleep(5.5)  # past DIGEST_AFTER: the letters the cap held back are due for a digest
    two_workers()
    ids = collections.Counter(m["Message-ID"] for m in inbox.messages)
    assert set(ids.values()) == {1}
    for key, got in by_target(inbox.messages).items():
        # Each worker counts the cap in its own batch (app/delivery/worker.py): two may each send up to it.
        assert 2 <= len(got["singles"]) <= 4 and got["digests"], key
        named = [m["Reply-To"].addresses[0].display_name for m in got["singles"]]
        named += [name for digest in got["digests"] for name in digest_names(digest)]
        assert sorted(named) == [f"Signer {n:02d}" for n in range(12)], key
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"sent"}


def lock_waiters(app):
    """How many of the PostgreSQL database's sessions wait for a lock another holds."""
    with app.app_context(), db.engine.connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock' AND datname = current_database()"))


def wait_for_waiters(app, count):
    deadline = time.monotonic() + 20
    while lock_waiters(app) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_waiters(app) == count


@pytest.mark.slow
@pytest.mark.postgres
def test_two_gatherings_at_once_give_a_target_one_digest_on_postgresql(postgres_cluster, make_app, instance_path,
                                                                       scripted_smtp):
    """Worker A is inside its gathering when worker B, whose clock is later, gathers too: B makes no second digest.

    The test holds A there by a row lock on one of the letters A gathers.
    Counting the target's digests, as before, B saw none (A's was not
    committed), gathered the letters A's clock had not reached yet, and the
    target got two digests in one period. Now B waits for A's claim of the
    period, finds it taken and leaves those letters for the next digest.
    """
    controller, _ = scripted_smtp()
    app = digest_app(make_app, instance_path, controller, SQLALCHEMY_DATABASE_URI=postgres_cluster())
    sign_twelve(app)
    drain(app)  # two letters a target go; ten wait for the cap
    target = "press@mfa.kz"
    base = datetime(2026, 12, 3, 9, 0)
    with app.app_context():
        waiting = [d.id for d in Delivery.query.filter_by(target_key=target, status="pending").order_by(Delivery.id)]
        assert len(waiting) == 10
        # Signers 2 to 6 waited since 9:00, 7 to 11 since 9:00:03; any other target's letters since long before.
        pending = db.update(Delivery).where(Delivery.status == "pending")
        db.session.execute(pending.values(waiting_since=base - timedelta(days=1)))
        db.session.execute(db.update(Delivery).where(Delivery.id.in_(waiting[:5])).values(waiting_since=base))
        db.session.execute(db.update(Delivery).where(Delivery.id.in_(waiting[5:])).values(
            waiting_since=base + timedelta(seconds=3)))
        db.session.commit()
        state, config = app.extensions["clamor"], app.config
    made = {}

    def gather(name, seconds):
        with app.app_context():
            made[name] = digests.gather_due(state, config, now=base + timedelta(seconds=seconds))

    with app.app_context(), db.engine.connect() as holder:
        holder.execute(text("SELECT id FROM delivery WHERE id = :id FOR UPDATE"), {"id": waiting[0]})
        first = threading.Thread(target=gather, args=("A", 6))  # DIGEST_AFTER = 5: sees signers 2 to 6
        first.start()
        wait_for_waiters(app, 1)
        second = threading.Thread(target=gather, args=("B", 9))  # sees signers 2 to 11
        second.start()
        wait_for_waiters(app, 2)
        holder.rollback()
    first.join(30)
    second.join(30)
    with app.app_context():
        per_target = collections.Counter(d.target_key for d in Delivery.query.filter_by(kind="digest"))
        assert per_target == {key: 1 for key in per_target} and len(per_target) == 5
        assert made["A"] + made["B"] == 5
        letters = {d.id: (d.status, d.digest_id is not None) for d in Delivery.query.filter(Delivery.id.in_(waiting))}
    # The letters A's clock reached are in its digest; the later ones wait, for the next period's digest.
    assert [letters[i] for i in waiting] == [("in_digest", True)] * 5 + [("pending", False)] * 5


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_digests_letters_follow_its_status_from_any_statement(database, request, make_app, instance_path):
    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_cluster")()
    digest_campaign(instance_path)
    app = make_app(**overrides)
    for n in range(3):
        assert sign(app.test_client(), name=f"Signer {n:02d}", email=f"s{n}@example.org").status_code == 303
    with app.app_context():
        digest = Delivery(campaign=SLUG, kind="digest", target_key="press@mfa.kz", channel="email",
                          status="pending", message_id="<d@clamor.test>")
        db.session.add(digest)
        db.session.flush()
        letters = [d.id for d in Delivery.query.filter_by(target_key="press@mfa.kz", kind="letter")]
        assert states.into_digest(digest.id, letters) == 3
        db.session.commit()
        # A claim (pending to sending) leaves the letters as they are: in the digest.
        db.session.execute(db.update(Delivery).where(Delivery.id == digest.id).values(status="sending"))
        assert {d.status for d in Delivery.query.filter(Delivery.id.in_(letters))} == {"in_digest"}
        sent_at = datetime(2026, 12, 2, 9, 30)
        db.session.execute(db.update(Delivery).where(Delivery.id == digest.id).values(status="sent", sent_at=sent_at))
        db.session.commit()
        assert {(d.status, d.sent_at) for d in Delivery.query.filter(Delivery.id.in_(letters))} == {("sent", sent_at)}
        db.session.execute(db.update(Delivery).where(Delivery.id == digest.id).values(status="bounced"))
        db.session.commit()
        assert {d.status for d in Delivery.query.filter(Delivery.id.in_(letters))} == {"bounced"}
        assert totals.figures(SLUG)["letters:bounced"] == {"press@mfa.kz": 3}
        # An organiser cancelling a target's waiting letters cancels its digest, and the letters in it.
        other = Delivery(campaign=SLUG, kind="digest", target_key="press@akorda.kz", channel="email",
                         status="pending", message_id="<e@clamor.test>")
        db.session.add(other)
        db.session.flush()
        waiting = [d.id for d in Delivery.query.filter_by(target_key="press@akorda.kz", kind="letter")]
        assert states.into_digest(other.id, waiting) == 3
        assert states.cancel("press@akorda.kz") == 1
        db.session.commit()
        assert {d.status for d in Delivery.query.filter(Delivery.id.in_(waiting))} == {"cancelled"}


@pytest.mark.parametrize(("key", "value"), [("DIGEST_AFTER", 0), ("DIGEST_AFTER", "1 day"), ("DIGEST_MAX_BYTES", -1),
                                          ("DIGEST_MAX_BYTES", None)])
def test_the_digest_settings_are_checked_at_start_up(make_app, key, value):
    # Before, a bad DIGEST_AFTER was found by the worker's first gathering, and
    # stopped every batch after it; DIGEST_MAX_BYTES was not checked at all.
    with pytest.raises(ConfigError, match=f"{key} must be a positive number, not {value!r}"):
        make_app(**{key: value})


def test_overflow_must_be_wait_or_digest(instance_path):
    default = load_campaign(instance_path / "campaigns" / f"{SLUG}.toml")
    assert default.overflow == "wait"
    path = digest_campaign(instance_path)
    assert load_campaign(path).overflow == "digest"
    path.write_text(path.read_text().replace('overflow = "digest"', 'overflow = "summary"'))
    with pytest.raises(CampaignError, match="overflow: must be one of 'wait', 'digest', not 'summary'"):
        load_campaign(path)


@pytest.mark.slow
def test_a_faxed_target_gets_its_digest_as_a_pdf_in_its_language(make_app, instance_path, smtp_server):
    campaign = FAX_CAMPAIGN.replace('sender = "LabourStart"', 'sender = "LabourStart"\noverflow = "digest"')
    (instance_path / "campaigns" / "fax-test.toml").write_text(campaign)
    app = make_app(DELIVERY={"email": "outbox_files", "fax": "fax_email"}, FAX_VIA="smtp",
                   SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, FAX_ADDRESS_TEMPLATE="{e164}@fax.tc",
                   FAX_SENDER="fax@clamor.test", TARGET_HOURLY_CAP=1, DIGEST_AFTER=5)
    names = ["Айгүл Сәрсенова", "Ержан Қасымов", "Гүлнар Өмірбекова", "Нұрлан Әбенов"]
    for n, name in enumerate(names):
        assert sign(app.test_client(), lang="kk", slug="fax-test", name=name, country="KZ", organisation="",
                    email=f"k{n}@example.kz", message="Құрметті Президент!").status_code == 303
    drain(app)
    with later():
        drain(app)
    single, digest = smtp_server.inbox.messages
    pdf = next(digest.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.get_content())).pages)
    assert " ".join("3 адам сізге бұл хатты".split()) in " ".join(text.split())
    for name in names[1:]:
        assert f"{name}, Қазақстан" in text
    assert names[0] not in text and "example.kz" not in text

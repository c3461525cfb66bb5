"""Daily digests: the letters a target's cap held back for a day, as one email that keeps every signer.

A campaign with ``overflow = "digest"`` does not let a viral day trickle into
a press office for months at TARGET_HOURLY_CAP. A letter that has waited
for its target's cap longer than DIGEST_AFTER seconds (from
``waiting_since``) is gathered, by the worker before each claim
(:func:`gather_due`), into that target's next digest: a
:class:`~app.models.Delivery` of kind ``digest``, queued like any letter
(the cap does not hold it back: it counts as one letter; office hours do
hold it). A target's letters are gathered at most once per DIGEST_AFTER
seconds, or per day when that is longer; a digest larger than
DIGEST_MAX_BYTES is split, so one gathering may make several. The email
itself is built by :mod:`app.delivery.digest_letter`.

That period is claimed, not checked: the first write of the transaction
that gathers a target's letters is one upsert of its
:class:`~app.models.DigestSlot` row that moves ``last_gathered_at`` to now
only when it is older than the period (:func:`_claim_period`), and the
transaction ends in the commit that makes the digests. A second worker
claiming the same target meanwhile waits for that commit (PostgreSQL: the
row's lock, after which it reads the row as committed; SQLite: one writer
at a time) and finds the period taken. Counting the target's digests
first, as before, let two workers both count none and each make one. A
claim whose gathering found no letter left (other workers took them) is
rolled back with it: the target had no digest, so its period is still free.

Each gathered letter points at its digest (``digest_id``) with the status
``in_digest``, and takes the digest's status from then on: sent, failed,
delivered, bounced, cancelled. That is a trigger on ``delivery``
(:func:`install_triggers`, made by the migration), for the reason the
dashboard's totals are triggers (:mod:`app.totals`): a digest's status
changes in many places (the worker, bounces, webhooks, ``clamor targets``),
some of them bulk statements, and a trigger sees every one. The letters'
own rows then move the running totals, so the dashboard counts each
supporter's letter, not the digest.

Gathering is one ``UPDATE`` whose ``WHERE`` repeats "pending, in no digest"
(:func:`app.states.into_digest`): a letter a worker claimed meanwhile stays
out, and a second worker gathering at the same moment finds it gone, so
nothing is in two digests and no letter goes both alone and in one. A
supporter forgotten before the digest goes has their letters deleted
(:func:`app.states.remove`): the digest is built from the letters still in
it when it is sent.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, exists, func, select, text
from sqlalchemy.orm import selectinload

from . import states
from .delivery.letters import new_message_id
from .extensions import db, upsert_insert
from .models import OVERFLOW_WHERE, Delivery, DigestSlot, Signature, utcnow
from .states import DeliveryStatus

#: A digest goes at most once a day, or every DIGEST_AFTER seconds when that is shorter.
DAY = 86400
#: What one signer adds to a digest besides their own words (name line, separators), about.
SIGNER_BYTES = 120


def positive_setting(config: Mapping[str, Any], key: str) -> float:
    """``config[key]`` as a positive number (seconds, bytes); ValueError naming ``key`` otherwise."""
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key} must be a positive number, not {value!r}")
    return value


def gather_due(state: Any, config: Mapping[str, Any], now: datetime | None = None) -> int:
    """Gather the letters of ``overflow = "digest"`` campaigns that waited DIGEST_AFTER into digests; commit.

    Returns how many digests were made. Each target's gathering is one
    transaction, committed, or rolled back when the target's period was
    taken or no letter was left to gather. ``state`` is the app's Clamor
    state (its campaigns). Needs an app context.
    """
    campaigns = {slug: c for slug, c in state.campaigns.items() if c.overflow == "digest"}
    if not campaigns:
        return 0
    after = positive_setting(config, "DIGEST_AFTER")
    now = now or utcnow()
    waited = _overflowing(list(campaigns), now - timedelta(seconds=after))
    since = now - timedelta(seconds=min(after, DAY))
    made = 0
    for slug, target_key in _due_targets(waited, since):
        target = campaigns[slug].target(target_key)
        if target is None:
            continue
        gathered = 0
        if _claim_period(slug, target_key, now, since):
            gathered = _gather(slug, target, waited, now, config)
        if gathered:
            db.session.commit()
        else:
            db.session.rollback()
        made += gathered
    return made


def _due_targets(waited, since):
    """(campaign, target key) of the targets with letters in ``waited`` and no gathering after ``since``.

    The slot is read here only so that a worker does not write a claim for
    every such target before every batch; :func:`_claim_period` decides.
    """
    gathered = exists().where(DigestSlot.campaign == waited.c.campaign, DigestSlot.target_key == waited.c.target_key,
                              DigestSlot.last_gathered_at > since)
    return db.session.execute(select(waited.c.campaign, waited.c.target_key).where(~gathered).distinct()).all()


def _overflowing(slugs, before):
    """The letters of campaigns ``slugs`` the cap has held back since before ``before``, as a subquery."""
    return (
        select(Delivery.id, Delivery.campaign, Delivery.target_key)
        # The partial index's own condition first, so SQLite uses ix_delivery_overflow.
        .where(text(OVERFLOW_WHERE), Delivery.campaign.in_(slugs), Delivery.waiting_since <= before,
               Delivery.kind == "letter", Delivery.digest_id.is_(None))
        .subquery()
    )


def _claim_period(slug, target_key, now, since):
    """Claim the digest period of ``target_key`` in ``slug`` for this transaction; False: it was taken after ``since``.

    One upsert, the transaction's first write, so that it takes the lock
    (the row's on PostgreSQL, the database's on SQLite) that a concurrent
    claim waits for until this transaction ends.
    """
    slots = DigestSlot.__table__
    claim = upsert_insert(db.session.get_bind().dialect.name)(slots).values(
        campaign=slug, target_key=target_key, last_gathered_at=now)
    claim = claim.on_conflict_do_update(index_elements=[slots.c.campaign, slots.c.target_key],
                                        set_={"last_gathered_at": claim.excluded.last_gathered_at},
                                        where=slots.c.last_gathered_at <= since)
    # RETURNING, not rowcount: through SQLAlchemy, psycopg reports rowcount -1
    # for this upsert on PostgreSQL (taken or not); a returned row is a claim.
    return db.session.connection().execute(claim.returning(slots.c.campaign)).first() is not None


def _gather(slug, target, waited, now, config):
    """Make the digests of ``target``'s waiting letters, split at DIGEST_MAX_BYTES; return how many were made."""
    size = (func.length(Signature.name) + func.length(Signature.organisation)
            + case((Signature.edited, func.length(Signature.message)), else_=0))
    rows = db.session.execute(
        select(Delivery.id, size).join(Signature, Signature.id == Delivery.signature_id)
        .where(Delivery.id.in_(select(waited.c.id).where(waited.c.campaign == slug,
                                                         waited.c.target_key == target.key)))
        .order_by(Delivery.id)
    ).all()
    made = 0
    for ids in _split(rows, config["DIGEST_MAX_BYTES"]):
        digest = Delivery(campaign=slug, kind="digest", target_key=target.key, channel=target.channel,
                          status=DeliveryStatus.PENDING, next_attempt_at=now,
                          message_id=new_message_id(config["SENDER_ADDRESS"]))
        db.session.add(digest)
        db.session.flush()
        if states.into_digest(digest.id, ids):
            made += 1
        else:
            # Every letter was claimed or gathered by another worker meanwhile.
            db.session.delete(digest)
    return made


def _split(rows, limit):
    """``rows`` ((id, characters of the signer's words)) as lists of ids, each about ``limit`` bytes at most.

    A character counts two bytes (Cyrillic in UTF-8); a single signer over
    the limit still makes one digest of their own.
    """
    chunk, used = [], 0
    for delivery_id, characters in rows:
        cost = 2 * (characters or 0) + SIGNER_BYTES
        if chunk and used + cost > limit:
            yield chunk
            chunk, used = [], 0
        chunk.append(delivery_id)
        used += cost
    if chunk:
        yield chunk


def members(digest_id: int) -> list[Delivery]:
    """The letters in digest ``digest_id`` (their signatures loaded), oldest first."""
    return list(db.session.scalars(
        select(Delivery).where(Delivery.digest_id == digest_id, Delivery.kind == "letter").order_by(Delivery.id)
        .options(selectinload(Delivery.signature))))


def digest_summary(digest_id: int) -> tuple[int, str | None, datetime | None]:
    """(letters in the digest ``digest_id``, its status, when it was sent or None): for the supporter's page."""
    count = db.session.scalar(select(func.count()).where(Delivery.digest_id == digest_id))
    row = db.session.execute(select(Delivery.status, Delivery.sent_at).where(Delivery.id == digest_id)).first()
    return (count, *row) if row is not None else (count, None, None)


#: The letters' status while their digest is pending, sending or held, and after.
_FOLLOWED = "CASE WHEN {r}.status IN ('pending', 'sending', 'held') THEN 'in_digest' ELSE {r}.status END"
_CHANGED = ("{r}.status", "{r}.sent_at", "{r}.target_key", "{r}.channel")
_FOLLOW = ("UPDATE delivery SET status = " + _FOLLOWED.format(r="NEW") + ", sent_at = NEW.sent_at, "
           "target_key = NEW.target_key, channel = NEW.channel, last_error = NEW.last_error, "
           "updated_at = NEW.updated_at, lease_until = NULL WHERE digest_id = NEW.id AND kind = 'letter'")


def trigger_statements(dialect: str) -> list[str]:
    """The DDL of the trigger that makes a digest's letters follow its status, for ``dialect``."""
    old_new = [(f"({column.format(r='OLD')})", f"({column.format(r='NEW')})")
               for column in (_FOLLOWED, *_CHANGED[1:])]
    if dialect == "sqlite":
        changed = " OR ".join(f"{old} IS NOT {new}" for old, new in old_new)
        return [f"CREATE TRIGGER digest_letters_follow AFTER UPDATE OF {', '.join(c[4:] for c in _CHANGED)} "
                f"ON delivery WHEN NEW.kind = 'digest' AND ({changed}) BEGIN\n{_FOLLOW};\nEND"]
    changed = " OR ".join(f"{old} IS DISTINCT FROM {new}" for old, new in old_new)
    return [
        f"CREATE FUNCTION digest_letters_follow() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        f" {_FOLLOW};\n RETURN NULL;\nEND\n$$",
        f"CREATE TRIGGER digest_letters_follow AFTER UPDATE OF {', '.join(c[4:] for c in _CHANGED)} ON delivery "
        f"FOR EACH ROW WHEN (NEW.kind = 'digest' AND ({changed})) EXECUTE FUNCTION digest_letters_follow()",
    ]


def install_triggers(connection: Connection) -> None:
    """Create the digest trigger on ``connection`` (a SQLAlchemy Connection); the migration calls it."""
    for statement in trigger_statements(connection.dialect.name):
        connection.execute(text(statement))


def drop_triggers(connection: Connection) -> None:
    """Remove what :func:`install_triggers` made."""
    if connection.dialect.name == "sqlite":
        connection.execute(text("DROP TRIGGER IF EXISTS digest_letters_follow"))
    else:
        connection.execute(text("DROP FUNCTION IF EXISTS digest_letters_follow() CASCADE"))

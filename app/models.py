"""The tables: Signature, Delivery, the public counter, organiser accounts and their sessions.

Times are naive UTC (``utcnow()``) so that SQLite and PostgreSQL compare them
the same way.
"""

from datetime import UTC, datetime

from sqlalchemy import ForeignKey, Index, String, Text, func, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .states import DeliveryStatus, SignatureStatus


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Signature(db.Model):
    """One supporter signing one campaign.

    ``status``: a :class:`~app.states.SignatureStatus`: ``accepted`` (letters
    go out), ``held`` (waits for a moderator), ``unconfirmed`` (waits for the
    supporter's confirmation). Rejected submissions are never stored. It
    changes only through :mod:`app.states`.
    """

    __tablename__ = "signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    #: The address as :func:`app.spam.normalise_email` makes it, to find the
    #: same supporter signing twice (``duplicate_signer``).
    email_key: Mapped[str] = mapped_column(String(320), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    #: ISO 3166 code, or "" when not given.
    country: Mapped[str] = mapped_column(String(8), default="")
    #: The letter as the supporter sent it.
    message: Mapped[str] = mapped_column(Text)
    #: The interface language the supporter signed in.
    language: Mapped[str] = mapped_column(String(16))
    opt_in: Mapped[bool] = mapped_column(default=False)
    #: The supporter changed the campaign's letter (compared as
    #: :meth:`app.campaigns.Campaign.is_edited` does). An unedited letter
    #: may go to a target in the target's ``language``; an edited one goes as
    #: written, in the language of the page it was written on.
    edited: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: Drawn at random when signing: which of the campaign's subject variants
    #: its letters carry (:meth:`app.campaigns.CampaignText.subject_for`).
    subject_choice: Mapped[int] = mapped_column(default=0, server_default="0")
    #: SHA-256 of the consent sentence exactly as shown (translated), when
    #: opt_in is true; see :func:`app.consent.consent_version`.
    consent_version: Mapped[str | None] = mapped_column(String(64))
    #: The language that sentence was shown in.
    consent_language: Mapped[str | None] = mapped_column(String(16))
    #: When consent was given; None once it is withdrawn (opt_in false).
    consented_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=SignatureStatus.ACCEPTED)
    #: Why a spam filter held it (for moderators).
    status_reason: Mapped[str] = mapped_column(Text, default="")
    #: HMAC of the client address (keyed by SECRET_KEY); never the address itself.
    client_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    deliveries: Mapped[list["Delivery"]] = relationship(
        back_populates="signature", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_signature_campaign_status", "campaign", "status"),
        Index("ix_signature_campaign_email_key", "campaign", "email_key"),
        # The admin search: a prefix of the name, the address or the organisation, any case.
        Index("ix_signature_search_name", "campaign", "status", func.lower(name)),
        Index("ix_signature_search_email", "campaign", "status", func.lower(email)),
        Index("ix_signature_search_organisation", "campaign", "status", func.lower(organisation)),
    )


#: The rows of ``ix_delivery_last_error``; a query must repeat this condition to use it.
#: Errors only: a failed letter's, or a pending one's that failed for now and
#: waits for its retry. Cap waits and receipt notes are in ``note``.
LAST_ERROR_WHERE = f"last_error != '' AND status IN ('{DeliveryStatus.FAILED}', '{DeliveryStatus.PENDING}')"


#: The rows of ``ix_delivery_overflow``: letters waiting for their target's cap.
OVERFLOW_WHERE = "status = 'pending' AND waiting_since IS NOT NULL"


class Delivery(db.Model):
    """One letter to one target, or one email to the supporter's own mailbox.

    ``kind``: ``letter`` (to a campaign target), or mail to the supporter:
    ``confirmation`` (asking them to confirm), ``receipt`` (their letter's
    link) or ``reminder`` (they signed already; their letter's link). Mail to
    the supporter has its finished text in ``subject`` and ``body``, rendered
    in the request in the supporter's language (see :mod:`app.signing`).

    A sent letter outlives its signature when the supporter is forgotten or
    purged: ``signature_id`` becomes NULL and only campaign, target, channel,
    status and time remain, so the dashboard's "letters sent" stays true.

    ``digest`` is a Delivery too: one email to a target standing for the
    letters whose ``digest_id`` is its id (:mod:`app.digests`).

    ``status``: ``pending`` (due at ``next_attempt_at``), ``sending`` (claimed
    by a worker until ``lease_until``), ``sent``, ``failed`` (given up; see
    ``last_error``), ``held`` (its signature waits for approval or
    confirmation), ``in_digest`` (a digest will carry it): a :class:`~app.states.DeliveryStatus`, changed only
    through :mod:`app.states`.
    """

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("signature.id", ondelete="CASCADE"), index=True)
    #: Copied from the signature, so an anonymous sent letter still counts.
    campaign: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16), default="letter")
    #: The target's email address or fax number, as in the campaign file.
    target_key: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(16))
    #: Backend name used for the last attempt.
    backend: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    #: Why the last attempt failed; errors only (empty once the letter is sent).
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: What organisers should know that is not an error: why a letter waits
    #: (TARGET_HOURLY_CAP), or its backend's receipt note ("queued for faxing").
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    provider_id: Mapped[str] = mapped_column(String(255), default="")
    #: Fixed when the row is made, so every retry carries the same Message-ID.
    message_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When the row last changed: every transition of :mod:`app.states`, the
    #: Core ``UPDATE`` statements too (SQLAlchemy applies ``onupdate`` to a
    #: statement that does not set the column). The queue alarm reads when a
    #: backend's attempts happened from it (:mod:`app.alarms`). Nullable only
    #: because SQLite cannot add a NOT NULL column in place; always set.
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]
    #: A letter gathered into a digest: the digest's id (a Delivery of kind
    #: ``digest``, to the same target); the letter follows its status. No
    #: foreign key: a digest is never deleted while it has letters, and
    #: SQLite cannot drop a column that has one (a downgrade).
    digest_id: Mapped[int | None]
    #: When TARGET_HOURLY_CAP first held the letter back (DIGEST_AFTER counts from it).
    waiting_since: Mapped[datetime | None]
    #: For mail to the supporter only (``kind != "letter"``): the finished email.
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)

    signature: Mapped[Signature | None] = relationship(back_populates="deliveries")

    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_campaign_status", "campaign", "kind", "status"),
        # TARGET_HOURLY_CAP counts the letters each target received in the last hour.
        Index("ix_delivery_target_sent", "target_key", "sent_at"),
        # The backend alarm reads the outcomes of the last 15 minutes (app.alarms).
        Index("ix_delivery_updated_at", "updated_at"),
        # A digest's letters, read when it is built and on the supporter's page.
        Index("ix_delivery_digest", "digest_id", sqlite_where=text("digest_id IS NOT NULL"),
              postgresql_where=text("digest_id IS NOT NULL")),
        # Letters the cap held back, which a digest may gather (app/digests.py).
        Index("ix_delivery_overflow", "campaign", "target_key", "waiting_since", sqlite_where=text(OVERFLOW_WHERE),
              postgresql_where=text(OVERFLOW_WHERE)),
        # The dashboard's newest error per target: only letters that wait or
        # failed with an error are in it, so it stays small.
        Index("ix_delivery_last_error", "campaign", "target_key", "id",
              sqlite_where=text(LAST_ERROR_WHERE), postgresql_where=text(LAST_ERROR_WHERE)),
    )


class CampaignTally(db.Model):
    """The public counter: accepted signatures per campaign (and dropped
    repeats that looked accepted, see :mod:`app.tally`).

    Changed in the same transaction as the signature it counts (signing,
    approval, confirmation, forgetting), so the campaign page reads one row
    instead of counting a million. Purging old data after a campaign closed
    does not lower it: those people did sign. See :mod:`app.tally`.
    """

    __tablename__ = "campaign_tally"

    campaign: Mapped[str] = mapped_column(String(64), primary_key=True)
    accepted: Mapped[int] = mapped_column(default=0)


class Organiser(db.Model):
    """Someone who may use the admin pages. Made with ``clamor admin add``."""

    __tablename__ = "organiser"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-case; the login compares lower-case.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: werkzeug scrypt hash (:data:`app.admin.PASSWORD_METHOD`; an older cost
    #: is replaced at the next successful login).
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    #: Wrong passwords in a row since the last successful login.
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    #: No login attempt for this account is checked before this time (see
    #: :func:`app.admin.login_wait`); None: no wait.
    locked_until: Mapped[datetime | None]


class AdminSession(db.Model):
    """One organiser logged in on one browser, from login until logout or expiry.

    The browser's session cookie holds a random id; only its SHA-256 is stored,
    so someone who reads the database cannot present it. Ending a session, for
    any reason (logout, ``clamor admin remove`` or ``logout-all``, idle or too
    old), is deleting its row: see :mod:`app.admin`.
    """

    __tablename__ = "admin_session"

    #: SHA-256 (hex) of the id in the cookie.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organiser_id: Mapped[int] = mapped_column(ForeignKey("organiser.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Moved on at most once a minute, so that reading pages does not write each time.
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    organiser: Mapped[Organiser] = relationship()


class UsedToken(db.Model):
    """A one-time form token already spent (e.g. the number question's nonce).

    Inserted in the same transaction as the signature it let through, so two
    requests racing with one token cannot both commit: the primary key stops
    the second. Rows are useless once ``expires_at`` has passed (the token
    itself is refused then) and are deleted.
    """

    __tablename__ = "used_token"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    #: Keyed digest of the whole form that spent the token
    #: (:func:`app.spam.sent_form_digest`), so the same form sent again (a
    #: double click on Send) gets the first answer; "" for other tokens.
    form_digest: Mapped[str] = mapped_column(String(64), default="", server_default="")


class DeliveryPause(db.Model):
    """While a row exists, no worker sends anything (``clamor deliveries pause``).

    A table rather than a file in the instance folder: workers on other hosts
    share only the database, and they must all see the pause.
    """

    __tablename__ = "delivery_pause"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)


class Figure(db.Model):
    """One running total of the dashboard: ``n`` rows of campaign ``campaign`` count under (``name``, ``key``).

    Kept by triggers on ``signature`` and ``delivery`` in the transaction that
    changes the rows (see :mod:`app.totals`, which lists every name), never
    written by the application itself.
    """

    __tablename__ = "figure"

    campaign: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: e.g. ``status``, ``day``, ``country``, ``letters:sent``, ``sent_on``.
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: e.g. ``accepted``, ``2026-12-01``, ``FR``, a target's address.
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    n: Mapped[int] = mapped_column(default=0)


class TargetHealth(db.Model):
    """How a target address has answered letters, across campaigns: its bounces in a row, a suspension, a complaint.

    One row per ``target_key`` (as stored in ``delivery``), made at its first
    bounce or complaint, changed only through :mod:`app.states.targets`.
    """

    __tablename__ = "target_health"

    target_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    #: Hard bounces since the last reported delivery (TARGET_BOUNCE_LIMIT suspends).
    bounces_in_row: Mapped[int] = mapped_column(default=0)
    #: The provider's text of the newest bounce, as reported.
    last_bounce: Mapped[str] = mapped_column(Text, default="")
    last_bounce_at: Mapped[datetime | None]
    #: When it was suspended; None: not suspended. Its letters are held meanwhile.
    suspended_at: Mapped[datetime | None]
    #: The newest complaint (a recipient marked a letter as spam); "" for none. Does not suspend.
    complaint: Mapped[str] = mapped_column(Text, default="")
    complained_at: Mapped[datetime | None]
    #: When organisers were emailed about the current suspension: one email per suspension.
    alerted_at: Mapped[datetime | None]


class Alarm(db.Model):
    """One of the organisers' alarms (:mod:`app.alarms`): ``queue``, or ``backend:<name>``.

    Raised while ``raised_at`` is set and ``cleared_at`` is None. Raising is
    one ``UPDATE`` whose row count says which worker raised it, so two
    workers that see the same stall email the organisers once between them.
    """

    __tablename__ = "alarm"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: When the current (or last) stall was first seen.
    raised_at: Mapped[datetime | None]
    #: When the last stall ended; None while it lasts (or before any).
    cleared_at: Mapped[datetime | None]


class DigestSlot(db.Model):
    """When a target's letters were last gathered into a digest, per campaign: the period a gathering claims.

    One row per (campaign, target_key), made by the target's first
    gathering. A gathering claims the target's period by moving
    ``last_gathered_at`` with one conditional upsert, in the transaction
    that makes the digests (:mod:`app.digests`), so two workers cannot both
    gather one target in one period. Like a digest row, it holds no
    supporter's data.
    """

    __tablename__ = "digest_slot"

    campaign: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The target's email address or fax number, as in ``delivery``.
    target_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    #: The ``now`` of the newest gathering that made a digest for the target.
    last_gathered_at: Mapped[datetime]

"""The two tables: a supporter's Signature and one Delivery per target.

Times are naive UTC (``utcnow()``) so that SQLite and PostgreSQL compare them
the same way.
"""

from datetime import UTC, datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow():
    return datetime.now(UTC).replace(tzinfo=None)


class Signature(db.Model):
    """One supporter signing one campaign.

    ``status``: ``accepted`` (letters go out), ``held`` (waits for a
    moderator), ``unconfirmed`` (waits for the supporter's confirmation).
    Rejected submissions are never stored.
    """

    __tablename__ = "signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    organisation: Mapped[str] = mapped_column(String(200), default="")
    #: ISO 3166 code, or "" when not given.
    country: Mapped[str] = mapped_column(String(8), default="")
    #: The letter as the supporter sent it.
    message: Mapped[str] = mapped_column(Text)
    #: The interface language the supporter signed in.
    language: Mapped[str] = mapped_column(String(16))
    opt_in: Mapped[bool] = mapped_column(default=False)
    #: Hash of the consent sentence as shown, when opt_in is true.
    consent_version: Mapped[str | None] = mapped_column(String(64))
    consented_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    #: Why a spam filter held it (for moderators).
    status_reason: Mapped[str] = mapped_column(Text, default="")
    #: HMAC of the client address (keyed by SECRET_KEY); never the address itself.
    client_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    deliveries: Mapped[list["Delivery"]] = relationship(
        back_populates="signature", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index("ix_signature_campaign_status", "campaign", "status"),)


class Delivery(db.Model):
    """One letter to one target.

    ``status``: ``pending`` (due at ``next_attempt_at``), ``sending`` (claimed
    by a worker until ``lease_until``), ``sent``, ``failed`` (given up; see
    ``last_error``), ``held`` (its signature waits for approval or
    confirmation).
    """

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    signature_id: Mapped[int] = mapped_column(ForeignKey("signature.id", ondelete="CASCADE"), index=True)
    #: The target's email address or fax number, as in the campaign file.
    target_key: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(16))
    #: Backend name used for the last attempt.
    backend: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    provider_id: Mapped[str] = mapped_column(String(255), default="")
    #: Fixed when the row is made, so every retry carries the same Message-ID.
    message_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    signature: Mapped[Signature] = relationship(back_populates="deliveries")

    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        # TARGET_HOURLY_CAP counts the letters each target received in the last hour.
        Index("ix_delivery_target_sent", "target_key", "sent_at"),
    )


class DeliveryPause(db.Model):
    """While a row exists, no worker sends anything (``clamor deliveries pause``).

    A table rather than a file in the instance folder: workers on other hosts
    share only the database, and they must all see the pause.
    """

    __tablename__ = "delivery_pause"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)

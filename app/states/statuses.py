"""The statuses of a signature and a delivery (stored strings), and the error of an illegal change."""

from collections.abc import Collection
from enum import StrEnum


class SignatureStatus(StrEnum):
    """Where a :class:`~app.models.Signature` stands."""

    #: Its letters go out; counted by the public counter.
    ACCEPTED = "accepted"
    #: A spam filter held it: it waits for a moderator (:func:`approve`, :func:`reject`).
    HELD = "held"
    #: It waits for the supporter to confirm their address (:func:`confirm`).
    UNCONFIRMED = "unconfirmed"
    #: Never stored: a rejected submission (or held signature) is deleted.
    #: :func:`reject` names it in :class:`IllegalTransition`.
    REJECTED = "rejected"


class DeliveryStatus(StrEnum):
    """Where a :class:`~app.models.Delivery` stands."""

    #: Due at ``next_attempt_at``.
    PENDING = "pending"
    #: Claimed by a worker until ``lease_until``.
    SENDING = "sending"
    #: Accepted by its backend (``note`` says what that means, e.g. queued for faxing).
    SENT = "sent"
    #: The provider reported it delivered to the target's mailbox (:func:`delivered`).
    DELIVERED = "delivered"
    #: The provider reported a permanent failure: the target's mailbox refused it (:func:`bounced`).
    BOUNCED = "bounced"
    #: Given up; ``last_error`` says why.
    FAILED = "failed"
    #: Its signature waits for approval or confirmation, or its target is suspended
    #: (:mod:`app.states.targets`; then its signature is accepted).
    HELD = "held"
    #: An organiser cancelled it before it went out (``clamor targets cancel``); never sent.
    CANCELLED = "cancelled"
    #: A letter gathered into a digest (``digest_id``) that has not gone out yet:
    #: no worker claims it alone. Once the digest goes, the letter takes its
    #: status (sent, failed, delivered, bounced…): see :mod:`app.digests`.
    IN_DIGEST = "in_digest"


class IllegalTransition(ValueError):
    """A status change its current status does not allow; nothing was changed."""

    def __init__(self, what: str, from_status: str | None, to_status: str) -> None:
        self.from_status: str | None = from_status
        self.to_status: str = to_status
        super().__init__(f"a {what} cannot go from {from_status} to {to_status}")


def check(what: str, current: str | None, to: str, legal: Collection[str]) -> None:
    """Raise :class:`IllegalTransition` unless ``current`` is one of ``legal``."""
    if current not in legal:
        raise IllegalTransition(what, current, to)


#: The kinds of Delivery that go to a campaign's target: one supporter's letter,
#: or a digest of many (:mod:`app.digests`). Every other kind goes to a
#: supporter's or an organiser's own mailbox.
TARGET_KINDS = ("letter", "digest")

#: The statuses of a letter a backend accepted: sent, and what the provider reported of it since.
WENT_OUT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED)

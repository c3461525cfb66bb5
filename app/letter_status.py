"""What a supporter's own page shows, per target: queued, on hold, sent, delivered, bounced, failed or cancelled.

The page opens only from the link mailed to the supporter (receipt,
confirmation or reminder; see :mod:`app.signing`), never from the thank-you
page, so it can show the real letter without telling anyone at the form
whether an address had signed.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import current_app
from flask_babel import format_date, gettext, ngettext

from .digests import digest_summary
from .states import WENT_OUT, DeliveryStatus, SignatureStatus
from .target_choice import written_to

if TYPE_CHECKING:
    from flask_babel.speaklater import LazyString

    from .campaigns import Campaign, Target
    from .delivery import DeliveryBackend
    from .models import Delivery, Signature

LABELS = {DeliveryStatus.PENDING: "queued", DeliveryStatus.SENDING: "queued", DeliveryStatus.HELD: "queued",
          DeliveryStatus.SENT: "sent", DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.BOUNCED: "bounced",
          DeliveryStatus.FAILED: "failed", DeliveryStatus.CANCELLED: "cancelled", DeliveryStatus.IN_DIGEST: "queued"}


def label(
    delivery: "Delivery", backends: "Mapping[str, type[DeliveryBackend]]",
) -> "tuple[str, str | LazyString | None]":
    """``(state, sent_label)`` of ``delivery`` as the page names it.

    ``state`` is queued, on_hold (its target's mailbox refused letters: it is
    suspended), sent, accepted, delivered (the provider reported it in the
    target's mailbox), bounced (the target's mailbox refused it), failed or
    cancelled (by an organiser, before it went out). A letter is "accepted",
    not "sent", when the backend that sent it (looked up in ``backends`` by
    ``delivery.backend``) says what its acceptance means with a
    ``sent_label`` (a fax gateway's: queued for faxing, not faxed);
    ``sent_label`` is that text, else None.
    """
    state = LABELS.get(delivery.status, "queued")
    if delivery.status == DeliveryStatus.HELD and delivery.signature is not None \
            and delivery.signature.status == SignatureStatus.ACCEPTED:
        # Held with its signature accepted: its target is suspended (app.states.targets).
        state = "on_hold"
    backend = backends.get(delivery.backend or "")
    sent_label = getattr(backend, "sent_label", None) if state == "sent" else None
    return ("accepted" if sent_label else state), sent_label


def letter_rows(
    signature: "Signature", campaign: "Campaign",
) -> "list[tuple[Target, str | None, str | LazyString | None, str | None]]":
    """``[(target, state, sent_label, digest)]`` for a signature's letters (see :func:`label`).

    One row per target the signature has a letter to (the targets its
    supporter chose, where the campaign lets them), in the campaign's order:
    a target added to the campaign since, or one the supporter did not tick,
    has no row. ``digest``: what the page says of the digest the letter went
    in (or will go in), else None.
    """
    backends = current_app.extensions["clamor"].backends
    by_target = {d.target_key: d for d in signature.deliveries if d.kind == "letter"}
    return [(target, *label(by_target[target.key], backends), digest_line(by_target[target.key]))
            for target in written_to(signature, campaign)]


def digest_line(delivery: "Delivery") -> str | None:
    """"in a digest of N letters on D" for a letter gathered into a digest (see :mod:`app.digests`), else None.

    Before the digest goes: it will go in the target's next digest. A digest
    that failed or was cancelled adds nothing to the letter's own status.
    """
    if delivery.digest_id is None:
        return None
    count, status, sent_at = digest_summary(delivery.digest_id)
    if status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.HELD):
        return gettext("in the next digest of letters to this recipient")
    if status not in WENT_OUT or sent_at is None:
        return None
    return ngettext("in a digest of %(num)d letter on %(date)s", "in a digest of %(num)d letters on %(date)s",
                    count, date=format_date(sent_at, "long"))

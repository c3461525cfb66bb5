"""What a supporter's own page shows, per target: queued, sent or failed.

The page opens only from the link mailed to the supporter (receipt,
confirmation or reminder; see :mod:`app.signing`), never from the thank-you
page, so it can show the real letter without telling anyone at the form
whether an address had signed.
"""

from .states import DeliveryStatus

LABELS = {DeliveryStatus.PENDING: "queued", DeliveryStatus.SENDING: "queued", DeliveryStatus.HELD: "queued",
          DeliveryStatus.SENT: "sent", DeliveryStatus.FAILED: "failed"}


def label(delivery):
    """``delivery``'s state as the page names it: queued, sent, faxing (sent to a fax gateway) or failed."""
    state = LABELS.get(delivery.status, "queued")
    # A fax gateway's acceptance means queued for faxing, not faxed: say so.
    return "faxing" if state == "sent" and delivery.channel == "fax" else state


def letter_rows(signature, campaign):
    """``[(target, state)]`` for a signature's letters; state is None for a target added since it was queued."""
    by_target = {d.target_key: d for d in signature.deliveries if d.kind == "letter"}
    return [(target, label(by_target[target.key]) if target.key in by_target else None)
            for target in campaign.targets]

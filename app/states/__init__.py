"""Every status of a signature and a delivery, and every change between them.

A status changes here and nowhere else (pretix changes an order's status only
through its services; WriteToThem's ``FYR/Queue.pm`` names every state of a
message in one module). Each transition is a function that checks the status
it starts from and raises :class:`IllegalTransition`, changing nothing, when
that status does not allow it. The public counter (:mod:`app.tally`) moves in
the same functions, so a status and the counter cannot disagree. The
dashboard's running totals follow by themselves (triggers, :mod:`app.totals`).

Transitions that touch many rows (the worker's claim, approving, retrying,
forgetting, purging) are one SQL statement each, with the statuses they may
start from in their ``WHERE`` clause. No function here commits: the caller
owns the transaction.

The columns stay ``String``: a :class:`enum.StrEnum` member is the very string
the database stores, and a status read back is a plain ``str`` that compares
equal to its member.
"""

# app.models imports the statuses from here; the transitions import app.models as a module.
from .deliveries import (
    RETRYABLE,
    bounced,
    claim,
    delivered,
    failed,
    into_digest,
    reported,
    requeued,
    retry,
    sent,
    waiting,
)
from .signatures import (
    accept,
    approve,
    await_confirmation,
    confirm,
    forget,
    hold,
    letter_status,
    reject,
    remove,
)
from .statuses import TARGET_KINDS, WENT_OUT, DeliveryStatus, IllegalTransition, SignatureStatus
from .targets import WAITING, cancel, complained, not_suspended, reroute, resume, suspended_keys

__all__ = [
    "RETRYABLE", "TARGET_KINDS", "WENT_OUT", "DeliveryStatus", "IllegalTransition", "SignatureStatus",
    "accept", "approve", "await_confirmation", "confirm", "forget", "hold",
    "letter_status", "reject", "remove",
    "bounced", "claim", "delivered", "failed", "into_digest", "reported", "requeued", "retry", "sent", "waiting",
    "WAITING", "cancel", "complained", "not_suspended", "reroute", "resume", "suspended_keys",
]

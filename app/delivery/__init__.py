"""Letters, the delivery backend contract, and the worker that sends them.

Nothing is sent inside a web request. A signature stores one ``Delivery`` row
per target; a worker (a thread in the web process, or ``clamor deliver``)
claims due rows with a lease, builds each :class:`Letter` in the letter's own
language, and hands it to the backend that config ``DELIVERY`` names for the
target's channel. A letter accepted is a letter delivered or visibly failed.

- :mod:`.contract`: the plugin contract (``Letter``, ``DeliveryBackend``,
  ``Receipt``, ``TemporaryFailure``, ``PermanentFailure``);
- :mod:`.letters`: building letters from a signature and its targets;
- :mod:`.queue`: claims, leases, the hourly cap, pause and resume;
- :mod:`.worker`: the batch loop, the connections, the worker loop and thread.

Every name below stays importable from ``app.delivery``.
"""

from .contract import (
    DeliveryBackend,
    Letter,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
)
from .letters import (
    MAILBOX_KINDS,
    ORGANISER_KIND,
    build_letter,
    country_name,
    insert_letters,
    new_letters,
    new_message_id,
    one_line,
    queue_deliveries,
    queue_mailbox_email,
    queue_organiser_emails,
)
from .queue import claim_due, is_paused, retry_delay, sent_in_last_hour, set_paused
from .worker import DeliveryWorker, deliver_due, error_text

__all__ = [
    "MAILBOX_KINDS", "ORGANISER_KIND", "DeliveryBackend", "DeliveryWorker", "Letter", "PermanentFailure", "Receipt",
    "TemporaryFailure", "build_letter", "claim_due", "country_name", "deliver_due", "error_text", "insert_letters",
    "is_paused", "new_letters", "new_message_id", "one_line", "queue_deliveries", "queue_mailbox_email",
    "queue_organiser_emails", "retry_delay", "sent_in_last_hour", "set_paused",
]

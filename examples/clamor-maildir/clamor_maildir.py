"""Clamor delivery backend ``maildir``: each letter is filed in a Maildir folder.

Nothing leaves the server. Point an IMAP server (Dovecot) or a mail client
(mutt -f, Thunderbird with a local account) at MAILDIR_PATH to read the letters
exactly as a target would, e.g. to rehearse a campaign before switching to
``smtp``. Each file holds one letter with its own Message-ID.
"""

import mailbox

from app import DeliveryBackend, PermanentFailure, Receipt, TemporaryFailure, hookimpl


class MaildirBackend(DeliveryBackend):
    #: What config DELIVERY names to pick this backend: {"email": "maildir"}.
    name = "maildir"
    verbose_name = "A Maildir folder (nothing is sent)"

    def __init__(self, config):
        super().__init__(config)
        self.path = config.get("MAILDIR_PATH")
        if not self.path:
            raise PermanentFailure("the maildir backend needs MAILDIR_PATH (a folder)")

    def send(self, letter):
        message = letter.as_email()  # PermanentFailure if it cannot be written as email
        try:
            # Maildir writes into tmp/ and then moves the file into new/, so a
            # reader never sees half a letter and no lock is needed.
            key = mailbox.Maildir(self.path, create=True).add(message)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to {self.path}: {exc.strerror or exc}") from exc
        return Receipt(provider_id=key)


@hookimpl
def register_delivery_backends():
    return [MaildirBackend]

"""Storing a signature: the signature, its letters, the counter and the mail to the
supporter's own mailbox, in one transaction.

Everything the person at the form can see is the same whatever happened to
their submission: the redirect, the thank-you page (no per-letter link on it)
and the public counter. What differs goes to the mailbox of the address that
was typed, which only its owner reads:

- a new signer gets a receipt (``SEND_RECEIPT``) or, with
  ``CONFIRM_SUPPORTER_EMAIL``, the confirmation email; either carries the link
  to their letter's own page;
- a repeat signer (a filter's ``drop`` with ``repeats``) gets "you signed this
  on D" with the link to their real letter, or the confirmation email again if
  that letter still waits for it.

The two paths do the same work: a repeat signature is written exactly like a
new one, inside a savepoint that is rolled back, so neither the response time
nor anything stored tells a prober whether the address had signed. No email
to a typed address carries anything typed into the form, not even the name:
otherwise the form would be a way to mail anyone any text from the union's
domain.
"""

import functools
import logging
import secrets
from typing import TYPE_CHECKING

from flask import current_app, render_template
from flask_babel import force_locale, format_date
from flask_babel import gettext as _
from sqlalchemy import insert, inspect
from sqlalchemy.orm import make_transient_to_detached

from . import states
from .consent import consent_version
from .delivery import insert_letters, new_letters, queue_mailbox_email
from .extensions import db
from .links import confirm_url, status_url
from .models import Signature, utcnow
from .spam import spend_tokens
from .states import SignatureStatus
from .target_choice import written_to

if TYPE_CHECKING:
    from flask_wtf import FlaskForm

    from .campaigns import Campaign
    from .spam import Submission, Verdict

log = logging.getLogger(__name__)


#: Stands for a link in a mailbox email drawn before its signature is
#: stored (a link carries the id the INSERT gives it), filled in once it is
#: (:func:`_fill_links`). Contains a NUL, which nothing in a campaign file or
#: a translation can.
_LINK_GAP = "\x00clamor-link:{}\x00"


def store_signature(
    submission: "Submission", campaign: "Campaign", verdict: "Verdict | None", form: "FlaskForm",
) -> Signature | None:
    """Store ``submission`` to ``campaign`` as ``verdict`` allows, in ONE transaction, and commit.

    ``verdict``: None (accepted), a hold (stored as held, letters held) or a
    drop (nothing of the submission is kept: only the form's one-time tokens
    are spent and, for a repeat signer, the mail to their mailbox is queued).
    Returns the stored :class:`Signature`, or None for a drop. Raises
    :class:`sqlalchemy.exc.IntegrityError` when a one-time token was spent
    concurrently; nothing is stored then.
    """
    config = current_app.config
    dropped = verdict is not None and verdict.action == "drop"
    held = verdict is not None and (verdict.action == "hold" or verdict.held_too)
    # What only reads or draws comes before the first write: on SQLite a
    # signing request holds the one write lock, which every other signing
    # request waits for, from its first write to its commit.
    suspended = states.suspended_keys(target.key for target in campaign.targets)
    chosen = [target for target in campaign.targets if not submission.targets or target.key in submission.targets]
    signature, status, reason = _new_signature(submission, campaign, verdict, config, held)
    mail = _drawn_mail(signature, status, verdict if dropped else None, campaign, config, chosen)
    spend_tokens(form)
    _enter(signature, status, reason)
    letters = new_letters(campaign, config, status=states.letter_status(signature),
                          targets=[target.key for target in chosen], suspended=suspended)
    # Written in full on both paths, so a repeat costs what a new signer
    # costs; a drop's rows are rolled back before anything is committed.
    savepoint = db.session.connection().begin_nested()
    signature_id = _insert_signature(signature)
    insert_letters(signature_id, letters)
    if dropped:
        savepoint.rollback()
    else:
        savepoint.commit()
        # The stored row, as an object of the session (loaded, unchanged).
        signature.id = signature_id
        make_transient_to_detached(signature)
        db.session.add(signature)
    if mail is not None:
        mailbox, kind, subject, body = mail
        queue_mailbox_email(mailbox, config, kind, subject, _fill_links(body, mailbox))
    db.session.commit()
    if dropped:
        log.info("submission for %s dropped: %s", campaign.slug, verdict.reason)
        return None
    log.info("signature %s stored for %s (%s)", signature_id, campaign.slug, status)
    return signature


def _insert_signature(signature):
    """INSERT the new ``signature`` (not in the session) in one statement; return its id.

    On the session's connection, not through the ORM's unit of work, whose
    flush of this one row took longer than its letters' INSERT with the
    totals' triggers, inside the write lock. Columns the object leaves unset
    take their defaults.
    """
    values = {key: value for key, value in inspect(signature).dict.items() if key in _SIGNATURE_COLUMNS}
    return db.session.connection().execute(_INSERT_SIGNATURE, values).scalar_one()


_SIGNATURE_COLUMNS = frozenset(Signature.__table__.c.keys())
_INSERT_SIGNATURE = insert(Signature.__table__).returning(Signature.__table__.c.id)


def _new_signature(submission, campaign, verdict, config, held):
    """(the :class:`Signature`, the status it is to enter, the hold's reason) for a new signer's submission.

    The signature has no status yet (:func:`_enter` gives it) and is not in
    the session.
    """
    reason = ""
    if verdict is not None and verdict.action == "hold":
        # Moderators read reasons in the deployment's default language, not
        # in the supporter's.
        with force_locale(config["BABEL_DEFAULT_LOCALE"]):
            reason = str(verdict.reason)
    signature = Signature(
        campaign=campaign.slug,
        name=submission.name,
        email=submission.email,
        email_key=submission.email_key,
        organisation=submission.organisation,
        country=submission.country,
        message=submission.message,
        edited=campaign.is_edited(submission.message, submission.language),
        subject_choice=secrets.randbelow(2**31),
        language=submission.language,
        opt_in=submission.opt_in,
        consent_version=consent_version(submission.language) if submission.opt_in else None,
        consent_language=submission.language if submission.opt_in else None,
        consented_at=utcnow() if submission.opt_in else None,
        client_hash=submission.client_hash,
        # Set here, not at the INSERT: the receipt, drawn before it, says the date.
        created_at=utcnow(),
    )
    if config["CONFIRM_SUPPORTER_EMAIL"]:
        # The reason is kept while unconfirmed too: a held submission
        # confirmed by its supporter then waits for a moderator.
        status = SignatureStatus.UNCONFIRMED
    else:
        status = SignatureStatus.HELD if held else SignatureStatus.ACCEPTED
    return signature, status, reason


def _enter(signature, status, reason):
    """Give the new ``signature`` its first ``status`` through :mod:`app.states`, in the caller's transaction.

    An accepted one is counted now, and so is a repeat's stand-in (a drop)
    that would have been accepted: otherwise the counter would tell a prober
    whether the address had signed (see app/tally.py). The stand-in's rows
    are rolled back; its count is not.
    """
    if status == SignatureStatus.UNCONFIRMED:
        states.await_confirmation(signature, reason)
    elif status == SignatureStatus.HELD:
        states.hold(signature, reason)
    else:
        states.accept(signature)


def _drawn_mail(signature, status, drop, campaign, config, chosen):
    """(whose mailbox, kind, subject, body with link gaps) of the one email this submission sends, or None.

    The new ``signature`` (entering ``status``) gets it, writing to the
    targets ``chosen``; for a ``drop`` (its verdict), the repeat signer's
    earlier signature, read here.
    """
    if drop is not None:
        mailbox = db.session.get(Signature, drop.repeats) if drop.repeats else None
        kind = _mailbox_kind(mailbox.status, config, repeat=True) if mailbox is not None else None
        targets = functools.partial(written_to, mailbox, campaign)
    else:
        mailbox, kind, targets = signature, _mailbox_kind(status, config, repeat=False), lambda: chosen
    if kind is None:
        return None
    return (mailbox, kind, *_mailbox_email(mailbox, campaign, kind, targets))


def _mailbox_kind(status, config, repeat):
    """The one email a submission sends to the mailbox of a signature in ``status``, or None.

    The confirmation email while the signature waits for it (someone who lost
    the first one signs again and is told an email is on its way: it must
    be); else, with ``SEND_RECEIPT``, a receipt (new signer) or a reminder
    (``repeat``).
    """
    if status == SignatureStatus.UNCONFIRMED:
        return "confirmation"
    if config["SEND_RECEIPT"] and not config["CONFIRM_SUPPORTER_EMAIL"]:
        return "reminder" if repeat else "receipt"
    return None


def _mailbox_email(signature, campaign, kind, targets):
    """(subject, body) of the ``kind`` email to ``signature``'s mailbox, its links as gaps (:func:`_fill_links`).

    ``targets``: a function giving the targets its letters go to. In the
    signature's language, like its links: for a repeat, the language the
    address first signed in.
    """
    with force_locale(signature.language):
        if kind == "confirmation":
            return _confirmation_email(signature, campaign, _gap)
        return _receipt_email(signature, campaign, kind == "reminder", targets(), _gap)


def _gap(signature, purpose):
    return _LINK_GAP.format(purpose)


def _link(signature, purpose):
    return (confirm_url if purpose == "confirm" else status_url)(signature)


def _fill_links(body, signature):
    """``body`` with each link gap replaced by ``signature``'s link (it has its id now)."""
    for purpose in ("confirm", "status"):
        gap = _LINK_GAP.format(purpose)
        if gap in body:
            body = body.replace(gap, _link(signature, purpose))
    return body


def _confirmation_email(signature, campaign, link):
    """(subject, body) of the confirmation email, in the current locale. Nothing in it was typed by the supporter."""
    text = campaign.text(signature.language)
    subject = _("Please confirm your letter: %(title)s", title=text.short_name)
    body = render_template(
        "email/confirm.txt",
        text=text,
        days=current_app.config["CONFIRM_EXPIRY_DAYS"],
        confirm_url=link(signature, "confirm"),
        status_url=link(signature, "status"),
    )
    return subject, body


def _receipt_email(signature, campaign, repeat, targets, link):
    """(subject, body) of the receipt (or, for a ``repeat``, the reminder) naming ``targets``, in the current locale."""
    text = campaign.text(signature.language)
    if repeat:
        subject = _("You have signed already: %(title)s", title=text.short_name)
    else:
        subject = _("Your letter: %(title)s", title=text.short_name)
    body = render_template(
        "email/receipt.txt",
        text=text,
        repeat=repeat,
        signed_on=format_date(signature.created_at.date(), format="long"),
        targets=[target.name for target in targets],
        status_url=link(signature, "status"),
    )
    return subject, body


def confirm_signature(signature: Signature) -> bool:
    """Confirm ``signature`` (its supporter pressed the button in the confirmation email) and commit.

    Returns False, changing nothing, unless it waits for confirmation (also
    when another request confirmed it, or purge removed it, since it was
    read). Then a submission a filter held stays held (confirming does not
    skip moderation); any other is accepted: its letters are queued and the
    counter moves.
    """
    if signature.status != SignatureStatus.UNCONFIRMED:
        return False
    if states.confirm(signature) is None:
        return False
    db.session.commit()
    log.info("signature %s confirmed (%s)", signature.id, signature.status)
    return True


def withdraw_consent(signature: Signature) -> None:
    """Withdraw ``signature``'s consent to future alerts (its unsubscribe link) and commit.

    Nothing if there was none.
    """
    if signature.opt_in:
        signature.opt_in = False
        signature.consented_at = None
        db.session.commit()
        log.info("signature %s withdrew consent to alerts", signature.id)

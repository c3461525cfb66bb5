"""The spam filter contract: what a filter is given and what it may answer.

Filters are plugins implementing ``check_submission`` (and, to add a field,
``extend_action_form``); only those named in config ``SPAM_FILTERS`` run.
docs/spam.md describes the built-in ones and how to write another.
"""

import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy
from flask import has_request_context, request
from flask_babel.speaklater import LazyString
from flask_wtf import FlaskForm
from sqlalchemy import bindparam, select

from .extensions import db
from .keys import subkey
from .models import UsedToken, utcnow
from .security import client_hash

if TYPE_CHECKING:
    from .campaigns import Campaign

log = logging.getLogger(__name__)

#: How strict each verdict is; the strictest of all filters wins. ``drop``
#: beats ``hold`` because a letter that must not go out at all must not wait
#: for a moderator either; ``reject`` beats both because its reason is shown.
SEVERITY = {"hold": 1, "drop": 2, "reject": 3}


@dataclass(frozen=True)
class Verdict:
    """A filter's objection: ``action`` is "reject", "drop" or "hold"; ``reason`` is shown or logged."""

    action: str
    reason: "str | LazyString | Reasons"
    #: For a drop only: whether another filter held the submission. The
    #: public counter then does not move, as for a new signer's held letter.
    held_too: bool = False
    #: For a drop only: the id of the :class:`~app.models.Signature` this
    #: submission repeats. Its supporter's mailbox is told, with the link to
    #: that letter; the person at the form is not (see :mod:`app.signing`).
    repeats: int | None = None

    @classmethod
    def reject(cls, reason: str | LazyString) -> "Verdict":
        """The form comes back with ``reason`` shown; nothing is stored."""
        return cls("reject", reason)

    @classmethod
    def hold(cls, reason: "str | LazyString | Reasons") -> "Verdict":
        """Stored as held; delivered only after a moderator approves."""
        return cls("hold", reason)

    @classmethod
    def drop(cls, reason: str | LazyString, repeats: int | None = None) -> "Verdict":
        """Answered exactly like an accepted letter, but nothing is stored or sent.

        For objections the person at the form must not learn about, e.g. that
        the address had signed already: the response cannot tell anyone
        whether that address is in the database. ``repeats``: the id of the
        earlier signature this one repeats, whose mailbox then gets "you
        signed this on D" with its letter's link. ``reason`` is only logged.
        """
        return cls("drop", reason, repeats=repeats)


@dataclass(frozen=True)
class Submission:
    """A validated form, as filters see it. Nothing here is stored yet."""

    name: str
    email: str
    organisation: str
    country: str
    message: str
    opt_in: bool
    #: The interface language of the page the supporter signed on.
    language: str
    #: Keyed hash of the client address (see :func:`app.security.client_hash`).
    client_hash: str
    #: The bound form, for filters that added fields.
    form: FlaskForm
    #: The keys (:attr:`~app.campaigns.Target.key`) of the targets the letter
    #: goes to, in the campaign's order: those the supporter ticked where the
    #: campaign has ``targets_selectable``, else every target's. Empty (the
    #: default, for a Submission made without it): every target.
    targets: tuple[str, ...] = ()

    @property
    def email_key(self) -> str:
        """The address normalised by :func:`normalise_email`."""
        return normalise_email(self.email)


#: Providers known to ignore dots in the local part.
DOTLESS_DOMAINS = {"gmail.com", "googlemail.com"}


def normalise_email(address: str | None) -> str:
    """One key per mailbox, for duplicates and rate limits; never used to send.

    Case-folded, without a ``+tag`` (sub-addressing, which most providers
    deliver to the same mailbox), and without dots in the local part at Gmail,
    where they do not matter either. ``googlemail.com`` becomes ``gmail.com``.
    """
    local, _, domain = (address or "").strip().casefold().rpartition("@")
    if not local:
        return domain
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def earlier_signature(campaign_slug: str, email_key: str) -> int | None:
    """The id of the first signature of ``campaign_slug`` made with the normalised address ``email_key``, or None.

    Any status (accepted, held, unconfirmed): what ``duplicate_signer`` asks.
    """
    from .models import Signature

    return db.session.scalar(
        select(Signature.id)
        .where(Signature.campaign == campaign_slug, Signature.email_key == email_key)
        .order_by(Signature.id)
        .limit(1)
    )


def judge(submission: Submission, campaign: "Campaign", caller: pluggy.HookCaller) -> Verdict | None:
    """Run every enabled filter and return the strictest :class:`Verdict`, or None.

    Each filter is called on its own so that one that raises cannot hide the
    others' verdicts; a raising filter counts as a hold (the letter is neither
    lost nor sent unseen) and its traceback is logged. When the strictest
    verdict is a hold, its reason lists every filter's hold reason, so a
    moderator sees all of them.
    """
    kwargs = {"submission": submission, "campaign": campaign}
    verdicts = []
    for impl in caller.get_hookimpls():
        try:
            verdict = impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception:
            log.exception("spam filter %s raised; holding the submission", impl.plugin_name)
            verdict = Verdict.hold(f"filter {impl.plugin_name} failed")
        if verdict is not None:
            log.info("spam filter %s: %s (%s)", impl.plugin_name, verdict.action, verdict.reason)
            verdicts.append(verdict)
    strictest = max(verdicts, key=lambda v: SEVERITY[v.action], default=None)
    if strictest is not None and strictest.action == "hold":
        return Verdict.hold(Reasons(v.reason for v in verdicts))
    if strictest is not None and strictest.action == "drop":
        return Verdict("drop", strictest.reason, held_too=any(v.action == "hold" for v in verdicts),
                       repeats=strictest.repeats)
    return strictest


class Reasons(tuple):
    """Several (lazy) reasons that become one string only when ``str()`` is called.

    So the view can render them in the language moderators read, not the
    supporter's.
    """

    def __str__(self) -> str:
        return "; ".join(dict.fromkeys(str(reason) for reason in self))


# One-time tokens. A field that carries a nonce sets ``field.one_time_token =
# (nonce, expires_at)`` (naive UTC, like every time here) once it validated;
# the view records every such token in the transaction that stores the
# signature (see :func:`spend_tokens`).


#: Built once: building the statement cost as much as running it.
_SWEEP = UsedToken.__table__.delete().where(UsedToken.expires_at < bindparam("now"))


def token_spent(nonce: str) -> bool:
    """True when ``nonce`` was already used for a successful submission."""
    return db.session.scalar(select(UsedToken.nonce).where(UsedToken.nonce == nonce)) is not None


def form_tokens(form: Iterable[object]) -> list[tuple[str, datetime]]:
    """The ``(nonce, expires_at)`` pairs the fields of ``form`` want spent."""
    return [field.one_time_token for field in form if getattr(field, "one_time_token", None)]


def spend_tokens(form: Iterable[object]) -> None:
    """Add the form's one-time tokens to the session (not committed).

    Committed together with the signature, so a second request using the same
    token fails at commit (primary key) even if both passed :func:`token_spent`.
    Tokens past their expiry are deleted on the way: they are refused anyway.

    That DELETE is also the signing transaction's first write, on every path:
    on SQLite it makes pysqlite issue BEGIN, so the savepoint of
    :func:`app.signing.store_signature` is nested in a transaction. A SAVEPOINT
    outside one would start its own, and its RELEASE would commit the
    signature before the mail to the supporter (tests/test_signing.py).
    """
    # On the connection: the session's execute would take the ORM's bulk-delete path for a table statement.
    db.session.connection().execute(_SWEEP, {"now": utcnow()})
    tokens = form_tokens(form)
    digest = sent_form_digest() if tokens and has_request_context() else ""
    for nonce, expires_at in tokens:
        db.session.add(UsedToken(nonce=nonce, expires_at=expires_at, form_digest=digest))


def sent_form_digest() -> str:
    """A keyed digest (HMAC-SHA256, hex) of every field and value this request posted.

    The same for the same form sent again, byte for byte; keyed, so the
    stored digest cannot be checked against a guess of what someone typed.
    """
    return client_hash(subkey("sent-form"), json.dumps(sorted(request.form.items(multi=True))))


def form_sent_already(form: Iterable[object]) -> bool:
    """True when this request posts exactly the form that spent one of its one-time tokens.

    That is a double click on Send, or Send pressed again while the first
    answer was on its way: the browser sends the same body twice and shows
    the answer to the second. The first was stored; the second must get the
    same answer, not "This form was sent already". Someone else using the
    same page (Back, on a shared computer) changes at least one field, and
    still gets the error. Looks at fields that found their token spent
    (``field.spent_token = nonce``) and at tokens a racing request spent
    first (``one_time_token``).
    """
    nonces = [getattr(field, "spent_token", None) for field in form] + [nonce for nonce, _ in form_tokens(form)]
    nonces = [nonce for nonce in nonces if nonce]
    if not nonces or not has_request_context():
        return False
    digest = sent_form_digest()
    stored = db.session.scalars(select(UsedToken.form_digest).where(UsedToken.nonce.in_(nonces))).all()
    return any(hmac.compare_digest(known, digest) for known in stored if known)


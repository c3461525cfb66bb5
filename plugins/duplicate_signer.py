"""Spam filter ``duplicate_signer``: one letter per supporter and campaign.

When the same address (normalised by :func:`app.spam.normalise_email`:
case, ``+tags``, Gmail dots) has signed this campaign already, accepted or
held, the submission is dropped: the supporter sees the ordinary thank-you
page, nothing is stored and no letter goes out. The answer is the same as for
a first signature, so the form cannot be used to learn who signed.
"""

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app import hookimpl
from app.extensions import db
from app.models import Signature
from app.spam import Verdict


@hookimpl
def check_submission(submission, campaign):
    signed = db.session.scalar(
        select(Signature.id)
        .where(Signature.campaign == campaign.slug, Signature.email_key == submission.email_key)
        .limit(1)
    )
    if signed is not None:
        # Logged only; the reason names no address.
        return Verdict.drop(_l("This address has signed this campaign already."))
    return None

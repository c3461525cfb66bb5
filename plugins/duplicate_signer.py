"""Spam filter ``duplicate_signer``: one letter per supporter and campaign.

When the same address (normalised by :func:`app.spam.normalise_email`:
case, ``+tags``, Gmail dots) has signed this campaign already, accepted or
held, the submission is dropped: the person at the form sees the ordinary
thank-you page, nothing new is stored and no letter goes out. The answer is the
same as for a first signature, so the form cannot be used to learn who signed;
the address's own mailbox is told "you signed this on D", with the link to the
letter (see :mod:`app.signing`).
"""

from typing import Any

from app import Submission, Verdict, earlier_signature, hookimpl, plugin_domain

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "duplicate_signer").lazy_gettext


@hookimpl
def check_submission(submission: Submission, campaign: Any) -> Verdict | None:
    signed = earlier_signature(campaign.slug, submission.email_key)
    if signed is not None:
        # Logged only; the reason names no address.
        return Verdict.drop(_l("This address has signed this campaign already."), repeats=signed)
    return None

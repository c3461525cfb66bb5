"""Spam filter ``disposable_email``: no throw-away addresses.

An address at a domain (or a subdomain of one) listed by the
``disposable-email-domains`` package is rejected with a clear message. Off by
default: see docs/spam.md for why.
"""

from typing import Any

from app import Submission, Verdict, hookimpl, plugin_domain

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "disposable_email").lazy_gettext


def disposable_domain(address: str) -> str | None:
    """The listed domain ``address`` belongs to, or None."""
    # Imported here: the list (~10,000 domains, 1.5 MB) would otherwise sit
    # in every worker, and the filter is off by default.
    from disposable_email_domains import blocklist

    labels = address.rpartition("@")[2].casefold().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        domain = ".".join(labels[start:])
        if domain in blocklist:
            return domain
    return None


@hookimpl
def check_submission(submission: Submission, campaign: Any) -> Verdict | None:
    domain = disposable_domain(submission.email)
    if domain:
        return Verdict.reject(
            _l("Addresses at %(domain)s are disposable. Please use an address you will keep, "
               "so that the campaign can reach you.", domain=domain)
        )
    return None

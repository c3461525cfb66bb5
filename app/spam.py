"""The spam filter contract: what a filter is given and what it may answer.

Filters are plugins implementing ``check_submission`` (and, to add a field,
``extend_action_form``); only those named in config ``SPAM_FILTERS`` run.
"""

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: How strict each verdict is; the strictest of all filters wins.
SEVERITY = {"hold": 1, "reject": 2}


@dataclass(frozen=True)
class Verdict:
    """A filter's objection: ``action`` is "reject" or "hold"; ``reason`` is shown or logged."""

    action: str
    reason: str

    @classmethod
    def reject(cls, reason):
        """The form comes back with ``reason`` shown; nothing is stored."""
        return cls("reject", reason)

    @classmethod
    def hold(cls, reason):
        """Stored as held; delivered only after a moderator approves."""
        return cls("hold", reason)


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
    form: object


def judge(submission, campaign, caller):
    """Run every enabled filter and return the strictest :class:`Verdict`, or None.

    Each filter is called on its own so that one that raises cannot hide the
    others' verdicts; a raising filter counts as a hold (the letter is neither
    lost nor sent unseen) and its traceback is logged.
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
    return max(verdicts, key=lambda v: SEVERITY[v.action], default=None)

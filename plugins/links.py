"""Spam filter ``links``: a letter with more than ``LINKS_MAX`` links waits for a moderator.

Counted: ``scheme://…`` and ``www.…``, in the letter and in the name and
organisation (they end up in the letter's signature block). Links that the
campaign's own letter contains (in any of its languages) are not counted, so
a supporter who keeps the suggested letter is never held for it.
"""

import re
from typing import Any

from flask import current_app

from app import Submission, Verdict, hookimpl, plugin_domain

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "links").lazy_gettext

#: This plugin's settings and their defaults (``register_settings``).
SETTINGS = {"LINKS_MAX": 2}

URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)[^\s<>\"']+", re.IGNORECASE)


def links(text: str | None) -> list[str]:
    """Every link in ``text``, in order."""
    return URL.findall(text or "")


@hookimpl
def register_settings() -> dict[str, Any]:
    return SETTINGS


@hookimpl
def check_submission(submission: Submission, campaign: Any) -> Verdict | None:
    suggested = {link for text in campaign.texts.values() for link in links(text.letter)}
    written = "\n".join((submission.message, submission.name, submission.organisation))
    added = [link for link in links(written) if link not in suggested]
    limit = current_app.config["LINKS_MAX"]
    if len(added) > limit:
        return Verdict.hold(_l("The letter contains %(count)d links (more than %(max)d).", count=len(added), max=limit))
    return None

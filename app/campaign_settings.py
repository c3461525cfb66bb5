"""A campaign file's optional settings: goal, sender, closing date, privacy link, contact, choice of targets, overflow.

Split from :mod:`app.campaigns`, which loads the file and reports every
problem with its key; these are the keys with one value each.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

#: A campaign's ``overflow``: what happens to letters TARGET_HOURLY_CAP holds back.
#: "wait": they go one by one as the cap allows; "digest": see app/digests.py.
OVERFLOW_MODES = ("wait", "digest")


def load_settings(data: dict[str, Any], fail: Callable[[str, str], None]) -> dict[str, Any]:
    """The campaign's optional settings, as :class:`Campaign` keywords.

    Those are goal, sender, closed_at, privacy_url, contact, targets_selectable
    and overflow; what is wrong with them goes to ``fail(key, message)``.
    """
    goal = data.get("goal")
    if goal is not None and (not isinstance(goal, int) or isinstance(goal, bool) or goal < 1):
        fail("goal", "must be a positive whole number")
    sender = data.get("sender", "")
    if not isinstance(sender, str):
        fail("sender", "must be a string")
    closed_at = _load_closed_at(data, fail)
    privacy_url = data.get("privacy_url")
    if privacy_url is not None and (not isinstance(privacy_url, str)
                                    or not privacy_url.startswith(("https://", "http://", "/"))):
        fail("privacy_url", "must be an https:// address")
    contact = data.get("contact")
    if contact is not None:
        try:
            contact = validate_email(contact, check_deliverability=False).normalized
        except (EmailNotValidError, TypeError) as exc:
            fail("contact", f"{contact!r} is not an email address ({exc})")
    if not isinstance(selectable := data.get("targets_selectable", False), bool):
        fail("targets_selectable", "must be true or false")
    overflow = data.get("overflow", "wait")
    if overflow not in OVERFLOW_MODES:
        fail("overflow", f"must be one of {', '.join(repr(mode) for mode in OVERFLOW_MODES)}, not {overflow!r}")
    return {"goal": goal, "sender": sender, "closed_at": closed_at, "privacy_url": privacy_url,
            "contact": contact, "targets_selectable": selectable, "overflow": overflow}


def _load_closed_at(data, fail):
    closed_at = data.get("closed_at")
    if isinstance(closed_at, str):
        try:
            closed_at = date.fromisoformat(closed_at)
        except ValueError:
            fail("closed_at", f"{closed_at!r} is not a date (YYYY-MM-DD)")
            closed_at = None
    if closed_at is not None and (isinstance(closed_at, datetime) or not isinstance(closed_at, date)):
        fail("closed_at", "must be a date, e.g. closed_at = 2026-12-31")
    return closed_at

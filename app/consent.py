"""The consent sentence a supporter agrees to when choosing "Yes" for future alerts."""

import hashlib

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

#: Shown above the Yes/No choice. Changing it (or its translation) changes the
#: version stored with every new consent.
CONSENT_SENTENCE = _l('If you would like to receive other urgent alerts, choose "Yes":')


def consent_text(language: str) -> str:
    """The consent sentence exactly as shown in ``language``."""
    with force_locale(language):
        return str(CONSENT_SENTENCE)


def consent_version(language: str) -> str:
    """SHA-256 (hex) of the consent sentence in ``language``: what a supporter agreed to.

    An organiser can prove which wording was shown by hashing the sentence from
    that version of translations/<language>/LC_MESSAGES/messages.po.
    """
    return hashlib.sha256(consent_text(language).encode()).hexdigest()

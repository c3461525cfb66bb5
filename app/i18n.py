"""Languages: the URL prefix decides; ``/`` negotiates from Accept-Language.

Two locales are kept apart: the visitor's (pages, the form) comes from the URL,
the letter's (what a target reads) from the campaign, and is applied with
``force_locale`` when the letter is built.
"""

import unicodedata

from babel import Locale
from flask import current_app, g, request
from flask_babel import get_locale

#: ISO 3166 codes CLDR lists that are not countries a supporter lives in.
NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}


def select_locale():
    """Flask-Babel's locale selector: the language in the URL, else the best match."""
    lang = getattr(g, "lang", None)
    if lang:
        return lang
    if request:
        return request.accept_languages.best_match(current_app.config["LANGUAGES"])
    return None


def best_language(languages, default):
    """The best match of the request's Accept-Language among ``languages``, else ``default``."""
    return request.accept_languages.best_match(languages) or default


def language_name(code):
    """A language's name in itself: English, Français, Русский, Қазақша."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def _sort_key(name):
    # Without accents first, then with them, so "Égypte" sorts beside "Egypte".
    plain = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    return (plain.casefold(), name)


def country_choices(language=None):
    """``[(code, name)]`` for every country, named and sorted in ``language``."""
    locale = Locale.parse(language) if language else get_locale()
    names = {
        code: name
        for code, name in locale.territories.items()
        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    }
    return sorted(names.items(), key=lambda item: _sort_key(item[1]))

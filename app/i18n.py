"""Languages: the URL prefix decides; ``/`` negotiates from a cookie, then Accept-Language.

Two locales are kept apart: the visitor's (pages, the form) comes from the URL,
the letter's (what a target reads) from the campaign, and is applied with
``force_locale`` when the letter is built.
"""

import functools
import os
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from babel import Locale
from flask import Blueprint, Flask, Response, abort, current_app, g, has_request_context, request
from flask_babel import Domain, get_locale
from markupsafe import Markup
from werkzeug.http import dump_cookie
from werkzeug.routing import BaseConverter

#: ISO 3166 codes CLDR lists that are not countries a supporter lives in.
NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}

#: The cookie that remembers the language a visitor last read the campaign in.
LANGUAGE_COOKIE = "clamor_lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600

#: Names a language's own speakers use on a language menu, where CLDR's
#: display name reads differently (CLDR says "қазақ тілі", "the Kazakh language"),
#: and for the other languages Clamor ships, CLDR's name as the menu shows it:
#: asking Babel loads that language's whole CLDR data (1.2 MB a language) into
#: every worker, for one word on a menu. Other languages still ask Babel.
LANGUAGE_NAMES = {"kk": "Қазақша", "en": "English", "fr": "Français", "ru": "Русский"}

#: Alphabet order, letter by letter, for languages whose order Unicode code
#: points get wrong. Letters in one string separated by "=" sort as equals
#: (Russian dictionaries file ё under е). Kazakh puts its own letters right
#: after the Russian ones they resemble, and і after ы.
ALPHABETS = {
    "ru": "а б в г д е=ё ж з и й к л м н о п р с т у ф х ц ч ш щ ъ ы ь э ю я",
    "kk": "а ә б в г ғ д е ё ж з и й к қ л м н ң о ө п р с т у ұ ү ф х һ ц ч ш щ ъ ы і ь э ю я",
}
_ALPHABET_RANKS = {
    lang: {letter: rank for rank, group in enumerate(table.split()) for letter in group.split("=")}
    for lang, table in ALPHABETS.items()
}
#: Latin ligatures a French reader files as two letters (Œ as OE).
_EXPANSIONS = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss"})


def select_locale() -> str | None:
    """Flask-Babel's locale selector.

    The language in the URL; for a URL no route matched (a 404), its first
    path segment if that is a language; else the remembered choice (cookie),
    else the best match of Accept-Language, else ``BABEL_DEFAULT_LOCALE``.
    """
    lang = getattr(g, "lang", None)
    if lang:
        return lang
    if not has_request_context():
        return None
    languages = current_app.config["LANGUAGES"]
    first_segment = request.path.lstrip("/").partition("/")[0]
    if first_segment in languages:
        return first_segment
    if request.cookies.get(LANGUAGE_COOKIE) in languages:
        return request.cookies[LANGUAGE_COOKIE]
    return negotiate(languages)


def best_language(languages: Collection[str], default: str) -> str:
    """The language to send a visitor to, among ``languages``.

    The language remembered in the cookie if it is one of them; else the best
    match of the request's Accept-Language (q-values honoured, "fr-CA" matches
    "fr"); else ``default``.
    """
    remembered = request.cookies.get(LANGUAGE_COOKIE)
    if remembered in languages:
        return remembered
    return negotiate(languages) or default


def negotiate(languages: Iterable[str]) -> str | None:
    """The best of ``languages`` for the request's Accept-Language, or None.

    The most preferred language tag (highest q) that any of ``languages``
    serves wins, a regional tag matching its language ("fr-CA" is served by
    "fr"). Werkzeug's ``best_match`` prefers any exact match, even one the
    visitor ranked lower, so "fr-CA, en;q=0.8" would get English.
    """
    offered = {lang.lower(): lang for lang in languages}
    for tag, quality in request.accept_languages:
        tag = tag.lower().replace("_", "-")
        if quality <= 0 or tag == "*":
            continue
        if tag in offered:
            return offered[tag]
        primary = tag.split("-")[0]
        for code, lang in offered.items():
            if code.split("-")[0] == primary:
                return lang
    return None


def remember_language(response: Response, lang: str) -> Response:
    """Set the language cookie on ``response`` unless the request already carries ``lang``.

    The cookie holds a language code and nothing else: no id, no tracking;
    HttpOnly and SameSite=Lax, Secure when the session cookie is.
    """
    # ``in`` first: Werkzeug's ``get`` of a missing cookie builds and catches an exception.
    cookies = request.cookies
    if LANGUAGE_COOKIE not in cookies or cookies[LANGUAGE_COOKIE] != lang:
        secure = current_app.config.get("SESSION_COOKIE_SECURE", False)
        response.headers.add("Set-Cookie", _language_cookie(lang, secure))
    return response


@functools.lru_cache(maxsize=64)
def _language_cookie(lang, secure):
    # The same header for every visitor of a language, so it is drawn once
    # (it cost a twelfth of a page view): Max-Age without the Expires date
    # Werkzeug would redraw each time; every browser in use reads Max-Age.
    return dump_cookie(LANGUAGE_COOKIE, lang, max_age=LANGUAGE_COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                       secure=bool(secure), sync_expires=False)


_DOUBLE_FULL_STOP = re.compile(r"(?<=[^\W\d_])\.\.(?=\s|$)")


def one_full_stop(text: object) -> str:
    """``text`` with a full stop doubled after an abbreviation made single.

    A long date ends with one in some languages ("1 декабря 2026 г.", Ukrainian
    "1 грудня 2026 р."); where a sentence ends with the date, the
    abbreviation's full stop is the sentence's: "… 2026 г.", never "… 2026 г..".
    """
    fixed = _DOUBLE_FULL_STOP.sub(".", str(text))
    # A translated template string may be Markup (escaped already): keep it so.
    return Markup(fixed) if isinstance(text, Markup) else fixed


def page_language() -> str:
    """The language of the page being rendered, for ``<html lang>``."""
    locale = get_locale()
    return str(locale).replace("_", "-") if locale else current_app.config["BABEL_DEFAULT_LOCALE"]


def language_name(code: str) -> str:
    """A language's name in itself, as a language menu shows it: English, Français, Русский, Қазақша."""
    if code in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[code]
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def language_label(code: str) -> str:
    """``code`` with its English name, for a message to an organiser: "kk (Kazakh)"."""
    try:
        name = Locale.parse(code).get_display_name("en")
    except (ValueError, TypeError):
        name = None
    return f"{code} ({name})" if name else code


def collation_key(text: str, language: str) -> tuple[list[tuple[int, int]], str, str]:
    """A sort key that orders ``text`` the way a reader of ``language`` expects.

    Not full Unicode collation (PyICU is not available): Russian and Kazakh
    follow their alphabet tables; other languages compare letters without
    their accents first ("Égypte" beside "Egypte", "Îles" under I), and only
    then with them, so the order is total and stable.
    """
    folded = text.casefold().translate(_EXPANSIONS)
    ranks = _ALPHABET_RANKS.get(language.split("_")[0].split("-")[0])
    primary = []
    for char in folded:
        if ranks is not None and char in ranks:
            primary.append((2, ranks[char]))
            continue
        base = unicodedata.normalize("NFD", char)[0]
        if ranks is not None and base in ranks:
            # A letter outside the table that only differs by an accent.
            primary.append((2, ranks[base]))
        elif base.isalpha():
            primary.append((3, ord(base)))
        else:
            # Spaces, hyphens and digits before letters: "Жаңа Зеландия" before "Жаңалар".
            primary.append((1, ord(base)))
    return (primary, folded, text)


def country_choices(language: str | None = None) -> list[tuple[str, str]]:
    """``[(code, name)]`` for every country, named and sorted in ``language`` (default: the page's)."""
    locale = Locale.parse(language) if language else get_locale()
    names = {
        code: name
        for code, name in locale.territories.items()
        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    }
    return sorted(names.items(), key=lambda item: collation_key(item[1], locale.language))


def plugin_domain(plugin_file: str | os.PathLike[str], domain: str) -> Domain:
    """A Flask-Babel :class:`~flask_babel.Domain` for a plugin's own catalogue.

    The catalogue lives beside the plugin, in
    ``translations/<lang>/LC_MESSAGES/<domain>.mo``; a plugin translates with
    ``plugin_domain(__file__, "name").gettext`` (and ``lazy_gettext``,
    ``ngettext``), in whatever locale the page or the letter is in. A language
    the plugin has no catalogue for falls back to the English msgid.
    """
    return Domain(str(Path(plugin_file).resolve().parent / "translations"), domain=domain)


#: Strings a language legitimately writes exactly as English does (a cognate,
#: a loanword). Everything else whose translation equals its msgid counts as
#: "copied from English". Keep this short: each entry hides a possible copy.
SAME_AS_ENGLISH = {
    "fr": {"%(name)s via %(campaign)s", "Organisation", "Pages", "Signatures"},
}
_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}")


def legitimately_english(language: str, msgid: str) -> bool:
    """True if ``msgid`` may stay as it is in ``language``: placeholders and punctuation only, or allow-listed."""
    if not any(c.isalpha() for c in _PLACEHOLDER.sub("", msgid)):
        return True
    return msgid in SAME_AS_ENGLISH.get(language, ())


@dataclass
class CatalogueStatus:
    """How far one language's catalogue of one gettext domain is translated."""

    language: str
    domain: str
    #: The .po file (it may not exist).
    path: Path
    total: int = 0
    translated: int = 0
    missing: int = 0
    fuzzy: int = 0
    #: Translated as the English itself (msgstr == msgid), not allow-listed.
    copied: int = 0
    copied_ids: list[str] = field(default_factory=list)


def catalogue_domains(
    root: str | os.PathLike[str], instance_path: str | os.PathLike[str] | None = None,
) -> list[tuple[str, Path]]:
    """``[(domain, folder)]``: the app's catalogue and every plugin's that ships a .pot.

    The built-in plugins' catalogues live in ``plugins/translations/``, a
    deployment's single-file plugins' in ``instance/plugins/translations/``.
    """
    root = Path(root)
    domains = [("messages", root / "translations")]
    folders = [root / "plugins" / "translations"]
    if instance_path:
        folders.append(Path(instance_path) / "plugins" / "translations")
    for folder in folders:
        domains += [(pot.stem, folder) for pot in sorted(folder.glob("*.pot"))]
    return domains


def catalogue_status(
    root: str | os.PathLike[str], languages: Iterable[str] = (),
    instance_path: str | os.PathLike[str] | None = None,
) -> list[CatalogueStatus]:
    """A :class:`CatalogueStatus` per language and domain, counted against each domain's .pot.

    The languages are ``languages`` plus every language that has a catalogue
    of the app's domain; a language without a catalogue counts as missing
    everything.
    """
    from babel.messages.pofile import read_po

    domains = catalogue_domains(root, instance_path)
    found = {p.parent.parent.name for p in (Path(root) / "translations").glob("*/LC_MESSAGES/messages.po")}
    statuses = []
    for language in sorted(set(languages) | found):
        for domain, folder in domains:
            with open(folder / f"{domain}.pot", "rb") as fh:
                template = [m for m in read_po(fh) if m.id]
            path = folder / language / "LC_MESSAGES" / f"{domain}.po"
            catalog = None
            if path.exists():
                with open(path, "rb") as fh:
                    catalog = read_po(fh, locale=language)
            status = CatalogueStatus(language, domain, path, total=len(template))
            for entry in template:
                message = catalog.get(entry.id, entry.context) if catalog is not None else None
                strings = message.string if message is not None and isinstance(message.string, tuple) else (
                    (message.string,) if message is not None else ("",))
                ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
                if not all(strings):
                    status.missing += 1
                elif message.fuzzy:
                    status.fuzzy += 1
                elif language != "en" and any(s in ids for s in strings) and not legitimately_english(language, ids[0]):
                    status.copied += 1
                    status.copied_ids.append(ids[0])
                else:
                    status.translated += 1
            statuses.append(status)
    return statuses


# -- the language in the URL ----------------------------------------------------------------------

class LanguageConverter(BaseConverter):
    """A language code in the first path segment (``fr``, ``pt-BR``): never ``favicon.ico`` or ``robots.txt``.

    Without it ``/<lang>/`` would catch every name a browser or a crawler asks
    for at the root: ``/favicon.ico`` answered 308 to ``/favicon.ico/``, then 404.
    """

    regex = r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?"


def register_language_urls(bp: Blueprint) -> None:
    """Give blueprint ``bp`` the language prefix: the ``lang`` converter and the hooks around it.

    Promises, for every route of ``bp`` with a ``<lang:lang>`` segment: the
    view never sees ``lang``, it is in ``g.lang`` (a language not in
    ``LANGUAGES`` is a 404); ``url_for`` inside the request fills ``lang`` in
    from ``g.lang``; a campaign page read successfully is remembered in the
    language cookie (:func:`remember_language`); templates get
    ``language_name``, ``page_language`` and ``country_name``. Call it before
    the blueprint's routes are declared: they use the converter.
    """
    from .delivery import country_name

    bp.record_once(lambda state: state.app.url_map.converters.setdefault("lang", LanguageConverter))
    bp.url_value_preprocessor(_pull_lang)
    bp.url_defaults(_add_lang)
    bp.after_request(_remember_language)
    bp.app_context_processor(lambda: {"language_name": language_name, "page_language": page_language,
                                      "country_name": lambda code: country_name(code, g.lang)})


def _pull_lang(endpoint, values):
    if values and "lang" in values:
        g.lang = values.pop("lang")
        if g.lang not in current_app.config["LANGUAGES"]:
            g.lang = None
            abort(404)


def _add_lang(endpoint, values):
    if ("lang" not in values and getattr(g, "lang", None)
            and current_app.url_map.is_endpoint_expecting(endpoint, "lang")):
        values["lang"] = g.lang


def _remember_language(response):
    # The language of every campaign page a visitor reads is remembered, so
    # that ``/`` (a bookmark, the short link on a leaflet) brings them back to
    # it: they either followed a link in that language or chose it in the
    # switcher. A page that failed is no choice.
    # Not from inside another site's frame: that is no choice on this site,
    # and the cookie would be a third-party one.
    lang = getattr(g, "lang", None)
    if lang and request.method == "GET" and response.status_code == 200 and not g.get("embed"):
        remember_language(response, lang)
    return response


def init_app(app: Flask) -> None:
    """Bind Flask-Babel to ``app`` with :func:`select_locale`, and give templates the ``one_full_stop`` filter."""
    from .extensions import babel

    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.filters["one_full_stop"] = one_full_stop

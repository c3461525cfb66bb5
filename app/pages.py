"""The campaign page, rendered once and filled in per request.

A campaign's traffic is one spike of people reading the same page. Most of
that page (the text, the country list with its ~250 options, the letter, the
targets) is the same for everyone reading it in one language, so it is
rendered once per (campaign, language, route) and kept as a list of fixed
HTML pieces with gaps between them. Per request only the gaps are drawn:

- the CSRF token (it lives in the visitor's session);
- the counter, read at most every :data:`COUNT_MAX_AGE` seconds per process
  (sooner after a signature stored by this process);
- the fields a spam filter marks :attr:`per_request` (the number question's
  number, the fill time's stamp), drawn in their place with the same macro
  the full page uses.

The cache is keyed on the :class:`~app.campaigns.Campaign` object itself: a
campaign file reloaded on edit is a new object, hence a fresh render, and the
old entry goes when nothing refers to the old object any more.

A POST with mistakes is drawn in full (:func:`render_full`): it shows what the
supporter typed and the errors. Both paths render the same template with the
same arguments; only the gaps differ (tests/test_page_cache.py checks it).
"""

import hashlib
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, g, render_template, session, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup, escape

from . import tally
from .consent import CONSENT_SENTENCE
from .forms import BuiltinMessages, PostedForm, extra_fields, make_action_form
from .signed_values import SignedValues

if TYPE_CHECKING:
    from .campaigns import Campaign

#: Where the cache lives (``app.extensions[EXTENSION]``).
EXTENSION = "clamor.pages"
#: The counter on a cached page is at most this old (seconds), per process.
COUNT_MAX_AGE = 5

#: Separates fixed HTML from a gap in the first render. Contains a NUL, which
#: nothing in a campaign file or a translation can (Jinja escapes nothing
#: into one, and campaign files refuse control characters).
_GAP = "\x00clamor-gap:"


def is_per_request(field: object) -> bool:
    """True when ``field`` must be drawn anew for every request (see docs/plugins.md, extend_action_form)."""
    return bool(getattr(field, "per_request", False))


def _macros():
    return current_app.jinja_env.get_template("_action_fields.html").module


class _Parts:
    """What the template draws for its gaps: every part, in full (an error re-render)."""

    def __init__(self, form, count, campaign):
        self.form, self.count, self.campaign = form, count, campaign

    def csrf_token(self):
        return self.form.csrf_token()

    def counter(self):
        return Markup(render_template("_counter.html", campaign=self.campaign, count=self.count))

    def final_count(self):
        return _macros().final_count(self.count)

    def field(self, field):
        return _macros().extra_field(field)


class _Gaps(_Parts):
    """The first render of a cached page: a marker where a per-request part goes."""

    def __init__(self, form, campaign):
        super().__init__(form, 0, campaign)

    def csrf_token(self):
        return Markup(_GAP + "csrf\x00")

    def counter(self):
        return Markup(_GAP + "counter\x00")

    def final_count(self):
        return Markup(_GAP + "final_count\x00")

    def field(self, field):
        if is_per_request(field):
            return Markup(f"{_GAP}field:{field.name}\x00")
        return super().field(field)


def render_full(
    campaign: "Campaign", language: str, form: FlaskForm, error: Any = None, embed: bool = False,
    parts: "_Parts | None" = None,
) -> str:
    """The campaign page drawn in full for ``form`` (with its data and errors)."""
    count = tally.accepted(campaign.slug)
    return render_template(
        "campaign.html",
        campaign=campaign,
        text=campaign.text(language),
        form=form,
        extra_fields=extra_fields(form),
        error=error,
        count=count,
        parts=parts or _Parts(form, count, campaign),
        consent_sentence=CONSENT_SENTENCE,
        privacy_url=campaign.privacy_url or url_for("public.privacy", slug=campaign.slug),
        embed=embed,
        form_endpoint="public.embed" if embed else "public.campaign_page",
    )


class _Entry:
    """One cached page: fixed pieces and gaps, and how to draw the per-request fields."""

    def __init__(self, campaign, pieces, gaps, fields_form):
        self.campaign = weakref.ref(campaign)
        self.pieces = pieces
        self.gaps = gaps
        #: A form holding only the per-request fields, or None when there are none.
        self.fields_form = fields_form
        #: (count, its HTML) last drawn for this page's language.
        self.counter = (None, "")
        self.final_count = (None, "")


class PageCache:
    """The cached campaign pages of one app, and the counter as this process last read it."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str, bool, bool], _Entry] = {}
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        #: (secret, serializer) for CSRF tokens (see :func:`_csrf_token`).
        self.csrf_serializer: tuple[str | bytes, SignedValues] | None = None

    def page(self, campaign: "Campaign", language: str, variant: bool, embed: bool = False) -> str:
        """The campaign page for a GET: the cached pieces, with this request's parts drawn in."""
        key = (id(campaign), language, variant, embed)
        entry = self._entries.get(key)
        if entry is None or entry.campaign() is not campaign:
            entry = self._build(campaign, language, embed)
            with self._lock:
                # Entries of campaigns that were replaced (their object is gone) go now.
                for stale in [k for k, e in self._entries.items() if e.campaign() is None]:
                    del self._entries[stale]
                self._entries[key] = entry
        fields = entry.fields_form(formdata=None) if entry.fields_form is not None else None
        out = []
        for piece, gap in zip(entry.pieces, entry.gaps, strict=True):
            out.append(piece)
            if gap is None:
                continue
            if gap == "csrf":
                out.append(_csrf_input())
            elif gap == "counter":
                count = self.count(campaign.slug)
                if entry.counter[0] != count:
                    entry.counter = (count, render_template("_counter.html", campaign=campaign, count=count))
                out.append(entry.counter[1])
            elif gap == "final_count":
                count = self.count(campaign.slug)
                if entry.final_count[0] != count:
                    entry.final_count = (count, str(_macros().final_count(count)))
                out.append(entry.final_count[1])
            else:
                out.append(str(_macros().extra_field(fields[gap.removeprefix("field:")])))
        return "".join(out)

    def _build(self, campaign, language, embed):
        state = current_app.extensions["clamor"]
        form_class = make_action_form(campaign, language, state.filters["extend_action_form"])
        form = form_class(formdata=None)
        html = render_full(campaign, language, form, embed=embed, parts=_Gaps(form, campaign))
        pieces, gaps = [], []
        for i, chunk in enumerate(html.split(_GAP)):
            if i == 0:
                pieces.append(chunk)
                continue
            gap, _, rest = chunk.partition("\x00")
            gaps.append(gap)
            pieces.append(rest)
        gaps.append(None)
        per_request = {f.name for f in extra_fields(form) if is_per_request(f)}
        fields_form = None
        if per_request:
            unbound = {name: field for name, field in form_class._unbound_fields if name in per_request}
            fields_form = type("PerRequestFields", (PostedForm,), {
                **unbound,
                "Meta": type("Meta", (), {"csrf": False, "get_translations": lambda self, form: BuiltinMessages()}),
            })
        return _Entry(campaign, pieces, gaps, fields_form)

    def count(self, slug: str) -> int:
        """The public counter of ``slug``, read from the database at most every COUNT_MAX_AGE seconds."""
        now = time.monotonic()
        cached = self._counts.get(slug)
        if cached is None or now - cached[1] > COUNT_MAX_AGE:
            cached = self._counts[slug] = (tally.accepted(slug), now)
        return cached[0]

    def count_changed(self, slug: str) -> None:
        """A signature of ``slug`` was just stored or confirmed by this process: read the counter afresh."""
        self._counts.pop(slug, None)


def _csrf_input():
    # Exactly what WTForms draws for Flask-WTF's csrf_token field.
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    field = escape(name)
    return f'<input id="{field}" name="{field}" type="hidden" value="{escape(_csrf_token(name))}">'


def _csrf_token(name):
    """Flask-WTF's :func:`~flask_wtf.csrf.generate_csrf`, with its serializer made once per app.

    The same token, stored the same way (raw in the session, signed in the
    form), so Flask-WTF's own check validates it; only the serializer differs:
    Flask-WTF builds one anew per call, this one is kept, and is of the
    cheaper class in app/signed_values.py (the same format and HMAC).
    """
    # Each proxy (g, session, current_app) is looked up once: on every first
    # visit the lookups cost a third as much as signing the token.
    request_globals = g._get_current_object()
    token = request_globals.get(name)
    if token is None:
        app = current_app._get_current_object()
        visitor = session._get_current_object()
        raw = visitor.get(name)
        if raw is None:
            raw = visitor[name] = hashlib.sha1(os.urandom(64)).hexdigest()
        secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
        cache = page_cache(app)
        if cache.csrf_serializer is None or cache.csrf_serializer[0] != secret:
            cache.csrf_serializer = (secret, SignedValues(secret, salt="wtf-csrf-token"))
        token = cache.csrf_serializer[1].dumps(raw)
        setattr(request_globals, name, token)
    return token


def page_cache(app: Flask | None = None) -> PageCache:
    """The app's :class:`PageCache` (made on first use)."""
    app = app or current_app._get_current_object()
    cache = app.extensions.get(EXTENSION)
    if cache is None:
        cache = app.extensions.setdefault(EXTENSION, PageCache())
    return cache

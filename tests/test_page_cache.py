"""The cached campaign page (app/pages.py): the same HTML as a full render, per request only
what must change, a fresh render for a new Campaign object; the names a browser or crawler
asks for at the root (favicon.ico, robots.txt, …) never fall into the language route."""

import dataclasses
import re

import pytest
from conftest import SLUG, form_fields, sign

from app.forms import make_action_form
from app.pages import render_full

#: What differs between two draws of the same page for the same visitor.
VOLATILE = [
    re.compile(r'(name="(?:csrf_token|number_question-token|fill_time)"[^>]*?value=")[^"]*'),
    re.compile(r'(<label for="number_question">[^<]*?)\d{4}'),
]


def masked(html):
    for pattern in VOLATILE:
        html = pattern.sub(r"\1…", html)
    return html


def full_render(app, client, path, embed=False):
    """The page drawn the slow way (a fresh form, every part rendered), in a request like ``path``'s."""
    with app.test_request_context(path, headers={"Cookie": client.get_cookie("session") and
                                                 f"session={client.get_cookie('session').value}" or ""}):
        app.preprocess_request()
        from flask import g

        campaign = app.extensions["clamor"].campaigns[SLUG]
        form_class = make_action_form(campaign, g.lang, app.extensions["clamor"].filters["extend_action_form"])
        return render_full(campaign, g.lang, form_class(formdata=None), embed=embed)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "fr", "ru", "kk"])
def test_the_cached_page_is_a_full_render_with_only_the_volatile_parts_changed(app, client, lang):
    sign(client, email="first@example.org")  # a counter that is not 0
    for path, embed in ((f"/{lang}/{SLUG}/", False), (f"/{lang}/", False), (f"/{lang}/{SLUG}/embed", True)):
        first = client.get(path).get_data(as_text=True)
        second = client.get(path).get_data(as_text=True)  # from the cache
        fresh = full_render(app, client, path, embed=embed)
        assert masked(second) == masked(fresh), path
        assert masked(first) == masked(second)
        # Per request: a new number (or at least a new signed token for it).
        assert form_fields(first)["number_question"] != form_fields(second)["number_question"] or \
            form_fields(first)["number_question-token"] != form_fields(second)["number_question-token"]
        assert "1 " in re.search(r'<div class="counter">\s*<p>([^<]*)', second).group(1)
        assert second.count('<option value="') > 240


def test_a_visitor_signs_from_the_cached_page_and_the_counter_moves_at_once(client):
    client.get(f"/fr/{SLUG}/")
    assert sign(client, email="a@example.org").status_code == 303
    assert sign(client, email="b@example.org").status_code == 303
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert "2 people have signed so far." in page
    # A second visitor gets their own CSRF token, not the first one's.
    other = client.application.test_client().get(f"/en/{SLUG}/").get_data(as_text=True)
    assert form_fields(other)["csrf_token"] != form_fields(page)["csrf_token"]


@pytest.mark.slow
def test_a_new_campaign_object_is_a_fresh_render(app, client):
    assert "Free union activist Erzhan" in client.get(f"/en/{SLUG}/").get_data(as_text=True)
    campaigns = app.extensions["clamor"].campaigns
    old = campaigns[SLUG]
    texts = {lang: dataclasses.replace(text, title=f"Edited title {lang}") for lang, text in old.texts.items()}
    campaigns[SLUG] = dataclasses.replace(old, texts=texts)
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert "<h1>Edited title en</h1>" in page
    assert "Edited title fr" in client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    assert sign(client, lang="en", email="after-edit@example.org").status_code == 303


PER_REQUEST_PLUGIN = '''
import secrets

from markupsafe import Markup
from wtforms import HiddenField, StringField

from app import hookimpl


class Ticket(HiddenField):
    draw_alone = True
    per_request = True

    def process(self, formdata, data=None, extra_filters=None):
        super().process(formdata, data, extra_filters)
        self.data = secrets.token_hex(8)


@hookimpl
def extend_action_form(form_class, campaign):
    form_class.ticket = Ticket()
    form_class.fixed_note = StringField("Fixed note")
'''


@pytest.mark.slow
def test_a_plugin_field_marked_per_request_is_drawn_per_request_in_its_place(make_app, instance_path):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "ticket.py").write_text(PER_REQUEST_PLUGIN)
    app = make_app(SPAM_FILTERS=["number_question", "ticket"])
    client = app.test_client()
    pages = [client.get(f"/fr/{SLUG}/").get_data(as_text=True) for _ in range(3)]
    tickets = {form_fields(page)["ticket"] for page in pages}
    assert len(tickets) == 3
    # In its place: among the other plugins' fields, before the fixed one declared after it.
    for page in pages:
        assert page.index('name="ticket"') < page.index('name="fixed_note"') < page.index('name="opt_in"')
    assert masked(re.sub(r'(name="ticket" type="hidden" value=")[^"]*', r"\1…", pages[1])) == \
        masked(re.sub(r'(name="ticket" type="hidden" value=")[^"]*', r"\1…", pages[2]))
    assert sign(client, fixed_note="x").status_code == 303


#: Names browsers, crawlers and scanners ask for at the root.
RESERVED = ["/favicon.ico", "/robots.txt", "/apple-touch-icon.png", "/apple-touch-icon-precomposed.png",
            "/sitemap.xml", "/humans.txt", "/ads.txt", "/security.txt", "/.well-known/security.txt",
            "/browserconfig.xml", "/site.webmanifest", "/manifest.json", "/crossdomain.xml"]


def test_reserved_names_never_fall_into_the_language_route(client):
    for path in RESERVED:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert "Location" not in response.headers, path
        assert "clamor_lang" not in response.headers.get("Set-Cookie", ""), path
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/vnd.microsoft.icon"
    assert icon.data[:4] == b"\x00\x00\x01\x00" and "max-age=86400" in icon.headers["Cache-Control"]
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots.mimetype == "text/plain"
    lines = robots.get_data(as_text=True).splitlines()
    assert lines[0] == "User-agent: *" and "Disallow: /admin/" in lines
    for lang in ("en", "fr", "ru", "kk"):
        for page in ("letter", "confirm", "unsubscribe"):
            assert f"Disallow: /{lang}/{page}/" in lines
    assert f"Disallow: /fr/{SLUG}/" not in lines
    # Languages still work, and an unknown one is a 404.
    assert client.get(f"/fr/{SLUG}/").status_code == 200
    assert client.get(f"/xx/{SLUG}/").status_code == 404

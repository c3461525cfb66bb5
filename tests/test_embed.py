"""The campaign in an <iframe> on another site (EMBED_ORIGINS): headers, and a supporter
signing inside the frame in Chromium; an origin not listed sees the frame refused."""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import SLUG, LiveServer, form_fields

from app.models import Signature


@pytest.mark.slow
def test_framing_is_refused_everywhere_without_embed_origins(client):
    for path in (f"/en/{SLUG}/", f"/en/{SLUG}/embed", f"/en/{SLUG}/embed/thanks", f"/en/{SLUG}/thanks"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


@pytest.mark.slow
def test_embed_origins_may_frame_the_embed_routes_only(make_app):
    app = make_app(EMBED_ORIGINS=["https://union.org", "https://friends.example"])
    client = app.test_client()
    for path in (f"/en/{SLUG}/embed", f"/en/{SLUG}/embed/thanks"):
        response = client.get(path)
        assert "X-Frame-Options" not in response.headers, path
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors https://union.org https://friends.example" in csp and "'none'" in csp  # object-src
    embedded = app.test_client().get(f"/en/{SLUG}/embed")
    [cookie] = embedded.headers.getlist("Set-Cookie")  # no language cookie from inside a frame
    assert cookie.startswith("clamor_embed_session=") and "SameSite=None" in cookie and "Secure" in cookie
    html = embedded.get_data(as_text=True)
    assert 'class="languages"' not in html and f'action="/en/{SLUG}/embed"' in html
    # Everywhere else: DENY, and the site's own session cookie stays Lax.
    page = client.get(f"/en/{SLUG}/")
    assert (page.headers["X-Frame-Options"] == "DENY"
            and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"])
    cookies = app.test_client().get(f"/en/{SLUG}/").headers.getlist("Set-Cookie")
    assert any(c.startswith("session=") for c in cookies)
    assert all("SameSite=Lax" in c and "SameSite=None" not in c for c in cookies)
    assert 'class="languages"' in page.get_data(as_text=True)


@pytest.mark.slow
def test_a_form_posted_in_the_embed_leads_to_the_embedded_thanks(make_app):
    app = make_app(EMBED_ORIGINS=["https://union.org"])
    client = app.test_client()
    # Over HTTPS: the embed's session cookie is Secure, and the client keeps it for HTTPS only.
    https = {"base_url": "https://localhost"}
    data = form_fields(client.get(f"/en/{SLUG}/embed", **https).get_data(as_text=True))
    data.update(name="Anna", email="anna@example.org", country="FR", message="Free him.", opt_in="no")
    # Flask-WTF checks the Referer on HTTPS.
    response = client.post(f"/en/{SLUG}/embed", data=data, headers={"Referer": f"https://localhost/en/{SLUG}/embed"},
                           **https)
    assert response.status_code == 303 and response.headers["Location"] == f"/en/{SLUG}/embed/thanks"
    thanks = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thank you!" in thanks and 'class="languages"' not in thanks
    assert f'href="/en/{SLUG}/embed"' in thanks


def test_bad_embed_origins_stop_start_up(make_app):
    from app import ConfigError

    with pytest.raises(ConfigError, match="EMBED_ORIGINS"):
        make_app(EMBED_ORIGINS=["https://union.org/campaigns"])


class _Outer:
    """Another site on its own port: one page with an <iframe> (``page`` is set once the frame's address is known)."""

    def __init__(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.page = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _embed_setup(make_app, listed):
    """(app, live server, outer site): http://localhost:A framing http://localhost:B/…/embed.

    Two origins of one site. Cross-site (127.0.0.1 framing localhost) the
    frame gets no cookie in this Chromium over plain HTTP, whatever its
    SameSite (see docs/deploying.md): that needs HTTPS on both sides.
    """
    outer = _Outer()
    origin = outer.url.rstrip("/")
    app = make_app(EMBED_ORIGINS=[origin if listed else "https://union.org"])
    server = LiveServer(app).__enter__()
    frame_url = server.url.replace("127.0.0.1", "localhost") + f"/en/{SLUG}/embed"
    outer.page = (f'<!doctype html><title>Union</title><h1>Our union</h1>'
                  f'<iframe src="{frame_url}" width="700" height="900"></iframe>')
    return app, server, outer


@pytest.mark.browser
def test_a_supporter_signs_inside_a_frame_on_another_origin_in_chromium(browser, make_app):
    app, server, outer = _embed_setup(make_app, listed=True)
    try:
        page = browser.new_page(viewport={"width": 800, "height": 1000})
        page.goto(outer.url)
        frame = page.frame_locator("iframe")
        frame.locator("#name").fill("Camille Martin")
        frame.locator("#email").fill("camille@example.org")
        label = frame.locator('label[for="number_question"]').inner_text()
        frame.locator("#number_question").fill(re.search(r"\d{4}", label).group(0))
        frame.locator("button[type=submit]").click()
        frame.locator("h1").filter(has_text="Thank you!").wait_for(timeout=10_000)
        # The page around it did not move; the thank-you page is in the frame.
        assert page.url == outer.url and page.locator("h1").first.inner_text() == "Our union"
        child = page.frames[1]
        assert child.url.endswith(f"/en/{SLUG}/embed/thanks") and child.url.startswith("http://localhost:")
        with app.app_context():
            assert Signature.query.one().name == "Camille Martin"
        page.close()
    finally:
        outer.close()
        server.__exit__()


@pytest.mark.browser
def test_a_site_not_listed_sees_the_frame_refused_in_chromium(browser, make_app):
    app, server, outer = _embed_setup(make_app, listed=False)
    try:
        page = browser.new_page()
        refused = []
        page.on("console", lambda message: refused.append(message.text))
        page.goto(outer.url)
        page.wait_for_timeout(1000)
        child = page.frames[1]
        # Chromium replaces a frame that frame-ancestors refuses with its own error page.
        assert child.url.startswith("chrome-error://") or child.url == "about:blank" or \
            "Free union activist" not in child.content()
        assert page.frame_locator("iframe").locator("form").count() == 0
        assert any("frame-ancestors" in text for text in refused)
        page.close()
    finally:
        outer.close()
        server.__exit__()

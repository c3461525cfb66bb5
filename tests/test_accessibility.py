"""Every page a supporter or an organiser sees, checked by axe-core (WCAG 2.1 A and AA) in Debian's Chromium.

axe-core is Deque's accessibility engine, the one browsers' own audits use;
its script comes bundled in the axe-playwright-python wheel (requirements/test.lock)
and is run with Playwright's evaluate, so no page of Clamor has to let a
script in: their Content-Security-Policy stays as it is served.
"""

import importlib.resources
import re

import pytest
from conftest import ORGANISER, PASSWORD, SLUG, LiveServer, add_organiser, sign, status_path

pytestmark = pytest.mark.browser

#: WCAG 2.0 and 2.1, levels A and AA: what a public body's site is held to.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page):
    """axe-core's violations on ``page`` as it is now: one line each, its rule and the elements it found."""
    source = (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text()
    page.evaluate(source)
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    # Rules that found what they look for and passed it: none would mean axe checked nothing.
    assert result["passes"], "axe-core checked nothing"
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + ", ".join(" ".join(node["target"]) for node in violation["nodes"])
        for violation in result["violations"]
    ]


def assert_accessible(page, url):
    page.goto(url)
    assert page.locator("body").count() == 1
    found = axe_violations(page)
    assert found == [], f"{url}:\n" + "\n".join(found)


def test_axe_core_finds_what_it_is_for(browser):
    """The check can fail: a picture without a text alternative and a field without a label are found."""
    page = browser.new_page()
    page.set_content('<!doctype html><html lang="en"><title>t</title><main><img src="x.png"><input></main></html>')
    found = " ".join(axe_violations(page))
    assert "image-alt" in found and "label" in found
    page.close()


@pytest.mark.parametrize("lang", ["fr", "ru", "kk", "en"])
def test_the_supporters_pages_pass_axe_core_in_each_language(browser, make_app, lang):
    app = make_app()
    sign(app.test_client(), lang=lang)
    with LiveServer(app) as server:
        page = browser.new_page()
        for path in (f"/{lang}/{SLUG}/", f"/{lang}/{SLUG}/embed", f"/{lang}/{SLUG}/thanks",
                     f"/{lang}/{SLUG}/privacy", status_path(app)):
            assert_accessible(page, server.url + path)
        # The form sent empty: its errors shown next to the fields they concern.
        page.goto(f"{server.url}/{lang}/{SLUG}/")
        page.fill("#message", "")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("[aria-invalid=true]").count() >= 1
        found = axe_violations(page)
        assert found == [], "the form with its errors:\n" + "\n".join(found)
        page.close()


def test_the_organisers_pages_pass_axe_core(browser, make_app, hold_filter):
    app = make_app(SPAM_FILTERS=hold_filter)
    add_organiser(app)
    sign(app.test_client(), name="Held Harry", email="harry@example.org", message="please hold me")
    sign(app.test_client(), email="dana@example.org")
    with LiveServer(app) as server:
        page = browser.new_page()
        assert_accessible(page, f"{server.url}/admin/login")
        page.fill("#email", ORGANISER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/admin/"))
        for path in ("/admin/", f"/admin/{SLUG}/", f"/admin/{SLUG}/supporters", "/admin/moderation"):
            assert_accessible(page, server.url + path)
        page.close()

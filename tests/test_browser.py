"""A supporter in a real browser: Debian's Chromium driven by Playwright."""

import os
import re
from pathlib import Path

import pytest
from conftest import SLUG
from playwright.sync_api import expect

from app.models import Signature

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where pages are saved as PNG: docs/ with UPDATE_SCREENSHOTS=1 (`make screenshots`), else a temporary folder.

    So that `make test` leaves the checkout as it found it.
    """
    return DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path_factory.mktemp("screenshots")


def test_supporter_signs_the_french_form_in_chromium(browser, screenshots, app, live_server):
    other_origins = []
    page = browser.new_page(viewport={"width": 800, "height": 1200}, java_script_enabled=False)
    page.on("request", lambda r: r.url.startswith(live_server.url) or other_origins.append(r.url))
    page.goto(f"{live_server.url}/fr/{SLUG}/")
    assert page.locator("h1").inner_text().startswith("Kazakhstan : Libérez")
    page.screenshot(path=str(screenshots / "screenshot-fr.png"), full_page=True)

    page.fill("#name", "Camille Martin")
    page.fill("#email", "camille@example.org")
    page.fill("#organisation", "Union syndicale Solidaires")
    page.select_option("#country", "FR")
    page.fill("#message", page.input_value("#message") + "\n\nSolidarité depuis Lyon.")
    label = page.locator('label[for="number_question"]').inner_text()
    page.fill("#number_question", re.search(r"\d{4}", label).group(0))
    page.click("button[type=submit]")

    page.wait_for_url(re.compile(r"/fr/.+/thanks$"))
    assert "Merci" in page.locator("h1").inner_text()
    assert other_origins == []
    with app.app_context():
        signature = Signature.query.one()
        assert signature.name == "Camille Martin"
        assert signature.message.endswith("Solidarité depuis Lyon.")
        assert signature.opt_in is False
        assert len(signature.deliveries) == 5
    page.close()


#: A filter that takes its time, as a busy server would: a second click lands while the first is judged.
SLOW_FILTER = """
import time

from app import hookimpl


@hookimpl
def check_submission(submission, campaign):
    time.sleep(0.8)
"""


def test_a_double_click_on_send_shows_the_thank_you_page_and_stores_one_letter(browser, make_app, instance_path):
    from conftest import LiveServer

    (instance_path / "plugins").mkdir(exist_ok=True)
    (instance_path / "plugins" / "slow_filter.py").write_text(SLOW_FILTER)
    app = make_app(SPAM_FILTERS=["number_question", "slow_filter"])
    with LiveServer(app) as server:
        page = browser.new_page(java_script_enabled=False)
        posts = []
        page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
        page.goto(f"{server.url}/en/{SLUG}/")
        page.fill("#name", "Camille Martin")
        page.fill("#email", "camille@example.org")
        label = page.locator('label[for="number_question"]').inner_text()
        page.fill("#number_question", re.search(r"\d{4}", label).group(0))
        # Two clicks a quarter of a second apart, as an impatient hand makes them: Chromium
        # folds the two of an instant double click into one sending. By the mouse, since a
        # locator's click would wait for the first sending's page.
        page.locator("button[type=submit]").scroll_into_view_if_needed()
        box = page.locator("button[type=submit]").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.click(x, y)
        page.wait_for_timeout(250)
        page.mouse.click(x, y)
        # Polled, not waited for as one navigation: the second sending aborts the first's.
        expect(page.locator("h1")).to_contain_text("Thank", timeout=10_000)
        assert re.search(r"/en/.+/thanks$", page.url)
        assert "sent already" not in page.locator("main").inner_text()
        page.close()
    # The browser did send the form twice; the campaign has it once.
    assert len(posts) == 2
    with app.app_context():
        assert Signature.query.count() == 1
        assert len(Signature.query.one().deliveries) == 5


#: A word of the interface in each language, as the page must show it.
INTERFACE_WORD = {"en": "Send", "fr": "Envoi", "ru": "Отправить", "kk": "Жіберу"}


@pytest.mark.parametrize("lang", ["en", "fr", "ru", "kk"])
def test_campaign_page_in_each_language(browser, screenshots, live_server, lang):
    """Each language's page renders (saved as screenshot-<lang>.png; docs/ has them from `make screenshots`)."""
    page = browser.new_page(viewport={"width": 800, "height": 1200}, java_script_enabled=False)
    page.goto(f"{live_server.url}/{lang}/{SLUG}/")
    assert page.get_attribute("html", "lang") == lang
    assert page.locator("button[type=submit]").inner_text() == INTERFACE_WORD[lang]
    assert sorted(page.locator("nav.languages").inner_text().split()) == ["English", "Français", "Русский", "Қазақша"]
    page.screenshot(path=str(screenshots / f"screenshot-{lang}.png"), full_page=True)
    page.close()


def test_page_reads_well_on_a_phone(browser, app, live_server):
    page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
    page.goto(f"{live_server.url}/fr/{SLUG}/")
    # Nothing wider than the screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.locator("#message").bounding_box()["width"] > 280
    page.close()


def test_organiser_logs_in_sees_chart_approves_and_downloads_csv(browser, screenshots, make_app, hold_filter):
    from conftest import ORGANISER, PASSWORD, LiveServer, add_organiser, sign

    app = make_app(SPAM_FILTERS=hold_filter)
    add_organiser(app)
    client = app.test_client()
    sign(client, name="Dana Accepted", email="dana@example.org", opt_in="yes")
    sign(client, name="Held Harry", email="harry@example.org", message="please hold me")
    other_origins = []
    with LiveServer(app) as server:
        context = browser.new_context(java_script_enabled=False, accept_downloads=True)
        page = context.new_page()
        page.on("request", lambda r: r.url.startswith(server.url) or other_origins.append(r.url))
        page.goto(f"{server.url}/admin/{SLUG}/")
        page.wait_for_url(re.compile(r"/admin/login"))
        page.fill("#email", ORGANISER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(rf"/admin/{SLUG}/$"))

        chart = page.locator("svg#per-day-chart")
        assert chart.is_visible()
        assert chart.locator("rect.bar").count() == 1
        assert chart.bounding_box()["width"] > 300
        # The targets table, buttons included, fits inside the page's column on a laptop's screen…
        main, table = page.locator("main").bounding_box(), page.locator("table.targets-table").bounding_box()
        assert table["x"] + table["width"] <= main["x"] + main["width"]
        page.screenshot(path=str(screenshots / "screenshot-admin.png"), full_page=True)
        # …and on a narrower one it scrolls in its own box: the page itself does not.
        page.set_viewport_size({"width": 700, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= 700
        page.set_viewport_size({"width": 1280, "height": 720})

        page.click("text=Moderation (1)")
        assert "Held Harry" in page.locator("main").inner_text()
        page.click("button.approve")
        page.wait_for_url(re.compile(r"/admin/moderation$"))
        assert "Held Harry" not in page.locator("main").inner_text()

        page.goto(f"{server.url}/admin/{SLUG}/supporters")
        with page.expect_download() as download:
            page.click("#export-all")
        text = Path(download.value.path()).read_text()
        assert text.splitlines()[0].startswith("name,email,")
        assert "dana@example.org" in text and "harry@example.org" in text
        assert other_origins == []
        context.close()
    with app.app_context():
        assert Signature.query.filter_by(email="harry@example.org").one().status == "accepted"


def test_the_organisers_pages_fit_a_phone_without_scrolling_the_whole_page(browser, make_app, instance_path):
    """Every wide table scrolls in its own box: the page never does, at 375 px (a phone) or at 700."""
    from conftest import ORGANISER, PASSWORD, LiveServer, add_organiser, sign

    app = make_app()
    sign(app.test_client(), name="Aleksandra Konstantinopolskaya-Vasilyeva",
         email="aleksandra.konstantinopolskaya@example.org",
         organisation="Confederation of Independent Trade Unions of the Republic of Kazakhstan")
    # The campaign file no longer lists one of the addresses those letters wait for: a former target.
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace("press@akorda.kz", "press-office@akorda.kz"))
    app = make_app()
    add_organiser(app)
    with LiveServer(app) as server:
        context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
        page = context.new_page()
        page.goto(f"{server.url}/admin/login")
        page.fill("#email", ORGANISER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/admin/"))
        pages = ["/admin/", f"/admin/{SLUG}/", f"/admin/{SLUG}/supporters", "/admin/moderation"]
        page.goto(f"{server.url}/admin/{SLUG}/")
        assert page.locator('tr[data-former-target="press@akorda.kz"]').count() == 1
        for width in (375, 700):
            page.set_viewport_size({"width": width, "height": 800})
            for path in pages:
                page.goto(server.url + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (path, width)
        context.close()

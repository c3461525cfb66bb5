"""A campaign file edited while the site runs takes effect within seconds, in every process.

Real processes: gunicorn serving the example campaign, and `clamor deliver`
sending its letters to instance/outbox/. The organiser edits the file as they
would, in place; nothing is restarted.
"""

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
from conftest import ROOT, SLUG, add_campaign, add_organiser, form_fields, login
from test_redis import init_instance, serve

#: The tests promise an edit is served within this many seconds (the default
#: CAMPAIGN_RELOAD_SECONDS is 2).
WITHIN = 10


def eventually(check, within=WITHIN, what="the edit to take effect"):
    """Call ``check`` until it returns something true, for up to ``within`` seconds; return that."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within}s for {what}")
        time.sleep(0.2)


def edit(path, old, new):
    """Change ``old`` to ``new`` in the file, in place, as an editor saves it."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def fill_form(browser, url, email):
    data = form_fields(browser.get(url, timeout=10).text)
    data.update(name="Anna Example", email=email, organisation="", country="FR",
                message="Free Erzhan Elshibayev now.", opt_in="no")
    return data


@pytest.mark.slow
def test_status_and_goal_edits_are_served_without_a_restart_and_a_broken_edit_keeps_the_last_good(tmp_path):
    instance = init_instance(tmp_path)
    campaign = instance / "campaigns" / f"{SLUG}.toml"
    logs = []
    with ExitStack() as stack:
        base = serve(stack, instance, "memory://", logs=logs)
        url = f"{base}/en/{SLUG}/"
        browser = requests.Session()
        page = browser.get(url, timeout=10).text
        assert '<form method="post"' in page and 'max="2000"' in page
        stale_form = fill_form(browser, url, "anna@example.org")

        edit(campaign, 'status = "open"', 'status = "closed"')
        edit(campaign, "goal = 2000", "goal = 600")
        page = eventually(lambda: (text := browser.get(url, timeout=10).text) and 'max="600"' in text and text)
        assert '<form method="post"' not in page
        assert "This campaign is closed" in page
        # The form a supporter opened before the edit is refused now.
        posted = browser.post(url, data=stale_form, allow_redirects=False, timeout=10)
        assert posted.status_code == 403

        # A broken edit: the last good version (closed, goal 600) goes on serving.
        edit(campaign, "goal = 600", "goal = 600\ngoal = 700")
        time.sleep(4)
        for _ in range(3):
            response = browser.get(url, timeout=10)
            assert response.status_code == 200
            assert 'max="600"' in response.text and "This campaign is closed" in response.text
    (log,) = logs
    refused = [line for line in log.splitlines() if "not reloaded" in line]
    assert len(refused) == 1, log  # one line, once, not one per request
    assert f"{campaign}" in refused[0] and "last good version" in refused[0]
    assert "goal" in refused[0]
    with sqlite3.connect(instance / "clamor.sqlite3") as database:
        assert database.execute("select count(*) from signature").fetchone()[0] == 0


def deliver_process(stack, instance):
    """`clamor deliver` on ``instance``, polling every second."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), CLAMOR_DELIVERY_WORKER="external",
                       CLAMOR_DELIVERY_POLL_SECONDS="1")
    worker = subprocess.Popen([Path(sys.executable).parent / "clamor", "deliver"], cwd=ROOT, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop():
        worker.terminate()
        worker.communicate(timeout=30)

    stack.callback(stop)
    return worker


def subjects(outbox):
    return sorted(message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in outbox.glob("*.eml"))


@pytest.mark.slow
def test_the_delivery_worker_sends_with_the_edited_campaign(tmp_path):
    instance = init_instance(tmp_path)
    campaign = instance / "campaigns" / f"{SLUG}.toml"
    outbox = instance / "outbox"
    with ExitStack() as stack:
        base = serve(stack, instance, "memory://")  # two letters: within its limit of 2 per minute
        deliver_process(stack, instance)
        url = f"{base}/fr/{SLUG}/"
        browser = requests.Session()
        assert browser.post(url, data=fill_form(browser, url, "anna@example.org"), allow_redirects=False,
                            timeout=10).status_code == 303
        # Five letters to the targets, and the supporter's receipt.
        eventually(lambda: subjects(outbox).count("Libérez Erzhan Elshibayev") == 5, what="the first five letters")

        edit(campaign, 'subject = "Libérez Erzhan Elshibayev"', 'subject = "Libérez Erzhan Elshibayev maintenant"')
        time.sleep(3)  # more than CAMPAIGN_RELOAD_SECONDS: the worker has looked again
        assert browser.post(url, data=fill_form(browser, url, "bob@example.org"), allow_redirects=False,
                            timeout=10).status_code == 303
        eventually(lambda: subjects(outbox).count("Libérez Erzhan Elshibayev maintenant") == 5,
                   what="the next five letters, with the new subject")
    assert subjects(outbox).count("Libérez Erzhan Elshibayev") == 5


@pytest.mark.slow
def test_new_deleted_and_refused_files_in_one_process(make_app, instance_path):
    app = make_app(CAMPAIGN_RELOAD_SECONDS=0)
    client = app.test_client()
    assert client.get("/en/second-campaign/").status_code == 404

    add_campaign(instance_path, "second-campaign")
    assert client.get("/en/second-campaign/").status_code == 200
    state = app.extensions["clamor"]
    before = state.campaigns["second-campaign"]

    path = instance_path / "campaigns" / "second-campaign.toml"
    edit(path, "goal = 2000", "goal = -1")
    assert client.get("/en/second-campaign/").status_code == 200  # the last good version
    assert state.campaigns["second-campaign"] is before
    add_organiser(app)
    login(client)
    for admin_page in ("/admin/", f"/admin/{SLUG}/"):
        html = client.get(admin_page).get_data(as_text=True)
        assert "the last good version is still served" in html, admin_page
        assert "second-campaign.toml" in html and "goal: must be a positive whole number" in html

    edit(path, "goal = -1", "goal = 900")
    client.get("/en/second-campaign/")
    after = state.campaigns["second-campaign"]
    assert after is not before and after.goal == 900 and before.goal == 2000  # a new object, the old one unchanged
    assert "the last good version" not in client.get("/admin/").get_data(as_text=True)

    path.unlink()
    assert client.get("/en/second-campaign/").status_code == 404


def test_closing_hides_the_targets_and_the_contact_is_on_the_closed_and_privacy_pages(make_app, instance_path):
    app = make_app(CAMPAIGN_RELOAD_SECONDS=0)
    client = app.test_client()
    path = instance_path / "campaigns" / f"{SLUG}.toml"
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert "Your message will be sent to the following addresses" in page and "press@akorda.kz" in page

    edit(path, 'status = "open"', 'status = "closed"\ncontact = "organisers@union.example"')
    page = client.get(f"/en/{SLUG}/").get_data(as_text=True)
    assert "This campaign is closed" in page
    assert "Your message will be sent to the following addresses" not in page and "press@akorda.kz" not in page
    contact = ('Write to the organisers at <a href="mailto:organisers@union.example">'
               'organisers@union.example</a>.')
    assert contact in page
    assert contact in client.get(f"/en/{SLUG}/privacy").get_data(as_text=True)

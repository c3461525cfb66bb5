"""Absolute links come from BASE_URL; a request for a host outside TRUSTED_HOSTS gets a 400 and stores nothing."""

import http.client
import re
from urllib.parse import urlencode

import pytest
from conftest import SLUG, LiveServer, counts, form_fields, sign

from app import ConfigError, create_app
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery


def post_with_host(server, host, path, fields, cookie):
    connection = http.client.HTTPConnection("127.0.0.1", server.server.server_port, timeout=10)
    connection.request("POST", path, body=urlencode(fields), headers={
        "Host": host, "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    response = connection.getresponse()
    return response.status, response.read().decode()


@pytest.mark.slow
def test_a_form_posted_for_an_untrusted_host_gets_400_over_real_http_and_stores_nothing(make_app):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True)
    with LiveServer(app) as server:
        # A real browser's visit, then the same form replayed with a forged Host.
        connection = http.client.HTTPConnection("127.0.0.1", server.server.server_port, timeout=10)
        connection.request("GET", f"/fr/{SLUG}/")
        page = connection.getresponse()
        cookie = "; ".join(value.split(";", 1)[0] for name, value in page.getheaders() if name == "Set-Cookie")
        fields = form_fields(page.read().decode())
        fields.update(name="Anna", email="anna@example.org", country="FR", message="Free him.", opt_in="no")
        status, body = post_with_host(server, "evil.test", f"/fr/{SLUG}/", fields, cookie)
        assert status == 400
        assert "Traceback" not in body and "evil.test" not in body
        status, _ = post_with_host(server, "127.0.0.1", f"/fr/{SLUG}/", fields, cookie)
        assert status == 303
    with app.app_context():
        assert counts() == (1, 6)  # only the trusted post: 5 letters and the confirmation email


@pytest.mark.slow
def test_confirmation_links_use_base_url_whatever_host_the_form_came_through(make_app, tmp_path):
    app = make_app(CONFIRM_SUPPORTER_EMAIL=True, BASE_URL="https://act.union.test/campaigns",
                   TRUSTED_HOSTS=["act.union.test", "localhost"])
    client = app.test_client()
    assert sign(client).status_code == 303  # through http://localhost/
    with app.app_context():
        mail = db.session.execute(
            db.select(Delivery.body).where(Delivery.kind == "confirmation")).scalar_one()
    links = re.findall(r"\S+://\S+", mail)
    assert len(links) == 2
    assert all(link.startswith("https://act.union.test/campaigns/fr/") for link in links), links
    # And the link opens the page the organiser expects, on the public path.
    path = links[0].removeprefix("https://act.union.test/campaigns")
    assert client.get(path, base_url="http://act.union.test").status_code == 200


def test_untrusted_host_on_every_route(app, client):
    for path in ("/", f"/fr/{SLUG}/", "/admin/login", f"/fr/{SLUG}/thanks"):
        response = client.get(path, headers={"Host": "evil.test"})
        assert response.status_code == 400, path


def test_mailing_links_without_base_url_stops_start_up(app_config, instance_path):
    config = {**app_config, "TESTING": False, "BASE_URL": None, "SEND_RECEIPT": True}
    with pytest.raises(ConfigError, match="BASE_URL is not set"):
        create_app(config, instance_path=instance_path)
    with pytest.raises(ConfigError, match="BASE_URL is not set"):
        create_app({**config, "SEND_RECEIPT": False, "CONFIRM_SUPPORTER_EMAIL": True}, instance_path=instance_path)
    # Nothing mails a link: no BASE_URL needed, and only loopback names are trusted.
    app = create_app({**config, "SEND_RECEIPT": False}, instance_path=instance_path)
    assert app.config["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost"]
    with pytest.raises(ConfigError, match="BASE_URL must be"):
        create_app({**config, "BASE_URL": "act.union.test"}, instance_path=instance_path)


@pytest.mark.slow
def test_receipt_and_export_links_use_base_url(make_app):
    app = make_app(BASE_URL="https://act.union.test", SEND_RECEIPT=True)
    sign(app.test_client(), opt_in="yes")  # through http://localhost/
    with app.app_context():
        deliver_due(app)
        receipt = db.session.execute(db.select(Delivery.body).where(Delivery.kind == "receipt")).scalar_one()
    assert re.search(r"https://act\.union\.test/fr/letter/[\w-]{59}\b", receipt)
    exported = app.test_cli_runner().invoke(args=["export"]).output
    assert re.search(r"https://act\.union\.test/fr/unsubscribe/[\w-]{59}\b", exported), exported

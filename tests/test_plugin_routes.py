"""``register_blueprints``: a plugin serves routes of its own, held to what every request is held to."""

import re
from types import SimpleNamespace

import pytest
from conftest import sign
from flask import Blueprint

from app import create_app, csrf_exempt, hookimpl, rate_limit, record_provider_report
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, UsedToken
from app.plugins import PluginError


def plugin_serving(*blueprints):
    """A plugin object whose ``register_blueprints`` returns ``blueprints``."""
    return SimpleNamespace(__name__="routes_plugin", register_blueprints=hookimpl(lambda: list(blueprints)))


def echo_blueprint(name, rule="/hooks/echo", exempt=False, limit=None):
    blueprint = Blueprint(name, __name__)

    def echo():
        return "echo"

    view = rate_limit(limit)(echo) if limit else echo
    blueprint.add_url_rule(rule, endpoint="echo", view_func=view, methods=["GET", "POST"])
    return csrf_exempt(blueprint) if exempt else blueprint


def test_a_plugins_post_route_keeps_the_csrf_check_unless_it_exempts_itself(make_app):
    app = make_app(plugins=[plugin_serving(echo_blueprint("guarded", "/hooks/guarded"),
                                           echo_blueprint("signed", "/hooks/signed", exempt=True))],
                   WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.get("/hooks/guarded").get_data(as_text=True) == "echo"
    refused = client.post("/hooks/guarded")
    assert refused.status_code == 400
    assert "echo" not in refused.get_data(as_text=True)
    taken = client.post("/hooks/signed")
    assert (taken.status_code, taken.get_data(as_text=True)) == (200, "echo")
    # The security headers of every page: no third-party origin, no framing.
    csp = taken.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_a_plugins_route_is_held_to_trusted_hosts(make_app):
    app = make_app(plugins=[plugin_serving(echo_blueprint("echoing"))], TRUSTED_HOSTS=["clamor.test"])
    client = app.test_client()
    assert client.get("/hooks/echo", headers={"Host": "clamor.test"}).status_code == 200
    assert client.get("/hooks/echo", headers={"Host": "evil.example"}).status_code == 400


def test_a_plugins_rate_limit_answers_429(make_app):
    app = make_app(plugins=[plugin_serving(echo_blueprint("limited", limit="2 per minute"))],
                   RATELIMIT_ENABLED=True)
    client = app.test_client()
    assert [client.get("/hooks/echo").status_code for _ in range(3)] == [200, 200, 429]


def test_a_blueprint_name_already_taken_stops_start_up_naming_the_plugin(app_config, instance_path):
    with pytest.raises(PluginError, match="plugin 'routes_plugin' registers the blueprint 'mailgun', a name "
                                          "already taken"):
        create_app(app_config, instance_path=instance_path, plugins=[plugin_serving(echo_blueprint("mailgun"))])


def test_a_path_another_blueprint_serves_stops_start_up_naming_it(app_config, instance_path):
    # The mailgun plugin's webhook, served a second time.
    with pytest.raises(PluginError, match=re.escape("plugin 'routes_plugin' serves POST /hooks/mailgun, which "
                                                    "another blueprint serves already")):
        create_app(app_config, instance_path=instance_path,
                   plugins=[plugin_serving(echo_blueprint("lookalike", "/hooks/mailgun"))])


def test_a_provider_report_and_its_token_are_one_transaction(make_app):
    app = make_app()
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 5
        letter = Delivery.query.filter_by(kind="letter").order_by(Delivery.id).first()
        assert record_provider_report(letter, "bounced", "Gateway: no such number", token="test:1") is True
        # The same token again: a replay, which changes nothing.
        assert record_provider_report(letter, "delivered", "Gateway: delivered", token="test:1") is False
        db.session.expire_all()
        letter = db.session.get(Delivery, letter.id)
        assert (letter.status, letter.note) == ("bounced", "Gateway: no such number")
        assert db.session.get(UsedToken, "test:1") is not None
        # A report on nothing still spends its token.
        assert record_provider_report(None, "delivered", "about no letter", token="test:2") is True
        assert db.session.get(UsedToken, "test:2") is not None
        with pytest.raises(ValueError, match="kind must be one of delivered, bounced, problem, complaint"):
            record_provider_report(letter, "opened", "a tracking pixel")
        with pytest.raises(ValueError, match="a token has 1 to 64 characters"):
            record_provider_report(letter, "delivered", "x", token="t" * 65)

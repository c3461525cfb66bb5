"""Each plugin declares its own settings (``register_settings``); the core's config holds core keys only."""

import ast
from pathlib import Path

import pytest
from conftest import FAX_CAMPAIGN, sign

from app import ConfigError, DeliveryBackend, Receipt, create_app, hookimpl
from app.delivery import deliver_due
from app.models import Delivery
from app.plugins import PluginError

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PREFIXES = ("SMTP_", "MAILGUN_", "FAX_", "OUTBOX_", "FILL_TIME_", "LINKS_")


def core_keys():
    return {node.targets[0].id for node in ast.parse((ROOT / "app" / "config.py").read_text()).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def test_the_core_config_holds_no_plugin_setting_yet_every_plugin_setting_has_its_default(app, instance_path):
    assert "SECRET_KEY" in core_keys() and "DELIVERY" in core_keys()
    assert [key for key in core_keys() if key.startswith(PLUGIN_PREFIXES)] == []
    config = app.config
    assert (config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_SECURITY"], config["SMTP_TIMEOUT"]) == (
        "localhost", 25, "none", 30)
    assert (config["MAILGUN_REGION"], config["MAILGUN_DOMAIN"]) == ("us", None)
    assert (config["FAX_SUBJECT_TEMPLATE"], config["FAX_BODY_PREFIX"], config["FAX_VIA"]) == ("{subject}", "", None)
    assert config["OUTBOX_DIR"] == str(instance_path / "outbox")
    assert (config["FILL_TIME_MAX"], config["LINKS_MAX"]) == (24 * 3600, 2)


@pytest.mark.slow
def test_the_deployment_s_value_wins_over_a_plugin_s_default(make_app, instance_path, tmp_path, monkeypatch):
    (instance_path / "config.py").write_text("SMTP_TIMEOUT = 7\nOUTBOX_DIR = None\n")
    monkeypatch.setenv("CLAMOR_LINKS_MAX", "5")
    app = make_app(FILL_TIME_MAX=60)
    assert (app.config["SMTP_TIMEOUT"], app.config["LINKS_MAX"], app.config["FILL_TIME_MAX"]) == (7, 5, 60)
    # None meant "the default" before the defaults moved, and still does.
    assert app.config["OUTBOX_DIR"] == str(instance_path / "outbox")


class Settings:
    def __init__(self, settings):
        self.settings = settings

    @hookimpl
    def register_settings(self):
        return self.settings


def test_a_plugin_giving_another_default_or_a_core_key_stops_start_up(app_config, instance_path):
    with pytest.raises(PluginError,
                       match=r"plugins 'smtp' and 'Settings' give SMTP_PORT different defaults \(25, 2525\)"):
        create_app(app_config, instance_path=instance_path, plugins=[Settings({"SMTP_PORT": 2525})])
    with pytest.raises(PluginError, match="plugin 'Settings' declares SECRET_KEY, a core setting"):
        create_app(app_config, instance_path=instance_path, plugins=[Settings({"SECRET_KEY": "x"})])
    app = create_app(app_config, instance_path=instance_path, plugins=[Settings({"SMTP_PORT": 25, "MY_KEY": 1})])
    assert app.config["MY_KEY"] == 1


@pytest.mark.parametrize("settings, message", [
    ({"DELIVERY": {"email": "smtp"}, "SMTP_SECURITY": "tls"},
     "DELIVERY['email'] = 'smtp' cannot work: SMTP_SECURITY must be none, starttls or ssl, not 'tls'"),
    ({"DELIVERY": {"email": "mailgun"}, "MAILGUN_API_KEY": "key"},
     "DELIVERY['email'] = 'mailgun' cannot work: the mailgun backend needs MAILGUN_DOMAIN and MAILGUN_API_KEY"),
    ({"DELIVERY": {"email": "mailgun"}, "MAILGUN_DOMAIN": "mg.example.org", "MAILGUN_API_KEY": "k",
      "MAILGUN_REGION": "asia"}, "MAILGUN_REGION must be us or eu, not 'asia'"),
])
def test_a_backend_reports_its_own_misconfiguration_at_start_up(app_config, instance_path, settings, message):
    with pytest.raises(ConfigError) as caught:
        create_app({**app_config, **settings}, instance_path=instance_path)
    assert message in str(caught.value)


class GatewayMailbox(DeliveryBackend):
    """Stands in for the email backend a fax gateway email goes through."""

    name = "gateway_mailbox"
    verbose_name = "Gateway mailbox (tests)"

    def send(self, letter):
        self.sent.append(letter)
        return Receipt(provider_id=f"gw-{letter.delivery_id}")


class GatewayPlugin:
    @hookimpl
    def register_delivery_backends(self):
        return [GatewayMailbox]


@pytest.mark.slow
def test_fax_email_sends_through_the_backend_the_core_gives_it(make_app, instance_path):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    GatewayMailbox.sent = []
    app = make_app(plugins=[GatewayPlugin()], FAX_VIA="gateway_mailbox", FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")
    registry = app.extensions["clamor"].backends
    assert dict(registry["fax_email"].backends) == registry  # its own app's registry, nothing else
    sign(app.test_client(), lang="kk", slug="fax-test", email="aigul@example.kz")
    with app.app_context():
        assert deliver_due() == 1
        assert Delivery.query.one().status == "sent"
    (email,) = GatewayMailbox.sent
    assert email.to_address == "+77172745631@fax.tc"
    assert email.attachments[-1][1] == "application/pdf"
    # Another app in the same process, without that backend, gets a registry of its own.
    other = create_app(app.config | {"FAX_VIA": "smtp"}, instance_path=instance_path)
    assert "gateway_mailbox" not in other.extensions["clamor"].backends["fax_email"].backends


def test_fax_via_naming_no_backend_stops_start_up(make_app, instance_path):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    with pytest.raises(ConfigError, match=r"FAX_VIA names 'pigeon', which is not an email backend. Known: .*smtp"):
        make_app(FAX_VIA="pigeon", FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")


def test_fax_email_does_not_reach_into_the_app():
    source = (ROOT / "plugins" / "fax_email.py").read_text()
    assert "current_app" not in source and "extensions" not in source

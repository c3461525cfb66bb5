"""Fax targets need a gateway and international numbers: `clamor campaign check` and start-up say so."""

import pytest
from conftest import SLUG
from test_cli import clamor

FAX_CAMPAIGN = '''
slug = "fax-check"
default_language = "en"
languages = ["en"]

[[targets]]
name = "Embassy"
fax = "{fax}"

[text.en]
title = "Title"
short_name = "Short"
body = ["Body."]
subject = "Subject"
letter = """Letter."""
'''


def write(tmp_path, fax):
    path = tmp_path / "fax-check.toml"
    path.write_text(FAX_CAMPAIGN.format(fax=fax))
    return path


@pytest.mark.slow
def test_check_refuses_fax_targets_without_a_gateway(tmp_path):
    path = write(tmp_path, "+32 2 123 45 67")
    result = clamor("campaign", "check", str(path), instance=tmp_path / "no-instance")
    assert result.returncode == 1, result.stdout
    assert "FAX_ADDRESS_TEMPLATE is not set" in result.stderr
    assert str(path) in result.stderr
    configured = clamor("campaign", "check", str(path), instance=tmp_path / "no-instance",
                        env={"CLAMOR_FAX_ADDRESS_TEMPLATE": "{e164}@fax.example"})
    assert configured.returncode == 0, configured.stderr


@pytest.mark.slow
def test_check_refuses_a_number_without_its_country_code(tmp_path):
    path = write(tmp_path, "21 123 4567")
    result = clamor("campaign", "check", str(path), instance=tmp_path / "no-instance",
                    env={"CLAMOR_FAX_ADDRESS_TEMPLATE": "{e164}@fax.example"})
    assert result.returncode == 1
    assert "targets[1].fax: fax number '21 123 4567' needs its country code" in result.stderr
    assert "E.164" in result.stderr


@pytest.mark.slow
def test_start_up_stops_on_fax_targets_without_a_gateway(tmp_path):
    instance = tmp_path / "instance"
    assert clamor("init", instance=instance).returncode == 0
    (instance / "campaigns" / f"{SLUG}.toml").unlink()
    (instance / "campaigns" / "fax-check.toml").write_text(FAX_CAMPAIGN.format(fax="+32 2 123 45 67"))
    result = clamor("deliver", "--once", instance=instance)
    assert result.returncode == 1
    assert "FAX_ADDRESS_TEMPLATE is not set" in result.stderr and "Traceback" not in result.stderr
    started = clamor("deliver", "--once", instance=instance, env={"CLAMOR_FAX_ADDRESS_TEMPLATE": "{e164}@fax.example"})
    assert started.returncode == 0, started.stderr


@pytest.mark.slow
def test_a_fax_letter_leaves_no_fonttools_chatter_in_the_log(make_app, instance_path, smtp_server, caplog):
    import logging

    from conftest import sign
    from test_backends import FAX_CAMPAIGN as KAZAKH_FAX_CAMPAIGN

    from app.delivery import deliver_due

    (instance_path / "campaigns" / "fax-test.toml").write_text(KAZAKH_FAX_CAMPAIGN)
    app = make_app(DELIVERY={"email": "outbox_files", "fax": "fax_email"}, FAX_VIA="smtp",
                   SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")
    assert sign(app.test_client(), lang="kk", slug="fax-test", country="KZ").status_code == 303
    caplog.set_level(logging.INFO)
    with app.app_context():
        assert deliver_due() == 1
    assert len(smtp_server.inbox.envelopes) == 1  # the fax really was made and sent
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fontTools")] == []
    assert any(r.name == "app.delivery" for r in caplog.records)  # INFO lines do reach the log

"""The clamor command: init, campaign check, deliver --once, export."""

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_CAMPAIGNS, SHIPPED_CAMPAIGNS, SLUG, sign

from app.campaigns import CampaignError, load_campaign
from app.cli import main
from app.export import EXPORT_COLUMNS
from app.models import Delivery

ROOT = Path(__file__).resolve().parent.parent


def clamor(*args, instance, env=None):
    """Run the installed `clamor` command in a child process, as an organiser would."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), **(env or {}))
    return subprocess.run(
        [Path(sys.executable).parent / "clamor", *args], env=environment, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
def test_init_in_an_empty_instance_folder_then_serve(tmp_path):
    instance = tmp_path / "fresh"
    first = clamor("init", instance=instance)
    assert first.returncode == 0, first.stderr
    assert "SECRET_KEY" in first.stdout
    config = (instance / "config.py").read_text()
    assert "SECRET_KEY = " in config
    assert (instance / "campaigns" / f"{SLUG}.toml").exists()
    assert (instance / "clamor.sqlite3").exists()

    again = clamor("init", instance=instance)  # idempotent: same key, same data
    assert again.returncode == 0, again.stderr
    assert (instance / "config.py").read_text() == config

    from app import create_app

    os.environ["CLAMOR_INSTANCE_PATH"] = str(instance)
    try:
        app = create_app()
    finally:
        del os.environ["CLAMOR_INSTANCE_PATH"]
    client = app.test_client()
    root = client.get("/", headers={"Accept-Language": "fr"})
    assert root.status_code == 302
    page = client.get(root.headers["Location"])
    assert page.status_code == 200
    assert "Erzhan Elshibayev" in page.get_data(as_text=True)


@pytest.mark.slow
def test_app_refuses_to_start_without_secret_key(tmp_path):
    instance = tmp_path / "nokey"
    (instance / "campaigns").mkdir(parents=True)
    result = clamor("deliver", "--once", instance=instance)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "clamor init" in result.stderr


@pytest.mark.slow
def test_environment_overrides_config(tmp_path):
    instance = tmp_path / "env"
    assert clamor("init", instance=instance).returncode == 0
    result = clamor("deliver", "--once", instance=instance, env={"CLAMOR_DELIVERY": '{"email": "nope"}'})
    assert result.returncode != 0
    assert "DELIVERY['email'] names the backend 'nope'" in result.stderr


@pytest.mark.slow
def test_campaign_check_accepts_the_example():
    result = clamor("campaign", "check", str(SHIPPED_CAMPAIGNS / f"{SLUG}.toml"), instance="/nonexistent")
    assert result.returncode == 0, result.stderr
    assert "ok: " in result.stdout


@pytest.mark.slow
def test_campaign_check_names_file_and_key(tmp_path):
    broken = tmp_path / f"{SLUG}.toml"
    text = (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text()
    broken.write_text(text.replace('email = "press@mfa.kz"', 'email = "press at mfa"'))
    result = clamor("campaign", "check", str(broken), instance=tmp_path)
    assert result.returncode == 1
    assert f"{broken}: targets[3].email" in result.stderr
    try:
        load_campaign(broken)
    except CampaignError as exc:
        assert "targets[3].email" in str(exc)
    else:
        raise AssertionError("the broken campaign loaded")


@pytest.mark.slow
def test_app_refuses_an_invalid_campaign(tmp_path):
    instance = tmp_path / "bad"
    assert clamor("init", instance=instance).returncode == 0
    path = instance / "campaigns" / f"{SLUG}.toml"
    path.write_text(path.read_text().replace('default_language = "fr"', 'default_language = "de"'))
    result = clamor("deliver", "--once", instance=instance)
    assert result.returncode != 0
    assert f"{path}: default_language: 'de' is not in languages" in result.stderr


@pytest.mark.slow
def test_deliver_once_sends_what_is_due(app, client, runner, instance_path):
    sign(client)
    result = runner.invoke(main, ["deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert "5 deliveries attempted" in result.output
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"sent"}
    assert len(list((instance_path / "outbox").glob("*.eml"))) == 5


@pytest.mark.slow
def test_export_writes_csv_of_supporters(app, client, runner):
    sign(client, name="Anna", email="anna@example.org", opt_in="yes", country="FR")
    sign(client, name="=HYPERLINK(\"http://evil\")", email="bob@example.org", opt_in="no", country="")
    result = runner.invoke(main, ["export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["email"] for r in rows] == ["anna@example.org", "bob@example.org"]
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert list(rows[0])[:6] == ["name", "email", "organisation", "country", "language", "opt_in"]
    assert rows[0]["opt_in"] == "yes" and rows[0]["consented_at"] and rows[0]["language"] == "fr"
    # A spreadsheet will not run a supporter's "name" as a formula.
    assert rows[1]["name"].startswith("'=")

    opt_ins = runner.invoke(main, ["export", "--campaign", SLUG, "--opt-in-only"])
    assert [r["email"] for r in csv.DictReader(io.StringIO(opt_ins.output))] == ["anna@example.org"]
    assert runner.invoke(main, ["export", "--campaign", "nope"]).exit_code != 0


@pytest.mark.slow
def test_two_gunicorn_workers_start_on_a_fresh_database(tmp_path):
    """Both workers open the fresh SQLite file (switching it to WAL) at once: no "database is locked"."""
    import time
    import urllib.request

    from conftest import unused_port

    instance = tmp_path / "gunicorn"
    assert clamor("init", instance=instance).returncode == 0
    port = unused_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), CLAMOR_DELIVERY_POLL_SECONDS="0.05")
    server = subprocess.Popen(
        [Path(sys.executable).parent / "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        statuses = []
        deadline = time.monotonic() + 30
        while len(statuses) < 40 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/fr/{SLUG}/", timeout=10) as response:
                    statuses.append(response.status)
            except OSError:
                time.sleep(0.1)
        assert statuses == [200] * 40
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "database is locked" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_export_gives_unsubscribe_links_when_base_url_is_set(make_app):
    app = make_app(BASE_URL="https://act.union.test")
    client = app.test_client()
    sign(client, email="anna@example.org", opt_in="yes")
    sign(client, email="bob@example.org", opt_in="no")
    result = app.test_cli_runner().invoke(args=["export"])
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(result.output))}
    link = rows["anna@example.org"]["unsubscribe_url"]
    assert link.startswith("https://act.union.test/fr/unsubscribe/")
    assert rows["bob@example.org"]["unsubscribe_url"] == ""
    # The link opens the page that withdraws consent.
    assert client.get(link.removeprefix("https://act.union.test")).status_code == 200


def _instance_with_an_unknown_key(instance):
    """An instance folder whose one campaign file has the unknown top-level key ``overflows``; its path."""
    (instance / "campaigns").mkdir(parents=True)
    path = instance / "campaigns" / f"{SLUG}.toml"
    path.write_text("overflows = 1\n" + (EXAMPLE_CAMPAIGNS / f"{SLUG}.toml").read_text())
    return path


@pytest.mark.slow
def test_init_and_run_on_an_invalid_campaign_file_print_one_line(tmp_path):
    # `make run` is `clamor init` then `clamor run`: both stop with the one-line
    # error and exit 1, as every other command does.
    instance = tmp_path / "typo"
    path = _instance_with_an_unknown_key(instance)
    expected = f"Error: {path}: overflows: unknown key (a typo?)"
    for command in (["init"], ["run", "--port", "0"]):
        result = clamor(*command, instance=instance)
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.strip().splitlines() == [expected], command
    assert (instance / "config.py").exists()  # init got as far as the campaign


def test_init_on_an_invalid_campaign_file_in_the_cli_runner(tmp_path):
    from click.testing import CliRunner

    path = _instance_with_an_unknown_key(tmp_path / "typo")
    result = CliRunner().invoke(main, ["init"], env={"CLAMOR_INSTANCE_PATH": str(tmp_path / "typo")})
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: {path}: overflows: unknown key (a typo?)"
    assert not isinstance(result.exception, CampaignError)


@pytest.mark.slow
def test_a_backend_missing_its_settings_stops_every_command_with_a_message(tmp_path):
    instance = tmp_path / "mailgun"
    assert clamor("init", instance=instance).returncode == 0
    result = clamor("deliver", "--once", instance=instance, env={"CLAMOR_DELIVERY": '{"email": "mailgun"}'})
    assert result.returncode == 1
    assert ("Error: DELIVERY['email'] = 'mailgun' cannot work: "
            "the mailgun backend needs MAILGUN_DOMAIN and MAILGUN_API_KEY") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_help_before_init_lists_every_command_and_says_to_run_init(tmp_path):
    result = clamor("--help", instance=tmp_path / "empty")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    listed = re.findall(r"^  ([a-z-]+)  ", result.stdout.split("Commands:")[1], flags=re.M)
    assert {"init", "campaign", "deliver", "deliveries", "export", "forget", "purge", "admin", "moderation",
            "translations"} <= set(listed)
    # After the list, not before it as an error: what to do, and why.
    end = " ".join(result.stdout.split("Commands:")[1].split())
    assert "Run `clamor init` first" in end and "SECRET_KEY is not set" in end


@pytest.mark.slow
def test_a_cli_command_never_starts_the_delivery_thread(tmp_path):
    """`clamor moderation approve` with DELIVERY_WORKER = "thread" queues the letters and leaves them to a server."""
    instance = tmp_path / "instance"
    assert clamor("init", instance=instance).returncode == 0
    (instance / "config.py").write_text((instance / "config.py").read_text() + 'DELIVERY_WORKER = "thread"\n'
                                        "SPAM_FILTERS = []\nDELIVERY_POLL_SECONDS = 0.1\n")
    from app import create_app
    from app.extensions import db
    from app.models import Signature

    app = create_app({"TESTING": True, "DELIVERY_WORKER": "external"}, instance_path=instance)
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[SLUG]
        from app.delivery import queue_deliveries

        signature = Signature(campaign=SLUG, name="Held", email="held@example.org", message="Free him.",
                              language="fr", status="held", status_reason="test")
        queue_deliveries(signature, campaign, app.config, status="held")
        db.session.add(signature)
        db.session.commit()
        held = signature.id
    result = clamor("moderation", "approve", str(held), instance=instance)
    assert result.returncode == 0, result.stderr
    with app.app_context():
        statuses = [d.status for d in Delivery.query]
    # Queued for the server's (or `clamor deliver`'s) worker: none claimed by a thread that died with the command.
    assert statuses == ["pending"] * len(campaign.targets)
    assert not list((instance / "outbox").glob("*.eml"))

"""Every Python block in docs/plugins.md runs: as a plugin in instance/plugins/, or as instance/config.py.

A block is one of:

- a hook's example (the block of a ``### <hook>`` section that implements
  it): tests/test_plugins.py installs it as an instance file and checks it,
  in ``test_hook_<hook>_…``;
- marked ``<!-- example: NAME -->``: saved as ``instance/plugins/NAME.py`` and
  checked by ``check_NAME`` below;
- marked ``<!-- config: NAME -->``: saved as ``instance/config.py`` and
  checked by ``check_NAME``;
- marked ``<!-- fragment -->``: a piece of a plugin, not run (a few only).
"""

import json
import re

import pytest
import test_plugins
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from conftest import counts, sign
from test_backends import FAX_CAMPAIGN
from test_docs import PLUGIN_DOCS, hook_example, hook_names

from app import ConfigError

BLOCK = re.compile(r"^(?:<!-- (fragment|example|config)(?:: (\w+))? -->\n)?```python\n(.*?)^```$", re.M | re.S)


def blocks():
    """``[(kind, name, code)]`` of every python block; kind is None for an unmarked one."""
    return [(kind or None, name or None, code) for kind, name, code in BLOCK.findall(PLUGIN_DOCS.read_text())]


def test_every_block_is_a_hook_example_a_checked_example_or_a_marked_fragment():
    examples = {hook_example(hook): hook for hook in hook_names()}
    found = blocks()
    assert len(found) == PLUGIN_DOCS.read_text().count("```python")  # the pattern misses none
    for kind, name, code in found:
        if kind is None:
            hook = examples.get(code)
            assert hook, f"docs/plugins.md: an unmarked block that is no hook's example:\n{code}"
            assert any(t.startswith(f"test_hook_{hook}") for t in vars(test_plugins)), hook
        elif kind in ("example", "config"):
            assert callable(globals().get(f"check_{name}")), f"no check_{name} for the {kind} block {name}"
    fragments = [code for kind, _, code in found if kind == "fragment"]
    assert 1 <= len(fragments) <= 3


MARKED = [block for block in blocks() if block[0] in ("example", "config")]


@pytest.mark.slow
@pytest.mark.parametrize("kind, name, code", MARKED, ids=[name for _, name, _ in MARKED])
def test_each_marked_block_runs_and_does_what_the_docs_say(kind, name, code, make_app, instance_path):
    folder = instance_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py" if kind == "example" else instance_path / "config.py").write_text(code)
    globals()[f"check_{name}"](make_app, instance_path)


def check_spam_filters(make_app, instance_path):
    """The config names all five defaults and myplugin: all six run, myplugin among them."""
    (instance_path / "plugins" / "myplugin.py").write_text(hook_example("check_submission"))
    app = make_app()
    report = app.test_cli_runner().invoke(args=["plugins", "--json"])
    enabled = {f["name"] for plugin in json.loads(report.output) for f in plugin["filters"] if f["enabled"]}
    assert enabled == {"number_question", "honeypot", "fill_time", "duplicate_signer", "links", "myplugin"}
    client = app.test_client()
    refused = sign(client, lang="en", message="Cheap VIAGRA here.")
    assert "Your letter looks like spam." in refused.get_data(as_text=True)
    # honeypot still runs: a filled-in trap stores nothing.
    trap = app.extensions["clamor"].plugin_manager.get_plugin("honeypot").FIELD_NAME
    sign(client, lang="en", **{trap: "http://spam.example"})
    with app.app_context():
        assert counts() == (0, 0)


def check_delivery(make_app, instance_path):
    """DELIVERY in instance/config.py replaces the default dict: the keys it names, and no others."""
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    app = make_app(FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")
    assert app.config["DELIVERY"] == {"email": "smtp", "fax": "fax_email"}
    assert app.config["SMTP_HOST"] == "mail.your-union.org"
    # Only email named: the default fax channel is gone, not merged back in.
    (instance_path / "config.py").write_text('DELIVERY = {"email": "smtp"}\n')
    with pytest.raises(ConfigError, match=r"are reached by fax, but DELIVERY has no backend for 'fax'"):
        make_app(FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")
    (instance_path / "campaigns" / "fax-test.toml").unlink()
    assert make_app().config["DELIVERY"] == {"email": "smtp"}


def check_polite(make_app, instance_path):
    """The instance file translates its reason from its own catalogue, in the page's language."""
    catalog = Catalog(locale="fr", domain="polite")
    catalog.add("Please keep your letter polite.", "Merci de garder une lettre courtoise.")
    folder = instance_path / "plugins" / "translations" / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with open(folder / "polite.mo", "wb") as mo:
        write_mo(mo, catalog)
    app = make_app(SPAM_FILTERS=["number_question", "polite"])
    client = app.test_client()
    assert "Merci de garder une lettre courtoise." in sign(client, lang="fr", message="Idiot!").get_data(as_text=True)
    assert "Please keep your letter polite." in sign(client, lang="en", message="Idiot!").get_data(as_text=True)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_clamor_init_makes_the_folder_the_docs_tell_you_to_drop_a_plugin_into(tmp_path):
    from test_cli import clamor

    instance = tmp_path / "fresh"
    assert "(`clamor init` makes the folder)" in PLUGIN_DOCS.read_text()
    assert clamor("init", instance=instance).returncode == 0
    assert (instance / "plugins").is_dir()
    (instance / "plugins" / "hello.py").write_text(
        "from app import hookimpl\n\n\n@hookimpl\ndef register_settings():\n    return {\"HELLO\": 1}\n")
    listed = clamor("plugins", instance=instance)
    assert listed.returncode == 0, listed.stderr
    assert f"hello: instance file {instance / 'plugins' / 'hello.py'}" in listed.stdout

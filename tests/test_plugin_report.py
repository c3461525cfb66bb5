"""``clamor plugins``: every loaded plugin, where it came from, its hooks, backends and filters."""

import json

from app import DeliveryBackend, hookimpl


class Pigeon(DeliveryBackend):
    name = "pigeon"
    verbose_name = "Carrier pigeon (tests)"


class PigeonPlugin:
    @hookimpl
    def register_delivery_backends(self):
        return [Pigeon]


def test_clamor_plugins_lists_each_plugin_with_its_source_hooks_backends_and_filters(make_app, hold_filter,
                                                                                     instance_path):
    app = make_app(plugins=[PigeonPlugin()], SPAM_FILTERS=hold_filter)
    result = app.test_cli_runner().invoke(args=["plugins"])
    assert result.exit_code == 0, result.output
    blocks = {lines[0].split(":", 1)[0]: "\n".join(lines) for lines in _blocks(result.output)}
    assert blocks["smtp"].splitlines() == [
        "smtp: built-in (plugins.smtp)",
        "  hooks: register_delivery_backends, register_settings",
        "  delivery backend: smtp (SMTP server)",
    ]
    hold_words_file = instance_path / "plugins" / "hold_words.py"
    assert blocks["hold_words"].splitlines()[0] == f"hold_words: instance file {hold_words_file}"
    assert "  spam filter: hold_words (enabled)" in blocks["hold_words"]
    assert "  spam filter: disposable_email (not in SPAM_FILTERS)" in blocks["disposable_email"]
    assert blocks["PigeonPlugin"].splitlines()[0] == f"PigeonPlugin: passed to create_app ({__name__})"
    assert "  delivery backend: pigeon (Carrier pigeon (tests))" in blocks["PigeonPlugin"]


def _blocks(output):
    block = []
    for line in output.splitlines():
        if not line.startswith(" ") and block:
            yield block
            block = []
        block.append(line)
    if block:
        yield block


def test_clamor_plugins_json(make_app, hold_filter, instance_path):
    app = make_app(SPAM_FILTERS=hold_filter)
    result = app.test_cli_runner().invoke(args=["plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {entry["name"]: entry for entry in json.loads(result.output)}
    assert plugins["fax_email"]["source"] == {"kind": "built-in", "module": "plugins.fax_email"}
    assert plugins["fax_email"]["backends"] == [
        {"name": "fax_email", "verbose_name": "Fax through a fax-to-email gateway"}
    ]
    assert plugins["hold_words"]["source"] == {
        "kind": "instance file", "path": str(instance_path / "plugins" / "hold_words.py")
    }
    assert plugins["hold_words"]["hooks"] == ["check_submission"]
    assert plugins["hold_words"]["filters"] == [{"name": "hold_words", "enabled": True}]
    assert plugins["links"]["filters"] == [{"name": "links", "enabled": False}]
    assert list(plugins)[:2] == ["outbox_files", "smtp"]  # load order

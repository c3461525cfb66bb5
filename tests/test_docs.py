"""Docs that cannot drift: every hook has its section in docs/plugins.md."""

import re
from pathlib import Path

from app import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def hook_names():
    return [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "clamor_spec")]


def test_every_hook_has_a_section_in_the_plugin_docs():
    sections = re.findall(r"^### (\w+)$", (ROOT / "docs" / "plugins.md").read_text(), re.MULTILINE)
    assert len(hook_names()) == 5
    assert sorted(sections) == sorted(hook_names())


def test_readme_shows_the_two_commands_and_the_screenshot():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "docs/screenshot-fr.png" in readme


def test_every_built_in_spam_filter_has_a_section_in_the_spam_docs():
    from app.plugins import DEFAULT_PLUGINS

    filters = [
        dotted.rsplit(".", 1)[1]
        for dotted in DEFAULT_PLUGINS
        if any(hasattr(__import__(dotted, fromlist=["_"]), hook) for hook in ("check_submission", "extend_action_form"))
    ]
    sections = re.findall(r"^### (\w+)", (ROOT / "docs" / "spam.md").read_text(), re.MULTILINE)
    assert len(filters) == 6
    assert sorted(filters) == sorted(sections)


def test_the_example_filter_in_the_spam_docs_is_short():
    docs = (ROOT / "docs" / "spam.md").read_text()
    example = re.search(r"```python\n(.*?)```", docs.split("## Writing a filter")[1], re.S).group(1)
    assert "@hookimpl" in example
    assert len(example.strip().splitlines()) <= 30

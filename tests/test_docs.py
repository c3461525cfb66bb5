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

"""Docs that cannot drift: every hook has its section in docs/plugins.md."""

import inspect
import re
from pathlib import Path

import pytest

from app import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DOCS = ROOT / "docs" / "plugins.md"


def hook_names():
    """Every hook the core defines, found the way pluggy finds them (the ``clamor_spec`` mark)."""
    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "clamor_spec"))


def plugin_doc_sections(text=None):
    """``{heading: text}`` for every ``### heading`` of docs/plugins.md, up to the next heading.

    A ``#`` line inside a fenced code block is a comment, not a heading.
    """
    text = PLUGIN_DOCS.read_text() if text is None else text
    sections, current, fenced = {}, None, False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            current = line[4:].strip() if line.startswith("### ") else None
            if current:
                sections[current] = ""
            continue
        if current:
            sections[current] += line
    return sections


def python_blocks(text):
    """The code of every ```python block in ``text``."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def hook_example(hook):
    """The example plugin in the section of ``hook``: the block that implements it."""
    blocks = [code for code in python_blocks(plugin_doc_sections()[hook]) if f"def {hook}(" in code]
    assert len(blocks) == 1, f"docs/plugins.md: section {hook} needs exactly one example implementing it"
    return blocks[0]


def missing_sections(text):
    """Hooks without a section in ``text``, and sections naming no hook."""
    sections = set(plugin_doc_sections(text))
    return sorted(set(hook_names()) - sections), sorted(sections - set(hook_names()))


def test_every_hook_has_a_section_in_the_plugin_docs():
    assert "register_delivery_backends" in hook_names() and "letter_failed" in hook_names()
    assert missing_sections(PLUGIN_DOCS.read_text()) == ([], [])


def test_a_missing_section_is_found():
    """The check above compares with the hooks the code defines, and skips code blocks."""
    first, *others = hook_names()
    text = "".join(f"### {hook}\n\ntext\n\n" for hook in others)
    text += f"### not_a_hook\n\n```python\n### {first}\n```\n"
    assert missing_sections(text) == ([first], ["not_a_hook"])


@pytest.mark.parametrize("hook", hook_names())
def test_each_hook_section_gives_signature_parameters_returns_and_example(hook):
    section = plugin_doc_sections()[hook]
    spec = getattr(hookspecs, hook)
    parameters = list(inspect.signature(spec).parameters)
    # First line: the call exactly as the spec declares it, and what it returns.
    assert section.strip().splitlines()[0].startswith(f"`{hook}({', '.join(parameters)})` → ")
    assert "**Parameters**:" in section
    listed = section.split("**Parameters**:")[1].split("**Returns**")[0]
    for name in parameters:
        assert f"- `{name}`:" in listed, f"{hook}: parameter {name} is not described"
    if not parameters:
        assert listed.strip().startswith("none")
    assert re.search(r"^\*\*Returns\*\*:\s+\S", section, re.MULTILINE), f"{hook}: say what the return value means"
    assert "**Example**" in section
    example = hook_example(hook)
    assert "@hookimpl" in example and re.search(r"^from app import (.*, )?hookimpl\b", example, re.M)
    # The example's function takes the spec's parameters (pluggy allows fewer, never others).
    declared = re.search(rf"def {hook}\((.*?)\)", example).group(1)
    assert [p.strip() for p in declared.split(",") if p.strip()] == parameters


def test_the_example_backend_in_the_plugin_docs_is_complete_and_short():
    example = hook_example("register_delivery_backends")
    assert "class " in example and "(DeliveryBackend)" in example
    assert "def send(self, letter)" in example and "Receipt(" in example
    assert len(example.strip().splitlines()) <= 40


def test_the_plugin_docs_name_the_entry_point_group_the_code_loads():
    from app.plugins import ENTRY_POINT_GROUP

    docs = PLUGIN_DOCS.read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in docs
    example = (ROOT / "examples" / "clamor-maildir" / "pyproject.toml").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in example
    assert "examples/clamor-maildir/" in docs


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

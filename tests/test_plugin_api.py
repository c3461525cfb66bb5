"""The plugin API is what ``app.__all__`` declares: built-in plugins and the example package import nothing else."""

import ast
import re
from pathlib import Path

import app

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FILES = sorted((ROOT / "plugins").glob("*.py")) + [ROOT / "examples" / "clamor-maildir" / "clamor_maildir.py"]


def core_imports(path):
    """Every (module, name) a file imports from Clamor's core package ``app``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "app":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "app"]
    return found


def test_built_in_plugins_import_only_the_declared_api():
    strays = {path.name: [(module, name) for module, name in core_imports(path)
                          if module != "app" or name not in app.__all__]
              for path in PLUGIN_FILES}
    assert {name: found for name, found in strays.items() if found} == {}
    assert any(core_imports(path) for path in PLUGIN_FILES)  # the walk finds imports at all


def test_every_declared_name_exists_and_is_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in app.__all__:
        assert hasattr(app, name), name
        if name != "create_app":
            assert f"`{name}" in docs, f"{name} is in app.__all__ but not in docs/plugins.md"


def test_every_name_in_the_docs_table_is_declared():
    """The other way round: the table of "What a plugin may import" names nothing that ``app`` does not declare."""
    table = (ROOT / "docs" / "plugins.md").read_text().split("## What a plugin may import")[1].split("\n\n|")[1]
    rows = [line.split("|")[1] for line in table.split("\n\n")[0].splitlines()[2:]]
    named = {name.split("(")[0] for row in rows for name in re.findall(r"`([^`]+)`", row)}
    assert "ConfigError" in named and "DeliveryBackend" in named
    assert sorted(named - set(app.__all__)) == []


def test_the_backend_attributes_the_docs_promise_exist():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for attribute in ("name", "verbose_name", "sent_label", "needs_backends", "backends", "smtputf8"):
        assert hasattr(app.DeliveryBackend, attribute), attribute
    for attribute in ("sent_label", "needs_backends", "backends"):
        assert f"`{attribute}`" in docs, attribute


def test_the_docs_examples_import_only_the_declared_api():
    for doc in ("plugins.md", "spam.md", "translating.md"):
        for block in (ROOT / "docs" / doc).read_text().split("```python")[1:]:
            code = block.split("```", 1)[0]
            for line in code.splitlines():
                assert not line.startswith(("from app.", "import app.")), f"docs/{doc}: {line}"

"""The plugin API is what ``app.__all__`` declares: built-in plugins and the example package import nothing else."""

import ast
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
        if name not in ("create_app", "ConfigError"):
            assert f"`{name}" in docs, f"{name} is in app.__all__ but not in docs/plugins.md"


def test_the_docs_examples_import_only_the_declared_api():
    for doc in ("plugins.md", "spam.md", "translating.md"):
        for block in (ROOT / "docs" / doc).read_text().split("```python")[1:]:
            code = block.split("```", 1)[0]
            for line in code.splitlines():
                assert not line.startswith(("from app.", "import app.")), f"docs/{doc}: {line}"

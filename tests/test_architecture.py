"""docs/architecture.md is the project's map: every module it names exists, and it names every module."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
NAMED = set(re.findall(r"`((?:app|plugins)/[\w/]+\.py)`", MAP))


def modules():
    """Every Python module of app/ and plugins/ (not the migrations: Alembic's)."""
    for folder in ("app", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in relative:
                yield relative


def test_every_module_the_map_names_exists():
    missing = sorted(name for name in NAMED if not (ROOT / name).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_map_names_every_module():
    unnamed = sorted(set(modules()) - NAMED)
    assert not unnamed, f"docs/architecture.md does not say what these modules hold: {unnamed}"


def test_the_functions_the_path_names_exist():
    # "`name` in `app/x.py`": the map's path of one signature points at real code.
    pairs = re.findall(r"`(\w+)`\s+in\s+`((?:app|plugins)/[\w/]+\.py)`", MAP)
    assert len(pairs) >= 5
    for function, module in pairs:
        source = (ROOT / module).read_text(encoding="utf-8")
        assert re.search(rf"^\s*(def|class) {function}\b|^{function} = ", source, re.M), (function, module)

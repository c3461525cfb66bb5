"""The size limits a newcomer can rely on: no module of app/ or plugins/ over 400 lines, no function over 50."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES, FUNCTION_LINES = 400, 50


def modules():
    for folder in ("app", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:  # Alembic's revisions are what they are
                yield path


def test_no_module_is_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES}
    assert not long, f"split these modules by what they hold: {long}"


def test_no_function_is_over_50_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "split these functions into named steps:\n" + "\n".join(long)

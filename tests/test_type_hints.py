"""Every public function and method of the core and the built-in plugins says what it takes and returns."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _unannotated(node, prefix, public_scope, path, found):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            dunder = child.name.startswith("__") and child.name.endswith("__")
            if not public_scope or (child.name.startswith("_") and not dunder):
                continue  # private helpers may stay bare; nested functions are not looked into
            problems = [] if child.returns is not None or child.name == "__init__" else ["return"]
            arguments = child.args.posonlyargs + child.args.args + child.args.kwonlyargs
            for index, argument in enumerate(arguments):
                if index == 0 and prefix and argument.arg in ("self", "cls"):
                    continue
                if argument.annotation is None:
                    problems.append(argument.arg)
            for argument in (child.args.vararg, child.args.kwarg):
                if argument is not None and argument.annotation is None:
                    problems.append("*" + argument.arg)
            if problems:
                found.append(f"{path}:{child.lineno} {prefix}{child.name}: {', '.join(problems)}")
        elif isinstance(child, ast.ClassDef):
            _unannotated(child, f"{prefix}{child.name}.", public_scope and not child.name.startswith("_"), path, found)


def test_every_public_function_has_type_hints():
    found = []
    for folder in ("app", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                relative = path.relative_to(ROOT).as_posix()
                _unannotated(ast.parse(path.read_text(encoding="utf-8")), "", True, relative, found)
    assert not found, "public functions without type hints:\n" + "\n".join(found)

"""No function or method of the package is longer than 80 lines (decorators and docstring included)."""
import ast
import pathlib

import declip_plugin

LIMIT = 80


def test_no_function_over_80_lines():
    root = pathlib.Path(declip_plugin.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 50  # the package itself, not an empty folder
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - first + 1
                if n > LIMIT:
                    long.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)

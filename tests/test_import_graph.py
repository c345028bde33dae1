"""The package's import drawing has no circle: every ``import`` of a package module, including the
ones inside functions, is an edge; a strongly connected component of more than one module fails."""
import ast
import pathlib

import declip_plugin

PACKAGE_DIR = pathlib.Path(declip_plugin.__file__).parent



def module_names(pkg_dir):
    """``{dotted module name: path}`` of every .py file under ``pkg_dir``."""
    out = {}
    for path in pkg_dir.rglob("*.py"):
        parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(name, is_pkg, node, pkg, mods):
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == pkg]
    if node.level:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
        if mod.split(".")[0] != pkg:
            return []
    # `from pkg import module` imports that module; `from module import name` imports the module
    return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]


def import_graph(pkg_dir):
    """``{module: set of package modules it imports}``, imports inside functions included."""
    mods = module_names(pkg_dir)
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, path.name == "__init__.py", node, pkg_dir.name, mods):
                    while target and target not in mods:  # `from .x import func` -> module x
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(frozenset(comp))
    return found


def test_no_circle():
    circles = [sorted(c) for c in cycles(import_graph(PACKAGE_DIR))]
    assert circles == [], f"import circles: {circles}"


def test_a_circle_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import os\n\ndef f():\n    from .sub import high\n    return high\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "high.py").write_text("from ..low import f\n")
    (pkg / "alone.py").write_text("from . import low\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.high"] == {"pkg.low"} and "pkg.sub.high" in graph["pkg.low"]
    assert cycles(graph) == [frozenset({"pkg.low", "pkg.sub.high"})]


def test_the_engine_never_imports_the_modules_that_register_into_it():
    """The plugin manager names its built-in plugins as strings; nothing imports declip_plugin.builtin."""
    graph = import_graph(PACKAGE_DIR)
    assert [m for m, deps in graph.items() if "declip_plugin.builtin" in deps] == []

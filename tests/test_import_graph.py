"""The package's import drawing: every ``import`` of a package module, including the ones inside
functions, is an edge. It has no circle (a strongly connected component of more than one module fails),
no import from a lower floor to a higher one (FLOORS below; the few that go up on purpose are listed in
ALLOWED_UP, each with its reason), and nothing imports the built-in plugin module."""
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


# --- floors: no import from a lower floor to a higher one ------------------------------------------
#: the package's floors, lowest first: (what lives there, module names relative to the package; a name
#: covers its submodules unless one of them is named on another floor; ``__init__`` is the package itself)
FLOORS = (
    ("leaf helpers and facts: they import nothing of the package but each other",
     ("errors", "atomicio", "digests", "registry", "hookspecs", "deepfakebench_facts", "progress", "config.schema",
      "run_folder", "report_html")),
    ("the plugin manager, the config and the checkpoint format; the package's public API (build_detector)",
     ("plugins", "config", "checkpoints", "__init__")),
    ("what a run is built from: backbones, detectors, datasets, media, metrics, the optimizer",
     ("backbones", "detectors", "data", "media", "metrics", "optim")),
    ("one run: training, testing, prediction (engine/), and the figures drawn from results",
     ("engine", "plots")),
    ("what drives many runs or reads their folders, and the ways in and out of DeepfakeBench",
     ("integrations", "prepare", "protocol", "references",
      "leaderboard", "report", "bench")),
    ("the command line: the commands, the CLI and the built-in plugin that registers everything",
     ("commands", "cli", "builtin", "__main__")),
)

#: imports that go up a floor on purpose: (importer, imported) -> why
ALLOWED_UP = {
    ("__init__", "detectors"): "the public API's build_detector() hands over to detectors.build_detector; it imports "
                               "it inside the function, so `import declip_plugin` stays light",
}


def floor_of(module, pkg, floors=FLOORS):
    """The floor index of ``module`` (the most specific name of ``floors`` that covers it), or None."""
    rel = module[len(pkg) + 1:] if module != pkg else "__init__"
    best = None
    for i, (_, names) in enumerate(floors):
        for name in names:
            if (rel == name or rel.startswith(name + ".")) and (best is None or len(name) > best[1]):
                best = (i, len(name))
    return None if best is None else best[0]


def up_arrows(graph, pkg, floors=FLOORS):
    """``[(importer, imported)]`` (names relative to ``pkg``) where the imported module sits on a higher
    floor, and the modules no floor covers."""
    rel = lambda m: m[len(pkg) + 1:] if m != pkg else "__init__"  # noqa: E731
    unplaced = sorted(rel(m) for m in graph if floor_of(m, pkg, floors) is None)
    ups = sorted((rel(m), rel(d)) for m, deps in graph.items() for d in deps
                 if None not in (floor_of(m, pkg, floors), floor_of(d, pkg, floors))
                 and floor_of(d, pkg, floors) > floor_of(m, pkg, floors))
    return ups, unplaced


def test_every_module_has_a_floor():
    _, unplaced = up_arrows(import_graph(PACKAGE_DIR), PACKAGE_DIR.name)
    assert unplaced == [], f"modules on no floor (add each to FLOORS in {__file__}): {unplaced}"


def test_no_import_goes_up_a_floor():
    ups, _ = up_arrows(import_graph(PACKAGE_DIR), PACKAGE_DIR.name)
    unexplained = [f"{a} imports {b}" for a, b in ups if (a, b) not in ALLOWED_UP]
    assert unexplained == [], "imports from a lower floor to a higher one: " + "; ".join(unexplained)
    stale = sorted(set(ALLOWED_UP) - set(ups))
    assert stale == [], f"ALLOWED_UP lists imports that no longer go up (remove them): {stale}"


def test_an_import_up_a_floor_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "high").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .high import top\n    return top\n")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "high" / "top.py").write_text("from .. import low\n")
    (pkg / "high" / "base.py").write_text("")
    floors = (("low", ("__init__", "low", "high.base")), ("high", ("high",)))
    ups, unplaced = up_arrows(import_graph(pkg), "pkg", floors)
    assert ups == [("low", "high.top")] and unplaced == []
    assert floor_of("pkg.high.base", "pkg", floors) == 0 and floor_of("pkg.high.top", "pkg", floors) == 1
    assert up_arrows(import_graph(pkg), "pkg", floors[:1])[1] == ["high", "high.top"]

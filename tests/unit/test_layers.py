"""The layer rule of docs/design.md, checked on the source: imports only point down.

Every import counts, also one inside a function. A tool (one module per runbook tool) imports no
other tool; shared readers import no tool; nothing below the scenarios imports a scenario.
"""

import ast
import pathlib

import hatasks

PKG = pathlib.Path(hatasks.__file__).parent

LAYERS = {
    # 0: pure and io: parsing, plans, rules, ssh/sql, journal, output, option checks
    "errors": 0, "shell": 0, "config": 0, "output": 0, "inventory": 0, "journal": 0,
    "remote": 0, "checks": 0, "cli": 0, "base": 0, "crmmon": 0, "pool": 0, "parsers": 0,
    "syncplan": 0, "rules": 0, "states": 0, "lock": 0, "watch": 0,
    # 1: shared readers and state
    "crm": 1, "backends": 1, "newest": 1, "compare": 1, "divergence": 1, "salvage": 1,
    # 2: tools
    "hb": 2, "pgpool": 2, "pg": 2, "web": 2, "notify": 2,
    # 3: scenarios and the tasks above the tools
    "engine": 3, "syncio": 3, "syncsteps": 3, "syncrescue": 3, "sync": 3, "db": 3, "lb": 3, "status": 3, "core_tasks": 3,
    "inventory_tasks": 3, "lock_tasks": 3,
    # 4: entry
    "namespace": 4, "program": 4,
}
TOOLS = 2


def imports_of(path):
    """hatasks modules imported anywhere in PATH (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                found |= {mod} if mod else {a.name for a in node.names}
            elif mod == "hatasks":
                found |= {a.name for a in node.names}
            elif mod.startswith("hatasks."):
                found.add(mod.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("hatasks.")}
    return found


def graph():
    return {p.stem: imports_of(p) for p in PKG.glob("*.py") if p.stem != "__init__"}


def test_every_module_has_a_layer():
    assert set(graph()) == set(LAYERS)


def test_imports_point_down_and_tools_do_not_import_each_other():
    wrong = []
    for mod, deps in graph().items():
        for dep in deps:
            if LAYERS[dep] > LAYERS[mod]:
                wrong.append(f"{mod} (layer {LAYERS[mod]}) imports {dep} (layer {LAYERS[dep]})")
            elif LAYERS[mod] == TOOLS and LAYERS[dep] == TOOLS:
                wrong.append(f"tool {mod} imports tool {dep}")
    assert wrong == []


def test_no_import_cycle():
    g = graph()
    state = {}

    def visit(mod, path):
        if state.get(mod) == "done":
            return None
        if state.get(mod) == "open":
            return path[path.index(mod):] + [mod]
        state[mod] = "open"
        for dep in sorted(g[mod]):
            cycle = visit(dep, path + [mod])
            if cycle:
                return cycle
        state[mod] = "done"
        return None

    cycles = [c for c in (visit(m, []) for m in sorted(g)) if c]
    assert cycles == []


def test_the_checker_sees_function_local_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from hatasks import pg\n    from .pool import x\n")
    assert imports_of(src) == {"pg", "pool"}

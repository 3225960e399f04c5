"""The architecture as a test: layers import only downwards, and project modules form no cycle.

    app.core  <  app.storage  <  audits  <  app.web  <  app.cli, app (the package root)

Imports inside functions count too (an import that dodges a cycle is still one).
Inside a function, a project module may be imported only by an edge (lazy CLI
commands) or when it is one of the audit's heavy stages (numpy, onnxruntime,
torch, faster-whisper load with them), never to break a cycle.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "audits")
LAYERS = [("app.core", 0), ("app.storage", 1), ("audits", 2), ("app.web", 3), ("app.cli", 4), ("app", 5)]
HEAVY_STAGES = {"audits.audio", "audits.segment", "audits.spool", "audits.fingerprint", "audits.transcribe",
                "audits.weights", "audits.batch", "audits.pipeline", "audits.report", "audits.rules",
                "audits.context", "audits.library"}
# (module, what it imports inside a function, why)
LAZY_BY_DESIGN = {("audits.batch", "app.storage.audits"): "sqlite_utils loads numpy before a worker limits its threads",
                  ("audits.batch", "audits.context"): "the context reads the database (sqlite_utils, numpy)"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def layer(module: str) -> int:
    return next(rank for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + "."))


def imports(path: Path, modules: dict) -> list[tuple[str, bool, int]]:
    """(imported project module, inside a function, line) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.append((submodule if submodule in modules else child.module, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return [(name, inner, line) for name, inner, line in found if name in modules]


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {target for target, _, _ in imports(path, modules) if target != name}
            for name, path in modules.items()}


def test_every_module_is_in_a_layer():
    for name in project_modules():
        assert layer(name) is not None, name


def test_no_module_imports_a_higher_layer():
    modules = project_modules()
    upward = [f"{name}:{line} imports {target}" for name, path in modules.items()
              for target, _, line in imports(path, modules)
              if layer(target) > layer(name) and not (name == "app" and target.startswith("app."))]
    assert upward == []


def test_project_modules_form_no_cycle():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def walk(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                walk(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_function_level_imports_are_only_lazy_entry_points_or_heavy_stages():
    modules = project_modules()
    lazy = [f"{name}:{line} imports {target} inside a function" for name, path in modules.items()
            for target, inner, line in imports(path, modules)
            if inner and not (layer(name) >= layer("app.cli") or target in HEAVY_STAGES
                              or (name, target) in LAZY_BY_DESIGN)]
    assert lazy == []


def library_imports(below_layer: int, libraries: tuple[str, ...]) -> list[str]:
    """"module:line imports library" for modules of the layers below `below_layer` that import one of them."""
    offenders = []
    for name, path in project_modules().items():
        if layer(name) >= below_layer:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in libraries]
    return offenders


def test_only_the_edges_import_flask_or_click():
    assert library_imports(layer("app.web"), ("flask", "click", "werkzeug")) == []


def test_the_core_touches_no_database_or_numpy():
    assert library_imports(layer("app.storage"), ("sqlite3", "sqlite_utils", "psycopg", "numpy", "flask",
                                                  "click")) == []

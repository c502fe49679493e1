"""The layers point one way: a test walks every module's imports (with ast) and fails when a lower layer imports a
higher one. The picture is in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import resnet

PACKAGE = Path(resnet.__file__).parent

# Lowest first. A module may import its own layer and the layers below it, never a layer above.
LAYERS = [
    ("base", ["errors", "writes", "table", "io", "device", "images", "plots", "runs", "mistakes"]),
    ("models and data", ["models", "data"]),
    ("config", ["config", "folder_defaults"]),
    ("model files and evaluation", ["weights", "evaluate", "gradcam", "report_page"]),
    ("train", ["train"]),
    ("tools", ["predict", "backends", "export", "explain", "experiments"]),
    ("cli", ["cli", "__main__", "__init__"]),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def top_name(module: str) -> str:
    """``resnet.train.loop`` -> ``train``; ``resnet.io`` -> ``io``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> set[str]:
    """Every ``resnet.*`` module ``path`` imports, at the top or inside functions, relative imports resolved."""
    module = "resnet." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("resnet")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                # `from . import x` names submodules: count them one by one
                found |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
            elif node.module and node.module.startswith("resnet"):
                found.add(node.module)
    return found


def test_every_module_has_a_layer():
    tops = {top_name("resnet." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts))
            for p in PACKAGE.rglob("*.py")}
    assert tops <= set(RANK), f"modules without a layer in LAYERS: {sorted(tops - set(RANK))}"


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = top_name("resnet." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for target in imported_modules(path):
            other = top_name(target)
            if other in RANK and RANK[other] > RANK[own]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({own}) imports {target} ({other})")
    assert not wrong, "lower layers import higher ones:\n" + "\n".join(wrong)


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    """The walker itself: a relative import two levels up and an absolute one are both found."""
    fake = PACKAGE / "data" / "memory.py"
    found = imported_modules(fake)
    assert "resnet.data.sampling" in found and "resnet.data.datasets" in found
    assert "resnet.errors" in imported_modules(PACKAGE / "data" / "registry.py")
    assert top_name("resnet.train.loop") == "train" and RANK["data"] < RANK["train"] < RANK["cli"]


def test_export_and_predict_do_not_import_each_other():
    export = set().union(*(imported_modules(p) for p in (PACKAGE / "export").glob("*.py")))
    predict = imported_modules(PACKAGE / "predict.py").union(
        *(imported_modules(p) for p in (PACKAGE / "backends").glob("*.py")))
    assert not {m for m in export if top_name(m) == "predict"}
    assert not {m for m in predict if top_name(m) == "export"}


def module_name(path: Path) -> str:
    """``.../resnet/weights/named.py`` -> ``resnet.weights.named``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("resnet", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top, inside functions or for type checking alike;
    ``from .pkg import name`` points at ``pkg.name`` when that is a module, else at the package."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    above = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{above}.{node.module}" if node.module else above
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in paths and t != name}
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """At least one cycle of every strongly connected group of modules (depth-first search), each as a path that
    ends where it starts."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    """No module imports, directly or through others, a module that imports it (imports inside functions count:
    they hide a cycle, they do not break it)."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    graph = import_graph()
    assert {"resnet.weights.adapt", "resnet.weights.card"} <= graph["resnet.weights.load"]
    assert any("resnet.train.distributed" in edges for edges in graph.values())  # `from . import distributed`
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)

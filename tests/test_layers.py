"""The layers point one way: a test walks every module's imports (with ast) and fails when a lower layer imports a
higher one. The picture is in README's Development section."""

from __future__ import annotations

import ast
from pathlib import Path

import resnet

PACKAGE = Path(resnet.__file__).parent

# Lowest first. A module may import its own layer and the layers below it, never a layer above.
LAYERS = [
    ("base", ["errors", "table", "io", "device", "images", "plots"]),
    ("models and data", ["models", "data"]),
    ("config", ["config", "folder_defaults"]),
    ("model files and evaluation", ["modelcard", "runs", "evaluate", "pretrained"]),
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

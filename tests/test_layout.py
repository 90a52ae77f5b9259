"""The house's shape, read from the source with `ast` (nothing imported): the imports have one
direction, a plan's methods and task are resolved once, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "peftlab"
# where a plan passes after `train.plan.plan` made it: these take its resolved methods and task
PLAN_PATH = ["tune/driver.py", "tune/estimate.py", "tune/plan.py", "tune/race.py", "tune/race_plan.py",
             "tune/space.py", "train/runner.py", "train/runs.py", "scale/devices.py"]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    return {id(x) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
            for x in ast.walk(n)}


def _imports(name: str, f: Path, mods: dict[str, Path]) -> set[str]:
    """The peftlab modules `name` imports anywhere (functions included: a lazy import is still a
    dependency), less those only a type checker reads. `from pkg import sub` depends on `pkg.sub`."""
    tree = ast.parse(f.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            found = subs if len(subs) == len(node.names) else [base, *subs]
        elif isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        else:
            continue
        out |= {m for m in found if m in mods and m != name}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_imports_have_one_direction() -> None:
    mods = _modules()
    graph = {name: _imports(name, f, mods) for name, f in mods.items()}
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check finds one


def test_the_plan_path_takes_resolved_methods_and_task() -> None:
    """peft resolves a config to its tuner once; peftlab's plan resolves each entry's method and the
    task once (`Plan.method`, `Plan.task`), and the modules a plan passes through take them from it."""
    looked_up = []
    for rel in PLAN_PATH:
        tree = ast.parse((PKG / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("get_method", "spec"):
                looked_up.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Name) and node.id == "REGISTRY":
                looked_up.append(f"{rel}:{node.lineno}: REGISTRY")
    assert looked_up == [], "\n".join(looked_up)


def test_modules_stay_small() -> None:
    """nanoGPT's rule of the house: small files, one job each."""
    long = {str(f.relative_to(SRC)): n for f in PKG.rglob("*.py") if (n := len(f.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}

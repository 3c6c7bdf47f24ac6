"""The package's floor plan, read from its imports (every import, top-level or inside a function):
the method imports nothing from running, storage, data, conversion or the config layer; the
layers below never reach up; and no module imports itself through others (no cycle)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "score_sde"

METHOD = {
    "sde", "losses", "score_fn", "sampling", "fast_sampling", "likelihood", "solvers",
    "guidance", "controllable", "gmm", "models",
}  # fmt: skip
# What each layer may not import (by top-level name under score_sde).
FORBIDDEN = {
    "method": {"config", "run", "store", "data", "convert", "evaluation", "cli", "api"},
    "config": {"run", "store", "data", "convert", "evaluation", "cli", "api"},
    "store": {"config", "run", "data", "convert", "evaluation", "cli", "api"},
    "data": {"run", "convert", "evaluation", "cli", "api"},
    "evaluation": {"convert", "cli", "api"},
    "run": {"convert", "cli", "api"},
    "convert": {"cli", "api"},
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("score_sde", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The score_sde modules `name` imports (`from a import b` is a.b when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m.startswith("score_sde.") or m == "score_sde"} & set(MODULES)


GRAPH = {name: _imports(name, path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    top = module.split(".")[1] if "." in module else None
    return "method" if top in METHOD else top


def test_the_walk_sees_the_imports():
    # a known edge of each kind: top-level, `from package import module`, inside a function
    assert "score_sde.sde" in GRAPH["score_sde.sampling"]
    assert "score_sde.run.parallel" in GRAPH["score_sde.run.modes.train"]
    assert "score_sde.api" in GRAPH["score_sde"]
    assert len(MODULES) > 50


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_arrow_points_up(layer):
    bad = [
        f"{m} imports {d}"
        for m, deps in sorted(GRAPH.items())
        if _layer(m) == layer
        for d in sorted(deps)
        if _layer(d) in FORBIDDEN[layer]
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(GRAPH[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)

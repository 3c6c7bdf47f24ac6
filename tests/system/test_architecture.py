"""The package's floor plan, read from its imports (every import, top-level or inside a function):
the method imports nothing from running, storage, data, conversion or the config layer; the
layers below never reach up; and no module imports itself through others when it runs (no cycle;
imports under `if TYPE_CHECKING:` serve annotations only)."""

import ast
import pathlib

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "score_sde"

METHOD = {
    "sde", "losses", "score_fn", "sampling", "fast_sampling", "likelihood", "solvers",
    "guidance", "controllable", "gmm", "models", "names", "phema",
}  # fmt: skip
# What each layer may not import (by top-level name under score_sde).
EVERYTHING = {"method", "config", "run", "store", "data", "convert", "evaluation", "cli", "api"}
FORBIDDEN = {
    "parallel": EVERYTHING,  # the device helpers: below running and evaluation alike
    "method": {"config", "run", "store", "data", "convert", "evaluation", "cli", "api", "parallel"},
    "config": {"run", "store", "data", "convert", "evaluation", "cli", "api"},
    "store": {"config", "run", "data", "convert", "evaluation", "cli", "api"},
    "data": {"run", "convert", "evaluation", "cli", "api"},
    "evaluation": {"run", "convert", "cli", "api"},  # run calls the evaluators, never back
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


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (imports for annotations, never run)."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }


def _imports(name: str, path: pathlib.Path, *, annotations: bool = True) -> set[str]:
    """The score_sde modules `name` imports (`from a import b` is a.b when that is a module);
    with annotations=False, not those imported only for annotations."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    skip = set() if annotations else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
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
# What runs: a module and the helpers it passes itself to may name each other in annotations.
RUNTIME = {name: _imports(name, path, annotations=False) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    if module.endswith(".__main__"):  # a `python -m` entry point: the top, like the cli
        return "cli"
    top = module.split(".")[1] if "." in module else None
    return "method" if top in METHOD else top


def test_the_walk_sees_the_imports():
    # a known edge of each kind: top-level, `from package import module`, inside a function
    assert "score_sde.sde" in GRAPH["score_sde.sampling"]
    assert "score_sde.parallel" in GRAPH["score_sde.run.modes.train"]
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
        for d in sorted(RUNTIME[m]):
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


def test_no_mode_borrows_from_another_mode():
    """Each mode uses the layer below (run/, evaluation/, store/); only the dispatcher,
    run/modes/__init__, names them all."""
    modes = {m for m in GRAPH if m.startswith("score_sde.run.modes.")}
    bad = [f"{m} imports {d}" for m in sorted(modes) for d in sorted(GRAPH[m] & modes)]
    assert not bad, "\n".join(bad)


def test_reading_and_checking_a_config_imports_no_jax():
    """Every shipped config read through the real boundary (and printed as the launcher's
    --dry_run does) in a fresh interpreter: JAX, Flax, diffrax and orbax stay unimported."""
    import subprocess
    import sys

    code = (
        "import glob, sys\n"
        "from score_sde import config\n"
        "paths = [p for p in glob.glob('configs/**/*.py', recursive=True)\n"
        "         if not p.endswith('__init__.py') and 'default' not in p.rsplit('/', 1)[-1]]\n"
        "read = 0\n"
        "for p in sorted(paths):\n"
        "    try:\n"
        "        cfg = config.load(p, {})\n"
        "    except ValueError:\n"
        "        continue  # a base that is no run by itself\n"
        "    read += 1\n"
        "    str(cfg)\n"
        "heavy = [m for m in ('jax', 'flax', 'diffrax', 'orbax', 'tensorflow') if m in sys.modules]\n"
        "print(read, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    read, heavy = out.stdout.split(" ", 1)
    assert int(read) > 30 and heavy.strip() == "[]", out.stdout

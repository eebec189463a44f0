"""Layers point one way (docs/architecture.md): every import of every module is read with `ast`,
module-level and inside functions, `import x` and `from x import y`, and none may reach up.

A new app goes into LAYERS at its place (lowest first): `accounts` right after `core`, `lookout`
right before `console`, as CONTRACTS.md orders them.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: each app may import the ones before it, never one after it.
LAYERS = ["core", "accounts", "projects", "training", "inference", "lookout", "console"]
# Plain Python packages beside the layers, and what each may import of ours (nothing of Django).
APART = {"engine": {"engine"}, "bench": {"bench", "engine"}}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. projects.views
    target: str  # what it imports, absolute: "inference.models", or "projects.images" for `from projects import images`
    line: int
    local: bool  # inside a function (or a method)


def _modules(root: Path, package: str):
    """(dotted name, path) of every module of a package under `root`."""
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, local: bool):
        if isinstance(node, ast.Import):
            found.extend(Import(module, alias.name, node.lineno, local) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from x import y` may import the module x.y; both count as importing x.y's layer.
            found.extend(Import(module, f"{base}.{alias.name}", node.lineno, local) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def layer_problems(root: Path, layers: list[str] = LAYERS, apart: dict[str, set[str]] = APART) -> list[str]:
    """Every import that breaks the layering, as "module:line: why"."""
    ours = set(layers) | set(apart)
    problems = []
    for package in [*layers, *apart]:
        if not (root / package).is_dir():
            continue
        for module, path in _modules(root, package):
            for imp in _imports(module, path):
                top = imp.target.split(".")[0]
                where = f"{module}:{imp.line}: imports {imp.target}"
                if package in apart:
                    if top == "django" or (top in ours and top not in apart[package]):
                        problems.append(f"{where}, but {package} stands apart (plain Python, no Django, no apps)")
                elif top in layers and layers.index(top) > layers.index(package):
                    problems.append(f"{where}, a layer above {package}")
                elif top in apart and top != "engine" and package != "console":
                    # The benchmark is a tool: the shell offers it (manage.py benchmark), no app uses it.
                    problems.append(f"{where}: apps may use the engine, not {top}")
                elif imp.local and top in layers:
                    # Inside a function, an import of our own apps only ever hides a cycle. (One of
                    # the engine's heavy modules may be deferred for cost: that is allowed.)
                    problems.append(f"{where} inside a function: import it at the top of the module")
    return problems


def import_cycles(root: Path, packages: list[str] = LAYERS) -> list[list[str]]:
    """Cycles among our modules' module-level imports (a cycle imports half-initialised modules)."""
    modules = {
        name: path for package in packages if (root / package).is_dir() for name, path in _modules(root, package)
    }
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(name, path):
            if imp.local:
                continue
            target = imp.target
            while target and target not in modules:  # `from x import name` names a module or a thing in x
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    cycles, state = [], {}

    def visit(name, stack):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_module_imports_a_layer_above_its_own():
    assert layer_problems(ROOT) == []


def test_our_modules_import_each_other_without_cycles():
    assert import_cycles(ROOT) == []


def test_the_checker_catches_upward_and_hidden_imports(tmp_path):
    """A synthetic tree with each kind of violation: the checker must name every one."""
    files = {
        "core/__init__.py": "",
        "core/errors.py": "from projects.models import Project\n",  # module-level, upward
        "projects/__init__.py": "",
        "projects/models.py": "",
        "projects/views.py": "def page():\n    import inference.views\n",  # upward, inside a function
        "projects/images.py": "from . import models\nfrom ..inference import models as m\n",  # relative, upward
        "training/__init__.py": "",
        "training/services.py": "def run():\n    from projects import models\n",  # down, but hidden in a function
        "training/runner.py": "def run():\n    import engine  # deferred for cost\n",  # allowed
        "training/speed.py": "import bench\n",  # only the shell offers the benchmark
        "inference/__init__.py": "",
        "console/__init__.py": "import core.errors\nimport inference\n",  # downward: allowed
        "console/benchmark.py": "from bench import benchmark\n",  # allowed: manage.py benchmark
        "engine/__init__.py": "import django\nfrom projects import models\n",  # the engine knows no Django, no app
        "bench/__init__.py": "import engine\n",  # allowed
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = layer_problems(tmp_path)
    assert [p.split(":")[0] + ":" + p.split(":")[1] for p in problems] == [
        "core.errors:1",
        "projects.images:2",
        "projects.views:2",
        "training.services:2",
        "training.speed:1",
        "engine:1",
        "engine:2",
    ], problems


def test_the_checker_catches_a_cycle(tmp_path):
    files = {
        "projects/__init__.py": "",
        "projects/services.py": "from projects import tasks\n",
        "projects/tasks.py": "from projects.services import run\n",
        "projects/models.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_cycles(tmp_path) == [["projects.services", "projects.tasks", "projects.services"]]

"""The package's layering, as tests: no import circle, nothing upward, the model without a CLI library,
and no switch on a modification's name outside its own module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pileablate"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """The pileablate modules a file imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        nodes = [node]
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and the like still run at import
            nodes = [*node.body, *node.orelse]
        for item in nodes:
            if isinstance(item, ast.Import):
                found |= {a.name for a in item.names if a.name.startswith("pileablate")}
            elif isinstance(item, ast.ImportFrom) and item.module and item.module.startswith("pileablate"):
                found.add(item.module)
                found |= {f"{item.module}.{a.name}" for a in item.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _top_level_imports(path) if m in modules and m != name}
    return graph


def test_the_package_has_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A module importing its own package's __init__ is how Python imports submodules, not a circle.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_upward_import():
    """The registry is a leaf; the model imports nothing of the trainer, the commands or the modifications;
    nothing but the commands imports the command layer; mods/ is imported by nobody below it."""
    graph = _graph()
    below_commands = [m for m in graph if not m.startswith(("pileablate.commands", "pileablate.cli", "pileablate.__main__"))]
    for module in below_commands:
        assert not any(i.startswith(("pileablate.commands", "pileablate.cli")) for i in graph[module]), module
    assert graph["pileablate.registry"] <= {"pileablate.errors", "pileablate.errors.UserError"}
    for module in [m for m in graph if m.startswith("pileablate.model")]:
        upward = [i for i in graph[module] if i.startswith(("pileablate.train", "pileablate.mods", "pileablate.ablate",
                                                            "pileablate.report", "pileablate.options.typer"))]
        assert not upward, (module, upward)
    for module in [m for m in graph if not m.startswith("pileablate.mods")]:
        assert not any(i.startswith("pileablate.mods.") or i == "pileablate.mods" for i in graph[module]), module
    for module in [m for m in graph if m.startswith("pileablate.mods.")]:
        assert not any(i.startswith("pileablate.train") for i in graph[module]), module  # no trainer internals


def test_the_model_loads_no_cli_library():
    code = "import sys, pileablate.model.gpt, pileablate.model.build; print('typer' in sys.modules, 'click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_no_switch_on_a_modifications_name_outside_its_own_module():
    """No string literal in the model, trainer, export, report or ablation code names a modification or a
    component that is not the baseline's (its default): they consult the registry by slot."""
    from pileablate.registry import HOOKS, SLOTS, TRAINER_DEFAULTS, components, modifications
    from pileablate.model.config import ModelConfig

    baseline = {f.default for f in ModelConfig.__dataclass_fields__.values() if isinstance(f.default, str)}
    baseline |= set(TRAINER_DEFAULTS.values())
    names = set(modifications()) | {c for slot in (*SLOTS, *HOOKS) for c in components(slot)}
    names -= baseline
    found = []
    for folder in ("model", "train", "export", "report", "ablate", "inference", "data", "commands"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not found, found


def test_ablate_flows_one_way_even_inside_functions():
    """specification (ablation) <- plan (study) <- execution (phases) <- run: no module of ablate/ imports
    one later in that order, not even inside a function (a lazy import hides a circle, it does not end it)."""
    order = ["pileablate.ablate.ablation", "pileablate.ablate.study", "pileablate.ablate.phases", "pileablate.ablate.run"]
    for position, module in enumerate(order):
        path = PACKAGE / "ablate" / (module.rsplit(".", 1)[1] + ".py")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        later = [m for m in order[position + 1:] if m in imported]
        assert not later, (module, later)


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_a_run_is_resolved_in_one_function():
    """--mods, the model, the learning rate and the budget of a run are worked out by `train.plan.plan_run`
    alone: nothing else in the trainer or the ablation resolves them again, and the preset's learning rate
    and a budget's fields are each read by one function."""
    resolving = {"resolve_mods", "load_mods_files", "build_model_config", "preset_defaults", "resolve_config"}
    allowed = {"plan.py": resolving, "config.py": {"preset_defaults"},  # where the preset's defaults live
               "runner.py": {"build_model_config"}}  # the baseline's size, for the grid's default budget
    found = []
    for path in sorted([*(PACKAGE / "train").glob("*.py"), PACKAGE / "ablate" / "runner.py"]):
        extra = (_calls(path) & resolving) - allowed.get(path.name, set())
        found += [f"{path.relative_to(PACKAGE)}: {name}" for name in sorted(extra)]
    assert not found, found
    readers = {"lr": [], "budget": []}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if 'preset_defaults(' in text and '["lr"]' in text:
            readers["lr"].append(path.name)
        if "def budget_of(" in text:
            readers["budget"].append(path.name)
    assert readers == {"lr": ["config.py"], "budget": ["runfolder.py"]}


def test_the_trainer_is_split_by_role():
    """Planning, building, the loop's state, the session the loop calls and the record each have a module
    readable on its own (at most ~250 lines)."""
    for name in ("plan", "build", "state", "session", "record", "run_data", "trainer"):
        lines = len((PACKAGE / "train" / f"{name}.py").read_text().splitlines())
        assert lines <= 250, (name, lines)

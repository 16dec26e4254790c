"""The package's layering rules (see `artgan/__init__.py`), checked by reading its imports.

Each rule is a function returning its violations, so a test can also show that it catches a
deliberate one (`test_each_rule_catches_a_violation`).
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "artgan"
HEAVY = ("tensorflow", "keras", "keras_tuner", "sklearn", "matplotlib")
#: Layers, lowest first: a module may import its own layer and lower ones only.
LAYERS = (
    {"errors", "paths", "files", "runfolder", "progress", "registry", "formatting"},
    {"config"},
    {"data"},
    {"model"},
    {"tuning", "evaluation"},
    {"report", "similar"},
    {"cli", "__main__"},
)
RUN_FOLDER_FILES = {
    "spec.yaml",
    "trials.csv",
    "trials.json",
    "fingerprint",
    "comparable.json",
    "skipped.txt",
    "workers.json",
    "artgan_trial.json",
    "best",
    "tuner",
    "tensorboard",
    "logs",
}


class Module:
    """One module of the package as source: its imports, where they are, what it says."""

    def __init__(self, name, source):
        self.name = name
        self.source = source
        self.tree = ast.parse(source)
        #: `if TYPE_CHECKING:` imports never run: they keep the layers, but make no cycle
        #: and load nothing heavy.
        self.top_imports, self.inner_imports, self.typing_imports = [], [], []
        for node, where in _imports(self.tree):
            imported = {
                "top": self.top_imports,
                "inner": self.inner_imports,
                "typing": self.typing_imports,
            }[where]
            imported += [(target, node.lineno) for target in _targets(node, name)]

    @property
    def room(self):
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""

    def imports(self):
        return self.top_imports + self.inner_imports + self.typing_imports

    def strings(self):
        """String constants that are not docstrings, with their line."""
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(self.tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        return [
            (n.value, n.lineno)
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
        ]


def _imports(tree):
    """(import node, "top", "inner" (in a function) or "typing" (under `if TYPE_CHECKING:`))
    for every import in `tree`."""

    def visit(node, where):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and where == "top":
                yield from visit(child, "inner")
            elif _type_checking(child):
                yield from visit(child, "typing")
            else:
                yield from visit(child, where)

    return list(visit(tree, "top"))


def _type_checking(node):
    """An `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) block."""
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _targets(node, importer):
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against the importer's package
        base = importer.split(".")[: -node.level]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module
    return [module] + [f"{module}.{alias.name}" for alias in node.names]  # maybe submodules


def load_package(root=PACKAGE):
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = Module(name, path.read_text())
    return modules


def room_of(target):
    """The subpackage (or top-level module) of an artgan module, None for anything else."""
    parts = target.split(".")
    known = set().union(*LAYERS)
    return parts[1] if parts[0] == "artgan" and len(parts) > 1 and parts[1] in known else None


def layer(room):
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


# ----------------------------------------------------------------------------- the rules


def lower_layers_only(modules):
    """Rules 1, 3, 4: a module imports its own layer or lower ones (data/model never import
    tuning, report or cli; report and similar never import tuning; ...)."""
    bad = [
        f"{m.name} is in no layer: add its room to LAYERS"
        for m in modules.values()
        if m.room and room_of(m.name) is None
    ]
    for m in modules.values():
        for target, line in m.imports():
            room = room_of(target)
            if room and m.room and layer(room) > layer(m.room):
                bad.append(f"{m.name}:{line} imports {target} (a higher layer)")
    return bad


def kerastuner_in_tuning_only(modules):
    """Rule 2: only tuning/ imports keras_tuner, and only tuning/_kt_compat.py its private
    parts (keras_tuner.src, `kt.src`, private attributes such as `_retry_queue`); likewise
    TensorFlow's private modules (tensorflow.python) only in model/_tf_compat.py."""
    bad = []
    for m in modules.values():
        compat = m.name == "artgan.tuning._kt_compat"
        for target, line in m.imports():
            if target.startswith("tensorflow.python") and m.name != "artgan.model._tf_compat":
                bad.append(f"{m.name}:{line} imports TensorFlow's private {target}")
            if target.split(".")[0] == "keras_tuner":
                if m.room != "tuning":
                    bad.append(f"{m.name}:{line} imports {target} outside tuning/")
                elif ".src" in target and not compat:
                    bad.append(f"{m.name}:{line} imports KerasTuner's private {target}")
        if m.room == "tuning" and not compat:
            for node in ast.walk(m.tree):
                if isinstance(node, ast.Attribute) and node.attr in (
                    "src",
                    "_retry_queue",
                    "_is_worker",
                    "_record_values",
                ):
                    bad.append(f"{m.name}:{node.lineno} touches KerasTuner's private .{node.attr}")
    return bad


def run_folder_through_one_layout(modules):
    """Rule 3: run-folder file names are joined in `artgan.runfolder` only (`path / "x"`)."""
    bad = []
    for m in modules.values():
        if m.name == "artgan.runfolder":
            continue
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in RUN_FOLDER_FILES
            ):
                bad.append(
                    f"{m.name}:{node.lineno} joins {node.right.value!r} by hand "
                    "(use artgan.runfolder.RunFolder)"
                )
    return bad


def no_cycles(modules):
    """Rule 5: the module-level import graph has no cycle."""
    graph = {
        name: {t for t, _ in m.top_imports if t in modules and t != name}
        for name, m in modules.items()
    }
    for name, m in modules.items():  # `from artgan.x import y` also runs artgan/x/__init__
        for target, _ in m.top_imports:
            parent = target.rsplit(".", 1)[0]
            if parent in modules and parent != name and not name.startswith(parent + "."):
                graph[name].add(parent)
    bad, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                bad.append(
                    " -> ".join(path[path.index(nxt) :] + [nxt])
                    if nxt in path
                    else f"{node} -> {nxt}"
                )
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return bad


def heavy_modules(modules):
    """artgan modules that load TensorFlow (or scikit-learn, matplotlib) when imported."""
    heavy = {
        n for n, m in modules.items() if any(t.split(".")[0] in HEAVY for t, _ in m.top_imports)
    }
    grew = True
    while grew:
        grew = False
        for name, m in modules.items():
            if name not in heavy and any(t in heavy for t, _ in m.top_imports):
                heavy.add(name)
                grew = True
    return heavy


def inner_imports_only_for_heavy_loads(modules):
    """Rule 5: an import inside a function loads something heavy (TensorFlow and what
    imports it, scikit-learn, matplotlib), so commands that do not need it start at once."""
    heavy = heavy_modules(modules)
    bad = []
    for m in modules.values():
        by_line = {}
        for target, line in m.inner_imports:
            by_line.setdefault(line, []).append(target)
        for line, targets in by_line.items():
            if not any(t.split(".")[0] in HEAVY or t in heavy for t in targets):
                bad.append(
                    f"{m.name}:{line} imports {targets[0]} inside a function (not "
                    "heavy: import it at the top)"
                )
    return bad


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def library_is_quiet_and_flagless(modules):
    """Rule 6: outside cli/, no print() and no --flag in any message; no import-time changes
    to other libraries' globals (`Module.GLOBAL = ...` at module level)."""
    bad = []
    for m in modules.values():
        if m.room in ("cli", "__main__"):
            continue
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                bad.append(f"{m.name}:{node.lineno} prints (log instead)")
        for text, line in m.strings():
            if FLAG.search(text) and not text.startswith(("--", "-")):
                bad.append(f"{m.name}:{line} names a command-line flag: {text.strip()[:60]!r}")
        for node in m.tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) for t in node.targets
            ):
                bad.append(f"{m.name}:{node.lineno} changes another module's global at import")
    return bad


RULES = (
    lower_layers_only,
    kerastuner_in_tuning_only,
    run_folder_through_one_layout,
    no_cycles,
    inner_imports_only_for_heavy_loads,
    library_is_quiet_and_flagless,
)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_package_keeps_its_layering_rules(rule):
    assert rule(load_package()) == []


VIOLATIONS = {
    lower_layers_only: (
        "artgan/data/labels.py",
        "import keras_tuner\nfrom artgan.tuning import results\n"
        "if TYPE_CHECKING:\n    from artgan.report.run import Run\n",
    ),
    kerastuner_in_tuning_only: (
        "artgan/tuning/tuner.py",
        "from keras_tuner.src import utils\nfrom tensorflow.python.framework import ops\n",
    ),
    run_folder_through_one_layout: (
        "artgan/report/run.py",
        "def f(folder):\n    return folder / 'trials.json'\n",
    ),
    no_cycles: ("artgan/config/spec.py", "from artgan.config import space as _space\n"),
    inner_imports_only_for_heavy_loads: ("artgan/report/run.py", "def f():\n    import json\n"),
    library_is_quiet_and_flagless: (
        "artgan/model/saved.py",
        "def f():\n    print('rerun with --fresh')\n",
    ),
}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_each_rule_catches_a_violation(rule, tmp_path):
    """A copy of the package with one deliberate violation appended fails the rule."""
    import shutil

    copy = tmp_path / "artgan"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path, code = VIOLATIONS[rule]
    target = copy / Path(path).relative_to("artgan")
    if rule is no_cycles:  # make space import spec back: a cycle
        (copy / "config" / "space.py").write_text(
            (copy / "config" / "space.py").read_text() + "\nfrom artgan.config import spec\n"
        )
    target.write_text(target.read_text() + "\n" + code)
    found = rule(load_package(copy))
    assert found != [] and len(found) >= code.count("import "), found


def test_type_checking_imports_keep_the_layers_but_make_no_cycle(tmp_path):
    """An import under `if TYPE_CHECKING:` never runs: it may point back at a module that
    imports this one (no cycle at run time), but not at a higher layer."""
    import shutil

    copy = tmp_path / "artgan"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    space = copy / "config" / "space.py"
    space.write_text(
        space.read_text() + "\nif TYPE_CHECKING:\n"
        "    from artgan.config.spec import ExperimentSpec\n"
    )
    modules = load_package(copy)
    assert no_cycles(modules) == [] and lower_layers_only(modules) == []
    assert ("artgan.config.spec", space.read_text().count("\n")) in (
        modules["artgan.config.space"].typing_imports
    )
    space.write_text(space.read_text() + "    from artgan.model import saved\n")
    assert lower_layers_only(load_package(copy)) != []

"""The layout rules of docs/architecture.md, checked on the source: no import cycle (module-level or inside functions),
library code never imports the command line, the exporter and the servers meet only in the served layout, modules stay
short, no os.chdir, no backslash continuations."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "experiments_manager"
MOST_LINES = 350  # longer needs a sentence starting "Long because" in the module docstring


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported(name, path):
    """The package's modules `name` imports anywhere in its file (lazy imports inside functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_the_import_graph_has_no_cycle():
    assert len(GRAPH) > 100 and GRAPH["experiments_manager.training.trainer"]  # the graph was read
    assert _cycles(GRAPH) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_library_code_never_imports_the_command_line():
    front = {"experiments_manager.cli", "experiments_manager.__main__"}
    commands = {name for name in MODULES if name.startswith("experiments_manager.commands")}
    offenders = {name: sorted(GRAPH[name] & (front | commands)) for name in MODULES
                 if name not in front | commands and GRAPH[name] & (front | commands)}
    assert offenders == {}


LAYOUT = "experiments_manager.run.served_layout"
EXPORT_SIDE = {name for name in MODULES if name.split(".")[:2] == ["experiments_manager", "export"]} | {
    "experiments_manager.training.version_loading"}
SERVING_SIDE = {name for name in MODULES if name.split(".")[:2] == ["experiments_manager", "serving"]}
SHARED = {LAYOUT, "experiments_manager.run.version_records"}


def _path(graph, start, targets):
    """The shortest import chain from `start` to one of `targets` ([start, ..., target]), or None."""
    parents, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph.get(node, ())):
                if other in parents:
                    continue
                parents[other] = node
                if other in targets:
                    chain = [other]
                    while parents[chain[-1]] is not None:
                        chain.append(parents[chain[-1]])
                    return chain[::-1]
                following.append(other)
        frontier = following
    return None


def test_a_path_between_the_sides_would_be_found():
    graph = {"export": {"helper"}, "helper": {"serving.config"}, "serving.config": set()}
    assert _path(graph, "export", {"serving.config"}) == ["export", "helper", "serving.config"]
    assert _path(graph, "serving.config", {"export"}) is None


@pytest.mark.claim(
    'the exporter and the servers never import each other, directly or through another module; they share only '
    '`served_layout` and `version_records`')
def test_the_exporter_and_the_servers_meet_only_in_the_served_layout():
    """Export side: every module of the `export` package (`exporter`, `template`, `worker`, `lean_save`),
    `version_loading` (a version read back into the Keras model that exported it, its served module rebuilt as the
    exporter builds it).
    Serving side: every module of `experiments_manager.serving`. Shared, reaching neither side: `served_layout` (the
    version-folder and model-name rules, models.config, the default ports) and `version_records` (the record file the
    exporter writes into a version and the server reads for its metadata). No module of one side reaches the other,
    directly or through any module between (imports inside functions included): each side imports the layout instead.
    """
    assert len(SERVING_SIDE) > 10 and len(EXPORT_SIDE) >= 5  # the sides were found
    assert EXPORT_SIDE | SHARED <= set(MODULES)
    crossings = [chain for start in sorted(EXPORT_SIDE) if (chain := _path(GRAPH, start, SERVING_SIDE))]
    crossings += [chain for start in sorted(SERVING_SIDE) if (chain := _path(GRAPH, start, EXPORT_SIDE))]
    crossings += [chain for start in sorted(SHARED) if (chain := _path(GRAPH, start, EXPORT_SIDE | SERVING_SIDE))]
    assert crossings == []
    assert LAYOUT in GRAPH["experiments_manager.export.exporter"] and LAYOUT in GRAPH["experiments_manager.serving.config"]
    assert {name for name in GRAPH[LAYOUT] if not name.startswith("experiments_manager.utils.")} == set()


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_modules_are_short_or_say_why():
    long = []
    for name, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MOST_LINES and "Long because" not in docstring:
            long.append(f"{name}: {lines} lines")
    assert long == []


def test_no_module_changes_the_working_directory():
    assert [name for name, path in MODULES.items() if "os.chdir(" in path.read_text()] == []


def _backslash_continuations(text):
    """The lines of `text` (Python source) continued by a backslash outside a string."""
    import io
    import tokenize

    in_strings = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.STRING:
            in_strings.update(range(token.start[0], token.end[0]))  # a string's own lines, its last one excepted
    return [number for number, line in enumerate(text.splitlines(), 1)
            if line.rstrip().endswith("\\") and number not in in_strings and not line.lstrip().startswith("#")]


RUN_STATUSES = {"running", "finished", "failed", "interrupted", "paused", "promoted"}  # a trial's states too
NOT_A_RUN_STATUS = {  # the same words meaning something else
    ("experiments_manager.federated.deployment", "finished"),  # Flower's run status, as `flwr ls` prints it
    ("experiments_manager.serving.sidecar", "failed"),  # a word of the server's log lines shown while training
    ("experiments_manager.utils.deferred_imports", "running"),  # a module's own import in progress
}
STATUS_ENUMS = ("experiments_manager.run.record", "experiments_manager.sweeps.trial_state")  # the enums themselves


def _bare_statuses(name, path):
    """The run-status strings a module's code spells out (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return sorted({node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and node.value in RUN_STATUSES and id(node) not in docstrings
                   and (name, node.value) not in NOT_A_RUN_STATUS})


def test_a_run_status_is_spelled_by_the_enum_only():
    """A run's status (and a sweep's: the same words) is compared and written as `run.record.Status`, a trial's state
    as `sweeps.trial_state.TrialState`, everywhere but in the enums themselves: one list of each, which a rename or a
    new one changes in one place."""
    found = {name: statuses for name, path in MODULES.items()
             if name not in STATUS_ENUMS and (statuses := _bare_statuses(name, path))}
    assert found == {}


ENDING_RECORDER = "experiments_manager.run.lifecycle"
ENDING_WRITER = "experiments_manager.run.record_writer"


def _ending_writes(path):
    return _ending_writes_in(path.read_text())


def _ending_writes_in(source):
    """The lines where a module calls `RunRecordWriter.end` or `end_if_running`: `x.record.end(...)`, or
    `record.end(...)` on a name it was given."""
    tree = ast.parse(source)
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("end", "end_if_running")
                  and ((isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "record")
                       or (isinstance(node.func.value, ast.Name) and node.func.value.id == "record")))


def test_how_a_run_ended_is_recorded_in_one_place():
    """The trainer, a federation's server and clients, a trial recorded late and an error nobody recorded: every
    ending reaches run.json through `lifecycle.record_ending`, the one caller of the record's writer."""
    found = {name: lines for name, path in MODULES.items()
             if name not in (ENDING_RECORDER, ENDING_WRITER) and (lines := _ending_writes(path))}
    assert found == {}
    assert _ending_writes(MODULES[ENDING_RECORDER])  # (the rule sees a call where there is one)
    assert len(_ending_writes_in("record = experiment.record\nrecord.end(e)\nrecord.end_if_running(e)\n")) == 2


def test_no_module_continues_a_line_with_a_backslash():
    """Parentheses carry a long expression over lines: a backslash continuation stops code readers (and breaks on a
    trailing space)."""
    found = {name: lines for name, path in MODULES.items() if (lines := _backslash_continuations(path.read_text()))}
    assert found == {}
    assert _backslash_continuations('x = 1 + \\\n    2\ny = """a\\\nb"""\n') == [1]


ARCHITECTURE = ROOT / "docs" / "architecture.md"
TOP_LEVEL_MODULES = {"__init__", "__main__", "cli"}


def _package_of(name):
    """`experiments_manager.run.record` -> `run`; a top-level module (`cli`) is its own name."""
    return name.split(".")[1] if name.count(".") >= 1 else ""


def _documented_layout():
    """{package: its modules} from docs/architecture.md's layout block."""
    text = ARCHITECTURE.read_text()
    block = text[text.index("<!-- layout:"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    layout, current = {}, None
    for line in block.splitlines()[2:]:  # after "experiments_manager/"
        words = line.split()
        if not words:
            continue
        if words[0].endswith("/"):
            current = words[0].rstrip("/")
            layout[current] = set(words[1:])
        elif words[0].endswith(".py"):
            current = None
        elif current is not None:
            layout[current] |= set(words)
    return layout


def _documented_contracts():
    """[(package, {packages it may import})] from docs/architecture.md's contracts table, in its order."""
    text = ARCHITECTURE.read_text()
    rows = []
    for line in text[text.index("<!-- contracts:"):].splitlines()[3:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        allowed = {word.strip() for word in cells[-1].split(",")} - {"(nothing)"}
        rows.append((cells[0].strip("`"), allowed))
    return rows


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_the_top_of_the_package_holds_packages_and_the_entry_points_only():
    loose = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in TOP_LEVEL_MODULES)
    assert loose == [], f"modules at the top of experiments_manager/: {loose}; place each in the package it serves"


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_the_documented_layout_is_the_tree():
    documented = _documented_layout()
    actual = {folder.name: {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
              for folder in PACKAGE.iterdir() if (folder / "__init__.py").is_file()}
    assert len(actual) >= 15 and set(documented) == set(actual)
    differences = {package: {"not documented": sorted(actual[package] - documented[package]),
                             "documented, not in the tree": sorted(documented[package] - actual[package])}
                   for package in actual if actual[package] != documented[package]}
    assert differences == {}


@pytest.mark.claim('the map of the code is `docs/architecture.md` (its layout rules hold)')
def test_each_package_imports_only_what_its_contract_lists():
    contracts = _documented_contracts()
    order = [package for package, _ in contracts]
    packages = {name for name in map(_package_of, MODULES) if name and name not in TOP_LEVEL_MODULES}
    assert set(order) == packages
    for position, (package, allowed) in enumerate(contracts):  # the table runs from the ground up
        assert allowed <= set(order[:position]), f"{package} may import a package listed below it: {allowed}"
    allowed_of = dict(contracts)
    offences = []
    for name, imported in GRAPH.items():
        package = _package_of(name)
        if package not in allowed_of:
            continue
        for target in sorted(imported):
            other = _package_of(target)
            if other and other != package and other not in TOP_LEVEL_MODULES and other not in allowed_of[package]:
                offences.append(f"{name} imports {target}: `{package}` may import {sorted(allowed_of[package])}")
    assert offences == []


def test_a_contract_breach_would_be_found():
    assert _package_of("experiments_manager.run.record") == "run" and _package_of("experiments_manager") == ""
    assert ("run", {"utils"}) in _documented_contracts()

"""The package's imports, deferred ones included, flow one way: no cycles.

Parsed from the source with ``ast`` rather than observed at run time, so an
import inside a function counts even when no test calls that function.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skvae"


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name, path, modules):
    """The package's modules that ``path`` imports anywhere in its body.

    ``from . import x`` is an edge to the submodule ``x`` when there is one,
    else to the package itself (``from . import __version__``).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def ours(dotted):
        # The longest prefix that is one of our modules: ``skvae._base.X``
        # is ``skvae._base``.
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {ours(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else ours(base))
    return targets - {"", name}


def import_graph():
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_parser_sees_deferred_and_relative_imports(tmp_path):
    """A guard on the test itself: an import inside a function is an edge."""
    graph = import_graph()
    assert "skvae._base" in graph["skvae._anomaly"]
    assert "skvae._network" in graph["skvae._columns"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_model_files_do_not_depend_on_the_estimators():
    """The file format depends on the model it stores; the estimators call it
    with the class table, never the other way round."""
    above = {"skvae", "skvae._base", "skvae._anomaly", "skvae._transformer", "skvae.cli"}
    assert not reachable(import_graph(), "skvae._persistence") & above


@pytest.mark.parametrize("optional", ["skvae.plotting", "skvae.dask", "skvae.cli", "skvae._report"])
def test_the_core_never_imports_the_optional_layers(optional):
    graph = import_graph()
    core = ["skvae._base", "skvae._anomaly", "skvae._transformer", "skvae._persistence"]
    for module in core:
        assert optional not in reachable(graph, module) | {module}, (module, optional)

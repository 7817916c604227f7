"""The library's import graph: every module imports, and the command line sits on top of cloud and report.

``fruits.cli`` imports ``fruits.cloud`` (the platforms' verbs, the tunnel, the Livy double)
and ``fruits.run.notebook`` (papermill, nbconvert: the report); neither may import the CLI back, and ``report``
(also imported inside notebooks and Livy sessions) may not import ``cloud``. Imports are read
with ``ast`` from the source, deferred ones inside functions included, so a cycle that only
bites when some command runs is caught too, and so are the platform registry's imports by name.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module of the ``fruits`` package."""
    modules = {}
    for path in sorted((LIB / "fruits").rglob("*.py")):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``fruits`` modules that ``path`` imports anywhere in its body (``from fruits import x`` -> ``fruits.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    from fruits.cloud.registry import BUILT_IN

    files = module_files()
    edges = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    # The platform registry imports its platforms by name ("module:Class"): edges all the same.
    edges["fruits.cloud.registry"] |= {spec.partition(":")[0] for spec in BUILT_IN.values()}
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan), larger than one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in graph:
        if module not in index:
            visit(module)
    return groups


def test_every_module_of_the_library_imports():
    failed = {}
    for name in module_files():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every broken module at once
            failed[name] = f"{type(exc).__name__}: {exc}"
    assert not failed, failed


def test_the_cloud_and_report_packages_exist_with_their_parts(graph):
    for module in ("fruits.cloud.platform", "fruits.cloud.registry", "fruits.cloud.emr.platform", "fruits.cloud.tunnel",
                   "fruits.cloud.doctor", "fruits.cloud.livy.server", "fruits.cloud.livy.rest",
                   "fruits.report.display", "fruits.run.notebook", "fruits.report.plots"):
        assert module in graph, module
    for gone in ("fruits.emr", "fruits.emr_commands", "fruits.tunnel", "fruits.doctor", "fruits.livy",
                 "fruits.plots", "fruits.report_html", "fruits.interactive", "fruits.explore"):
        assert gone not in graph, f"{gone} should have moved under fruits.cloud or fruits.report"


def test_nothing_in_the_library_imports_the_command_line(graph):
    importers = sorted(module for module, imported in graph.items() if "fruits.cli" in imported)
    assert importers == [], f"these modules import fruits.cli: {importers}"


def test_the_command_line_reaches_cloud_and_report_and_they_do_not_reach_back(graph):
    assert any(m.startswith("fruits.cloud") for m in graph["fruits.cli"])
    assert "fruits.run.notebook" in graph["fruits.cli"]  # papermill and nbconvert, which make the report
    report_to_cloud = {m: sorted(i for i in imported if i.startswith("fruits.cloud"))
                       for m, imported in graph.items() if m.startswith("fruits.report")}
    assert not any(report_to_cloud.values()), f"report imports cloud: {report_to_cloud}"


def test_no_import_cycle_runs_through_cli_cloud_or_report(graph):
    ours = ("fruits.cli", "fruits.cloud", "fruits.report")
    cycles = [sorted(group) for group in strongly_connected(graph)
              if any(module.startswith(ours) for module in group)]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []

"""The library's import graph: every module imports, no import cycle anywhere, and the command line on top.

Imports are read with ``ast`` from the source: those inside functions and under
``if TYPE_CHECKING:`` count as much as those at the top (a cycle that only bites when
some command runs is still a cycle), importing ``a.b.c`` counts as importing its packages
``a.b`` too (their ``__init__`` runs first), and the platform registry's imports by name
count. On that graph there is no cycle at all (there were three before issue 22:
``session`` <-> ``jvm_archive`` <-> ``cluster_check``, ``params`` -> ``engines`` ->
``engines.tflite`` -> ``params``, ``run.plan`` <-> ``run.manifest``).

An import inside a function is allowed only with a stated reason in :data:`DEFERRED`
(an import that dodged a cycle has none left: the graph includes it). ``fruits.cli``
imports ``fruits.cloud`` (the platforms' verbs, the tunnel, the Livy double) and
``fruits.run.notebook`` (papermill, nbconvert: the report); neither may import the CLI
back, and ``report`` (also imported inside notebooks and Livy sessions) may not import
``cloud``.
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


#: Imports of ``fruits`` modules made inside a function, each with why it is not at the top:
#: ``(importing module, imported module) -> reason``. None of them dodges a cycle: the cycle
#: test counts them as if they were at the top.
DEFERRED = {
    ("fruits.cli", "fruits.cloud.livy.client"):
        "only --livy uses sparkmagic's set-up; the Livy client pulls in the HTTP stack (ssl, email) every command would pay",
    ("fruits.cli", "fruits.cloud.livy.rest"): "only --livy talks to Livy (the HTTP client stack)",
    ("fruits.cli", "fruits.cloud.livy.server"): "only `fruits livy` serves the double (http.server)",
    ("fruits.cli", "fruits.run.projection"):
        "only `fruits project` uses it: the run's Spark code loads pandas, Arrow, NumPy (1-2 s) in every command",
    ("fruits.cli", "fruits.engines.weights"):
        "the engine registry loads NumPy and Pillow (1 s); only `fruits project` and a finished run's banners need it",
    ("fruits.cloud.doctor", "fruits"):
        "runs on an executor, in a Python that may lack fruits: the check reports that instead of failing",
    ("fruits.cloud.doctor", "fruits.engines"):
        "on the cluster's driver only; `fruits emr doctor` imports this module on the user's machine too",
    ("fruits.cloud.doctor", "fruits.featurize.batches"): "on the cluster's driver only (pandas, Arrow, the engines)",
    ("fruits.cloud.hub.runner", "fruits.cloud.livy.server"):
        "the hub starts its own Livy double only without --livy; the double's server (http.server) loads then",
    ("fruits.params", "fruits.engines"):
        "the registry loads NumPy and Pillow (1 s); params is imported by the CLI and the cloud commands",
    ("fruits.report.display", "fruits.analysis.evaluate"):
        "display is imported by every notebook and the Livy REPL for banners; pandas only when the evaluation is shown",
    ("fruits.report.display", "fruits.report.plots"): "matplotlib and pandas only when a figure is drawn",
    ("fruits.report.display", "fruits.report.explore"): "pandas and NumPy only when a figure is drawn",
    ("fruits.report.html", "fruits.report.plots"):
        "the report's renderer runs in the CLI after papermill: pandas only when a figure's alt text is read",
    ("fruits.report.early_map", "fruits.report.interactive"):
        "plotly is optional (the page is rendered without the map when it is missing) and pandas costs the CLI 0.7 s at start",
}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[ast.stmt, set[str], bool]]:
    """Each import statement of ``path`` with the ``fruits`` modules it loads and whether it is deferred.

    Deferred: inside a function, or under ``if TYPE_CHECKING:``. A module counts with its
    packages (``fruits.a.b`` loads ``fruits.a``), except the importing module's own.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    found: list[tuple[ast.stmt, set[str], bool]] = []

    def targets(node) -> set[str]:
        names = set()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        else:
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = _package_of(name, path)
                package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                names.add(submodule if submodule in known else base)
        with_packages = set()
        for module in names:
            parts = module.split(".")
            with_packages.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        return {module for module in with_packages if module in known and module not in own} | (
            {"fruits"} if "fruits" in names and name != "fruits" else set())

    def visit(node, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                modules = targets(child)
                if modules:
                    found.append((child, modules, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``fruits`` modules that ``path`` imports anywhere in its body (``from fruits import x`` -> ``fruits.x``)."""
    return {module for _, modules, _ in _imports(name, path, known) for module in modules} - {name}


def deferred_imports(files: dict[str, Path]) -> dict[tuple[str, str], list[str]]:
    """``(module, imported module) -> ["file:line", ...]`` for every deferred ``fruits`` import."""
    known = set(files)
    deferred: dict[tuple[str, str], list[str]] = {}
    for name, path in files.items():
        for node, modules, is_deferred in _imports(name, path, known):
            if is_deferred:
                # the module the statement names, not the packages it loads on the way
                named = max(modules, key=len)
                deferred.setdefault((name, named), []).append(f"{path.relative_to(LIB)}:{node.lineno}")
    return deferred


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


def test_no_import_cycle_anywhere_in_the_library(graph):
    cycles = [sorted(group) for group in strongly_connected(graph)]
    assert cycles == [], f"modules that import each other, directly or through others: {cycles}"


def test_every_deferred_import_has_its_reason_and_none_is_stale():
    found = deferred_imports(module_files())
    unexplained = {pair: where for pair, where in found.items() if pair not in DEFERRED}
    assert not unexplained, f"imports inside functions or under TYPE_CHECKING without a reason in DEFERRED: {unexplained}"
    stale = sorted(set(DEFERRED) - set(found))
    assert not stale, f"DEFERRED names imports that are no longer deferred: {stale}"
    assert all(len(reason) > 20 for reason in DEFERRED.values())


def test_only_storage_touches_fsspec():
    """Files are opened, listed and written through :mod:`fruits.storage.location` (local or remote
    decided there once); no other module imports fsspec itself."""
    importers = []
    for name, path in module_files().items():
        if name.startswith("fruits.storage"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "fsspec" or n.startswith("fsspec.") for n in names):
                importers.append(f"{path.relative_to(LIB)}:{node.lineno}")
    assert importers == [], f"fsspec imported outside fruits.storage: {importers}"


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_imports_in_functions_under_type_checking_and_of_packages_count(tmp_path):
    """The graph sees what dodged the old test: an import inside a function, one for annotations only,
    and a package whose ``__init__`` imports a module that imports back through the package."""
    package = tmp_path / "fruits"
    (package / "run").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "a.py": "def f():\n    from fruits import b\n",
        "b.py": "from fruits.a import f\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fruits.d import D\n",
        "d.py": "import fruits.c\n",
        "run/__init__.py": "from fruits.run.x import go\n",
        "run/x.py": "def go():\n    pass\n",
        "e.py": "from fruits.run.x import go\n",
        "run/y.py": "def later():\n    import fruits.e\n",
    }
    for relative, source in sources.items():
        (package / relative).write_text(source)
    files = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(tmp_path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    edges = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    assert sorted(sorted(group) for group in strongly_connected(edges)) == [
        ["fruits.a", "fruits.b"], ["fruits.c", "fruits.d"]]
    assert edges["fruits.e"] == {"fruits.run", "fruits.run.x"}  # the package's __init__ runs first
    global LIB
    saved, LIB = LIB, tmp_path
    try:
        assert set(deferred_imports(files)) == {("fruits.a", "fruits.b"), ("fruits.c", "fruits.d"),
                                                ("fruits.run.y", "fruits.e")}
    finally:
        LIB = saved

"""The project's own files agree with each other: dependencies, notebooks, README, CI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.py"))

sys.path.insert(0, str(ROOT / "tools"))
import sync_environment  # noqa: E402


def test_environment_yml_is_generated_from_the_pinned_source():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_environment.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_pin_satisfies_pyproject_and_is_installed():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    pins = sync_environment.pins()
    for text in sync_environment.direct_requirements():
        requirement = Requirement(text)
        name = sync_environment.normalise(requirement.name)
        assert name in pins, f"{name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {text}"
        assert version(requirement.name) == pins[name], f"installed {requirement.name} differs from its pin"


def test_jsonschema_imports_without_compiling_iri_grammars():
    """``make env`` leaves out rfc3987-syntax (see the Makefile): with it, every Jupyter server,
    the hub and papermill spent 2.4 s of CPU at start compiling grammars no schema uses."""
    script = "import sys, jupyter_events.validators; print('rfc3987_syntax' in sys.modules, 'lark' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"], "jsonschema built rfc3987-syntax's parsers at import"


def test_spark_matches_emr_7_and_python_is_3_11():
    assert sync_environment.pins()["pyspark"].startswith("3.5.")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.12"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_paired_and_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} missing: run make sync-notebooks"
    from_py = jupytext.read(source)
    from_ipynb = nbformat.read(paired, as_version=4)
    assert [c.source for c in from_py.cells] == [c.source for c in from_ipynb.cells], \
        f"{paired.name} differs from {source.name}: run make sync-notebooks"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_and_no_definitions(source):
    cells = jupytext.read(source).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert not re.search(r"^\s*(def|class) ", code, re.M), "notebooks stay thin: logic belongs in lib/"


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*(exec )?make test\s*$", ci, re.M)


def test_product_code_never_names_the_shared_folder():
    for folder in ("lib", "notebooks", "bootstrap", "emr-config"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".json", ".sh", ".yml", ".yaml", ".ipynb"}:
                assert "../shared" not in path.read_text(errors="ignore"), path

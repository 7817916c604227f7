"""One source for parameters (``fruits.params``) and one for Spark settings (``fruits.spark.settings``).

Every copy is checked against its source: the notebooks' ``parameters`` cells (names,
defaults, order, read the way papermill reads them), the cloud notebook's ``%%configure``
cell, ``emr-config/configurations.json`` and a live local session. ``fruits run -f``
files are checked before anything starts, and their precedence is tested down to the
values papermill injects into a notebook.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from fruits import cli, params
from fruits.spark import settings as spark_settings
from fruits.params import LOCAL_NOTEBOOK_PARAMETERS, RunParams, read_parameter_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sync_derived  # noqa: E402


def cell(notebook: Path, predicate):
    cells = [c for c in jupytext.read(notebook).cells if predicate(c)]
    assert len(cells) == 1, notebook
    return cells[0]


def parameters_cell(notebook: Path):
    return cell(notebook, lambda c: "parameters" in c.metadata.get("tags", []))


def configure_body(notebook: Path = ROOT / sync_derived.CLOUD_NOTEBOOK) -> dict:
    source = cell(notebook, lambda c: c.source.startswith("%%configure")).source
    assert source.startswith("%%configure -f\n")
    return json.loads(source.split("\n", 1)[1])


def classification(name: str, path: Path = ROOT / sync_derived.CONFIGURATIONS) -> dict:
    entries = [c for c in json.loads(path.read_text()) if c["Classification"] == name]
    assert len(entries) == 1, name
    return entries[0]


# --- Parameters: the notebooks' cells are RunParams (and SessionParams for the local one) ---------

@pytest.mark.parametrize("name", sorted(sync_derived.NOTEBOOKS))
def test_parameters_cell_has_the_dataclasses_names_defaults_and_order(name):
    """Read like papermill reads the cell (assignments, literal defaults), not like the tool writes it."""
    groups = sync_derived.NOTEBOOKS[name][0]
    notebook = ROOT / name
    assignments = [node for node in ast.parse(parameters_cell(notebook).source).body]
    assert all(isinstance(node, ast.Assign) and len(node.targets) == 1 for node in assignments)
    found = [(node.targets[0].id, ast.literal_eval(node.value)) for node in assignments]
    assert found == list(params.parameter_defaults(groups).items())
    import papermill

    inspected = papermill.inspect_notebook(str(notebook.with_suffix(".ipynb")))
    assert list(inspected) == [field.name for field in params.parameter_fields(groups)]


def test_every_parameter_has_a_comment_and_the_local_notebook_adds_only_its_session():
    for field in params.parameter_fields(LOCAL_NOTEBOOK_PARAMETERS):
        assert params.parameter_comment(field).strip(), field.name
    local = params.parameter_defaults(params.LOCAL_NOTEBOOK_PARAMETERS)
    cloud = params.parameter_defaults(params.CLOUD_NOTEBOOK_PARAMETERS)
    assert list(cloud) == RunParams.field_names() and set(local) - set(cloud) == {"master", "driver_memory"}
    assert RunParams.from_mapping(cloud) == RunParams(), "the defaults are valid"


def test_the_parameter_table_of_the_docs_agrees_with_the_defaults():
    page = (ROOT / "docs" / "parameters-and-outputs.md").read_text()
    table = page[page.index("## Parameters"):].split("\n\n", 2)[2].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, re.M)
    defaults = params.parameter_defaults(LOCAL_NOTEBOOK_PARAMETERS)
    assert len(rows) >= 10
    for name, default in rows:
        assert name in defaults, name
        assert default == str(defaults[name]), name
    assert [name for name, _ in rows] == list(defaults), "one row per parameter, in the notebook's order"


# --- Spark settings: local sessions, configurations.json and %%configure derive from one module ---

def test_an_edit_of_the_shared_body_reaches_both_notebooks(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copytree(ROOT / "emr-config", tmp_path / "emr-config")
    _replace(tmp_path, sync_derived.SHARED_BODY, "# ## Timings", "# ## Where the time went")
    notebooks = sorted(tmp_path / name for name in sync_derived.NOTEBOOKS)
    assert sorted(sync_derived.stale(tmp_path)) == notebooks
    for path, text in sync_derived.derived(tmp_path).items():
        path.write_text(text)
    assert all("# ## Where the time went\n" in path.read_text() for path in notebooks)
    assert sync_derived.stale(tmp_path) == []


def test_derived_copies_are_in_step_with_their_sources():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_derived.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _replace(root, name, old, new):
    path = root / name
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def _drift_parameter_default(root):
    return _replace(root, "notebooks/01-featurize-local.py", "\nk = 50 ", "\nk = 40 ")


def _drift_configure_cell(root):
    return _replace(root, "notebooks/02-featurize-emr.py", '"executorMemory": "1g"', '"executorMemory": "2g"')


def _drift_parameter_order(root):
    path = root / "notebooks" / "02-featurize-emr.py"
    lines = path.read_text().split("\n")
    k = next(i for i, line in enumerate(lines) if line.startswith("k = "))
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    path.write_text("\n".join(lines))
    return path


def _drift_configurations(root):
    path = root / "emr-config" / "configurations.json"
    configurations = json.loads(path.read_text())
    next(c for c in configurations if c["Classification"] == "spark-defaults")["Properties"][
        "spark.executor.cores"] = "2"
    path.write_text(json.dumps(configurations, indent=2) + "\n")
    return path


def _drift_shared_cell(root):
    return _replace(root, "notebooks/02-featurize-emr.py", "count=16, seed=seed)", "count=12, seed=seed)")


def _drift_shared_heading(root):
    return _replace(root, "notebooks/01-featurize-local.py", "# ## Rejected files", "# ## Rejected")


@pytest.mark.parametrize("drift", [_drift_parameter_default, _drift_parameter_order, _drift_configure_cell,
                                   _drift_configurations, _drift_shared_cell, _drift_shared_heading],
                         ids=lambda f: f.__name__[len("_drift_"):])
def test_check_names_the_copy_that_drifted(tmp_path, drift):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copytree(ROOT / "emr-config", tmp_path / "emr-config")
    assert sync_derived.stale(tmp_path) == []
    changed = drift(tmp_path)
    assert sync_derived.stale(tmp_path) == [changed]
    for path, text in sync_derived.derived(tmp_path).items():  # --write puts it back
        path.write_text(text)
    assert sync_derived.stale(tmp_path) == []


def test_the_cluster_and_the_livy_session_ask_for_the_same_executors_and_featurization_settings():
    defaults = classification("spark-defaults")["Properties"]
    body = configure_body()
    asked = {**body["conf"], "spark.executor.memory": body["executorMemory"],
             "spark.executor.cores": str(body["executorCores"])}
    for key, value in {**spark_settings.EXECUTOR, **spark_settings.FEATURIZATION}.items():
        assert defaults[key] == value and asked[key] == value, key
    assert body["driverMemory"] == spark_settings.DRIVER_MEMORY
    exported = classification("spark-env")["Configurations"][0]["Properties"]
    assert exported["PYSPARK_PYTHON"] == defaults["spark.pyspark.python"] == spark_settings.CLUSTER_PYTHON
    # The other classifications are the file's own (Livy, JupyterHub): kept, not regenerated.
    assert classification("livy-conf")["Properties"]["livy.spark.deploy-mode"] == "client"


def test_a_local_session_has_the_settings_and_the_defaults_of_the_one_source(spark):
    from fruits.spark.session import SPARK_SETTINGS, local_spark

    for key, value in {**spark_settings.FEATURIZATION, **spark_settings.LIBRARY_SESSION}.items():
        assert spark.conf.get(key) == value, key
    assert SPARK_SETTINGS == spark_settings.library_session()
    signature = inspect.signature(local_spark).parameters
    assert signature["driver_memory"].default == spark_settings.DRIVER_MEMORY
    assert signature["master"].default == spark_settings.LOCAL_MASTER
    assert params.SessionParams() == params.SessionParams(spark_settings.LOCAL_MASTER, spark_settings.DRIVER_MEMORY)


# --- Parameters files (fruits run -f) ------------------------------------------------------------------

def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "message"), [
    ("- k\n- 50\n", "must be a mapping of parameter names to values, got list"),
    ("just words\n", "must be a mapping of parameter names to values, got str"),
    ("k: [unclosed\n", "not valid YAML"),
    ("colour: red\n", "unknown parameter 'colour'; known: input_path, output_dir"),
    ("k: 50\nmaster: yarn\n", "unknown parameter 'master'"),  # a cloud notebook has no session parameters
    ("k: '50'\n", "k must be an integer, got '50'"),
    ("k: true\n", "k must be an integer, got True"),
    ("variance_target: high\n", "variance_target must be a number or null, got 'high'"),
    ("input_path: 3\n", "input_path must be a string or null, got 3"),
])
def test_a_bad_parameters_file_is_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path / "p.yaml", text)
    with pytest.raises(ValueError) as error:
        read_parameter_file(path, params.CLOUD_NOTEBOOK_PARAMETERS)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_parameters_file_gives_its_values_and_an_empty_one_none(tmp_path):
    path = write(tmp_path / "p.yaml", "k: 10\nvariance_target: 0.9\nweights: null\nmaster: local[1]\n")
    assert read_parameter_file(path, LOCAL_NOTEBOOK_PARAMETERS) == {
        "k": 10, "variance_target": 0.9, "weights": None, "master": "local[1]"}
    assert read_parameter_file(write(tmp_path / "empty.yaml", "# nothing set\n")) == {}
    with pytest.raises(ValueError, match="missing.yaml: parameters file not found"):
        read_parameter_file(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("name", ["emr.yaml", "local-full.yaml"])
def test_shipped_parameters_files_are_valid(name):
    groups = params.CLOUD_NOTEBOOK_PARAMETERS if name == "emr.yaml" else LOCAL_NOTEBOOK_PARAMETERS
    values = read_parameter_file(str(ROOT / "params" / name), groups)
    params.validate_parameters({**params.parameter_defaults(groups), **values}, groups)
    assert values["input_path"] and values["output_dir"]


def resolve(*argv: str) -> dict:
    return cli.resolve_parameters(cli.build_parser().parse_args(["run", *argv]))


def test_precedence_defaults_then_files_in_order_then_p_then_flags(tmp_path):
    first = write(tmp_path / "first.yaml", f"k: 7\nseed: 3\ninput_path: {tmp_path / 'a'}\n"
                                            f"output_dir: {tmp_path / 'from-file'}\n")
    second = write(tmp_path / "second.yaml", "k: 8\nmaster: local[1]\n")
    assert resolve("-f", first, "-f", second)["k"] == 8  # a later file wins
    assert resolve("-f", second, "-f", first)["k"] == 7
    resolved = resolve("-f", first, "-f", second, "-p", "k", "9")
    assert resolved["k"] == 9 and resolved["seed"] == 3 and resolved["master"] == "local[1]"
    assert resolved["input_path"] == str(tmp_path / "a") and resolved["output_dir"] == str(tmp_path / "from-file")
    defaults = params.parameter_defaults(LOCAL_NOTEBOOK_PARAMETERS)
    untouched = {name for name in defaults if name not in {"k", "seed", "input_path", "output_dir", "master"}}
    assert {name: resolved[name] for name in untouched} == {name: defaults[name] for name in untouched}
    flagged = resolve("-f", first, "--input", str(tmp_path / "b"), "--output", str(tmp_path / "out"),
                      "-p", "input_path", str(tmp_path / "c"))
    assert flagged["input_path"] == str(tmp_path / "b") and flagged["output_dir"] == str(tmp_path / "out")


def test_a_bad_value_names_the_file_that_set_it_unless_p_overrides_it(tmp_path):
    good = write(tmp_path / "good.yaml", "k: 10\n")
    bad = write(tmp_path / "bad.yaml", "k: 5000\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(bad)}: k must be an integer between 1 and 1280, got 5000"):
        resolve("-f", good, "-f", bad)
    assert resolve("-f", bad, "-p", "k", "12")["k"] == 12
    assert resolve("-f", bad, "-f", good)["k"] == 10
    combined = write(tmp_path / "reuse.yaml", "pca: reuse\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(combined)}: pca must be 'refit' unless mode"):
        resolve("-f", combined)
    with pytest.raises(ValueError, match="unknown parameter 'master'"):
        resolve("--livy", "http://127.0.0.1:1", "-f", write(tmp_path / "m.yaml", "master: yarn\n"))


def fruits(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_fruits_run_refuses_a_bad_file_before_anything_starts(tmp_path):
    bad = write(tmp_path / "bad.yaml", "k: 50\nengin: onnx\n")
    result = fruits("run", "--output", str(tmp_path / "out"), "-f", bad)
    assert result.returncode == 2
    assert f"error: {bad}: unknown parameter 'engin'" in result.stderr
    assert "Running" not in result.stdout and not (tmp_path / "out").exists()


@pytest.mark.spark
def test_files_and_p_reach_the_notebook_in_order(tmp_path):
    """papermill injects the resolved values: the input of the later file (it does not exist, so the
    notebook stops at its checks, before Spark), k from -p, seed from the first file."""
    first = write(tmp_path / "first.yaml", f"input_path: {tmp_path / 'first-missing'}\nk: 7\nseed: 3\n")
    second = write(tmp_path / "second.yaml", f"input_path: {tmp_path / 'second-missing'}\nk: 8\n")
    result = fruits("run", "--output", str(tmp_path / "out"), "-f", first, "-f", second, "-p", "k", "9",
                    "--quiet")
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.search(r"failed with InputError: input_path .*second-missing", result.stderr), result.stderr[-2000:]
    scratch = re.search(r"The failed notebook and its report are in (\S+);", result.stderr).group(1)
    executed = next(Path(scratch).glob("*.ipynb"))
    injected = cell(executed, lambda c: "injected-parameters" in c.metadata.get("tags", [])).source
    assignments = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(injected).body}
    assert assignments["k"] == 9 and assignments["seed"] == 3
    assert assignments["input_path"] == str(tmp_path / "second-missing")
    assert set(assignments) == set(params.parameter_defaults(LOCAL_NOTEBOOK_PARAMETERS))
    shutil.rmtree(scratch, ignore_errors=True)

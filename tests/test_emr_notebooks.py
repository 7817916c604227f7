"""``fruits emr upload`` gives each JupyterHub user a notebook that runs as uploaded (moto's S3, no AWS).

Each copy keeps the generated ``parameters`` cell and gets, right after it, the cell
papermill itself injects, setting the bucket's input and an output of the user's own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from fruits.cloud.emr import deploy
from fruits.params import CLOUD_NOTEBOOK_PARAMETERS, RunParams, parameter_defaults
from tests.test_emr import fruits, moto  # noqa: F401 - moto is a fixture used here

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fruits-notebooks-bucket"
SOURCE = ROOT / "notebooks" / "02-featurize-emr.ipynb"


def tagged(notebook, tag: str) -> list[int]:
    return [i for i, cell in enumerate(notebook.cells) if tag in cell.metadata.get("tags", [])]


def values_after_run_all(notebook) -> dict:
    """The parameters a "Run All" leaves in the kernel: the cells up to the injected one, executed in order."""
    scope: dict = {}
    for cell in notebook.cells[:tagged(notebook, "injected-parameters")[0] + 1]:
        if cell.cell_type == "code" and not cell.source.startswith("%%"):  # %%configure is sparkmagic's
            exec(compile(cell.source, "<cell>", "exec"), scope)
    return {name: scope[name] for name in parameter_defaults(CLOUD_NOTEBOOK_PARAMETERS)}


@pytest.fixture(scope="module")
def uploaded(moto):  # noqa: F811 - the imported fixture
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    result = fruits("emr", "upload", "--bucket", BUCKET, "--prefix", "team", "--users", "alice,bob")
    assert result.returncode == 0, result.stderr[-2000:]

    def notebook(user: str):
        body = s3.get_object(Bucket=BUCKET, Key=f"jupyter/{user}/team/02-featurize-emr.ipynb")["Body"].read()
        return nbformat.reads(body.decode(), as_version=4)

    return notebook


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_each_users_notebook_runs_on_the_bucket_and_writes_its_own_output(uploaded, user):
    notebook = uploaded(user)
    nbformat.validate(notebook)
    values = values_after_run_all(notebook)
    assert values["input_path"] == f"s3://{BUCKET}/team/Test"
    assert values["output_dir"] == f"s3://{BUCKET}/team/runs/{user}"
    assert values["weights"] == "imagenet"
    # every other parameter keeps its default, and together they pass the run's checks
    defaults = parameter_defaults(CLOUD_NOTEBOOK_PARAMETERS)
    assert {k: v for k, v in values.items() if k not in ("input_path", "output_dir", "weights")} == {
        k: v for k, v in defaults.items() if k not in ("input_path", "output_dir", "weights")}
    RunParams.from_mapping(values)


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_the_parameters_cell_is_kept_and_the_injected_cell_is_papermills_own(uploaded, user, tmp_path):
    notebook = uploaded(user)
    original = nbformat.read(SOURCE, as_version=4)
    (parameters,) = tagged(notebook, "parameters")
    (injected,) = tagged(notebook, "injected-parameters")
    assert injected == parameters + 1
    assert notebook.cells[parameters].source == original.cells[tagged(original, "parameters")[0]].source
    assert [c.source for i, c in enumerate(notebook.cells) if i != injected] == [c.source for c in original.cells]
    # what a papermill run with these values would inject, byte for byte
    expected = papermill.execute_notebook(str(SOURCE), str(tmp_path / "prepared.ipynb"), prepare_only=True,
                                          progress_bar=False, parameters=notebook.metadata.papermill.parameters)
    (cell,) = [c for c in expected.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert notebook.cells[injected].source == cell.source and notebook.cells[injected].cell_type == "code"
    assert all(isinstance(node, ast.Assign) for node in ast.parse(notebook.cells[injected].source).body)
    # papermill still finds the parameters cell, and a later run replaces the injected cell, not adds one
    path = tmp_path / "uploaded.ipynb"
    nbformat.write(notebook, path)
    assert list(papermill.inspect_notebook(str(path))) == list(parameter_defaults(CLOUD_NOTEBOOK_PARAMETERS))
    rerun = papermill.execute_notebook(str(path), str(tmp_path / "rerun.ipynb"), prepare_only=True,
                                       progress_bar=False, parameters={"k": 7})
    assert len(tagged(rerun, "injected-parameters")) == 1 and "k = 7" in rerun.cells[injected].source


def test_upload_without_users_gives_jovyan_the_configured_notebook(tmp_path):
    plan = deploy.upload_plan(bucket=BUCKET, prefix="fruits", wheel=tmp_path / "fruits_emr-0-py3-none-any.whl",
                              scratch=tmp_path)
    (local,) = [local for local, key in plan if key == "jupyter/jovyan/fruits/02-featurize-emr.ipynb"]
    values = values_after_run_all(nbformat.read(local, as_version=4))
    assert values["output_dir"] == f"s3://{BUCKET}/fruits/runs/jovyan"


def test_the_emr_parameters_file_reads_the_same_images_with_the_same_weights():
    """``params/emr.yaml`` (for ``fruits run -f`` on the primary node) and the uploaded notebooks agree."""
    shipped = yaml.safe_load((ROOT / "params" / "emr.yaml").read_text())
    uploaded = deploy.notebook_parameters(bucket="my-fruits-bucket", prefix="fruits", user="test")
    assert shipped == uploaded

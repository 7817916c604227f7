"""The cloud notebook for real: sparkmagic's PySpark kernel -> the Livy double -> PySpark, run by papermill.

The Livy double (``fruits.cloud.livy``) stands in for EMR's Apache Livy: the real sparkmagic
client talks to it over Livy's REST protocol and every session is a real PySpark
process. The notebook runs unchanged (no cell swapped), as a JupyterHub user runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import papermill
import pytest

from fruits.storage.layout import current_run
from fruits.cloud.livy.client import KERNEL_NAME, sparkmagic_environment
from fruits.cloud.livy.server import LivyDouble
from tests.conftest import copy_slice
from tests.emr_network import prepared_subnet
from tests.test_emr import BUCKET, fruits, moto  # noqa: F401 - moto is a fixture used here

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ROOT / "notebooks" / "02-featurize-emr.ipynb"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def livy(tmp_path_factory):
    """The Livy double on 127.0.0.1, its sessions stopped at the end."""
    with LivyDouble(work_dir=tmp_path_factory.mktemp("livy"), startup_timeout=240) as server:
        yield server


@pytest.fixture
def sparkmagic(livy, tmp_path, monkeypatch):
    """sparkmagic configured for the double, for kernels started by this test (papermill's children)."""
    for name, value in sparkmagic_environment(tmp_path / "sparkmagic", livy.url).items():
        monkeypatch.setenv(name, value)
    return livy


@pytest.fixture(scope="module")
def slice_of_test(real_images, tmp_path_factory) -> Path:
    """3 classes x 6 real Fruits-360 Test images."""
    return copy_slice(real_images / "Test", tmp_path_factory.mktemp("slice") / "Test", classes=3, per_class=6)


def configure_body() -> dict:
    """The session resources the notebook's ``%%configure`` cell asks for."""
    cell = next(c for c in nbformat.read(CLOUD, as_version=4).cells if c.source.startswith("%%configure"))
    return json.loads(cell.source.split("\n", 1)[1])


def conversation(requests: list[dict]) -> Counter:
    """Requests counted by method and endpoint (ids replaced by ``{id}``)."""
    return Counter(f"{r['method']} {re.sub(r'/[0-9]+', '/{id}', r['path'])}" for r in requests)


def figures(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def test_papermill_runs_the_cloud_notebook_unchanged_through_sparkmagic_and_livy(
        sparkmagic, slice_of_test, real_weights, tmp_path):
    livy = sparkmagic
    before = len(livy.requests)
    out = tmp_path / "out"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(CLOUD), str(executed), kernel_name=KERNEL_NAME, progress_bar=False,
                               parameters={"input_path": str(slice_of_test), "output_dir": str(out),
                                           "weights": str(real_weights), "k": 5})
    run = Path(current_run(str(out)))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"]["input"] == manifest["counts"]["featurized"] + manifest["counts"]["rejected"]
    assert manifest["counts"]["featurized"] == 18 and manifest["k"] == 5
    assert not manifest["weights"]["random"]
    import pyarrow.parquet as pq

    assert pq.read_table(run / "features").num_rows == 18 and pq.read_table(run / "pca").num_rows == 18

    notebook = nbformat.read(executed, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME
    figure_cells = [c for c in notebook.cells if c.cell_type == "code" and "%matplot figure" in c.source.splitlines()]
    assert len(figure_cells) == 9  # counts, samples, variance, PCA map, neighbours, k sweep, per class, confused, timings
    for cell in figure_cells:  # each figure came back from Livy as image/png and is in the notebook
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    requests = livy.requests[before:]
    sessions = [r["body"] for r in requests if r["method"] == "POST" and r["path"] == "/sessions"]
    assert sessions == [{**configure_body(), "kind": "pyspark"}]  # the %%configure resources reached Livy
    talk = conversation(requests)
    assert talk["POST /sessions"] == 1 and talk["DELETE /sessions/{id}"] == 1
    assert talk["POST /sessions/{id}/statements"] >= len(figure_cells)
    print("Livy conversation:", dict(talk))


def test_a_failing_statement_fails_the_run_with_its_cell_and_error(livy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous results")
    result = fruits("run", "--livy", livy.url, "--input", str(tmp_path / "no-such-folder"), "--output", str(out),
                    "-p", "weights", "random", "--quiet")
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.search(r"error: cell \d+ failed with \w+", result.stderr)
    assert "no-such-folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_livy_run_refuses_an_unreachable_server_before_starting(tmp_path):
    result = fruits("run", "--livy", "http://127.0.0.1:9", "--input", str(tmp_path), "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "no Livy server answers at http://127.0.0.1:9" in result.stderr


@pytest.fixture(scope="module")
def uploaded(moto):  # noqa: F811 - the imported fixture
    """The project uploaded to a moto bucket by ``fruits emr upload``."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    result = fruits("emr", "upload", "--bucket", BUCKET)
    assert result.returncode == 0, result.stderr[-2000:]
    return BUCKET


def test_jupyterhub_contents_manager_lists_and_opens_the_cloud_notebook(uploaded, moto):  # noqa: F811
    """s3contents (the S3 ContentsManager of EMR's JupyterHub) sees what JupyterHub's user jovyan would."""
    from s3contents import S3ContentsManager

    manager = S3ContentsManager(bucket=uploaded, prefix="jupyter/jovyan", endpoint_url=moto,
                                access_key_id="testing", secret_access_key="testing", region_name="eu-west-3")
    root = manager.get("")
    assert [(item["name"], item["type"]) for item in root["content"]] == [("fruits", "directory")]
    folder = manager.get("fruits")
    assert [item["name"] for item in folder["content"]] == ["02-featurize-emr.ipynb"]
    notebook = manager.get("fruits/02-featurize-emr.ipynb")
    assert notebook["type"] == "notebook"
    assert notebook["content"]["metadata"]["kernelspec"]["name"] == KERNEL_NAME


def test_fruits_emr_run_end_to_end_on_moto_and_the_livy_double(uploaded, livy, slice_of_test, real_weights):
    """``fruits emr run`` adds a step (moto); its exact command then runs here, the double as the cluster's Livy."""
    import boto3
    import s3fs

    s3 = boto3.client("s3")
    for path in slice_of_test.rglob("*.jpg"):
        s3.upload_file(str(path), uploaded, f"images/{path.relative_to(slice_of_test).as_posix()}")
    created = fruits("emr", "create-cluster", "--bucket", uploaded, "--subnet-id", prepared_subnet())
    assert created.returncode == 0, created.stderr[-2000:]
    cluster_id = created.stdout.split()[1]
    output = f"s3://{uploaded}/runs/emr"
    added = fruits("emr", "run", "--cluster-id", cluster_id, "--bucket", uploaded, "--input",
                   f"s3://{uploaded}/images", "--output", output, "-p", "weights", str(real_weights), "-p", "k", "4")
    assert added.returncode == 0, added.stderr[-2000:]
    steps = boto3.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert len(steps) == 1
    command = steps[0]["Config"]["Args"]
    assert command[:2] == ["bash", "-c"] and steps[0]["Config"]["Jar"] == "command-runner.jar"

    step = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, "FRUITS_PYTHON": sys.executable, "FRUITS_LIVY_URL": livy.url})
    assert step.returncode == 0, step.stderr[-4000:]
    fs = s3fs.S3FileSystem()
    run = current_run(output)
    manifest = json.loads(fs.cat_file(f"{run}/manifest.json"))
    assert manifest["counts"]["featurized"] == 18 and manifest["input_path"] == f"s3://{uploaded}/images"
    notebook = nbformat.reads(fs.cat_file(f"{run}/notebook.ipynb").decode(), as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME and figures(notebook) == 9
    report = fs.cat_file(f"{run}/report.html").decode()
    assert report.count("data:image/png;base64,") >= 9
    assert 'id="fruits-map-plot"' in report and "could not be built" not in report  # read back from S3 at render time


def wait_for(condition, *, timeout: float, what: str):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_lost_livy_session_fails_the_run_by_name_and_leaves_the_output(where, livy, tmp_path, request):
    """The session's driver dies mid-featurization (OOM, preemption): the run fails naming it; outputs stay."""
    import time

    from fruits.run.demo_data import generate_demo_images

    images = generate_demo_images(tmp_path / "images", per_class=40, seed=3)
    previous = {"manifest.json": b'{"run": "previous"}', "features/part-0.parquet": b"previous rows"}
    if where == "local":
        output = tmp_path / "out"
        for name, data in previous.items():
            (output / name).parent.mkdir(parents=True, exist_ok=True)
            (output / name).write_bytes(data)
        input_path, output_uri = str(images), str(output)

        def published():  # what readers resolve: the pointer if any, else the files of the old layout
            return {str(p.relative_to(output)): p.read_bytes() for p in output.rglob("*")
                    if p.is_file() and p.relative_to(output).parts[0] not in ("runs",)
                    and not p.relative_to(output).parts[0].startswith(".")}
    else:
        request.getfixturevalue("moto")
        import boto3
        import s3fs

        s3 = boto3.client("s3")
        bucket = "fruits-lost-session"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        for path in images.rglob("*.jpg"):
            s3.upload_file(str(path), bucket, f"images/{path.relative_to(images).as_posix()}")
        for name, data in previous.items():
            s3.put_object(Bucket=bucket, Key=f"out/{name}", Body=data)
        input_path, output_uri = f"s3://{bucket}/images", f"s3://{bucket}/out"
        fs = s3fs.S3FileSystem()

        def published():
            fs.invalidate_cache()
            return {key.split("/out/", 1)[1]: fs.cat_file(key) for key in fs.find(f"{bucket}/out")
                    if not key.split("/out/", 1)[1].startswith((".", "runs/"))}

    before = len(livy.requests)
    run = subprocess.Popen([sys.executable, "-m", "fruits.cli", "run", "--livy", livy.url, "--input", input_path,
                            "--output", output_uri, "-p", "weights", "random", "-p", "mode", "overwrite",
                            "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def featurizing():
            if run.poll() is not None:
                raise AssertionError(f"the run ended before featurizing: {run.communicate()[1][-3000:]}")
            for r in livy.requests[before:]:
                if r["method"] == "POST" and r["path"].endswith("/statements") and "execute(spark" in r["body"]["code"]:
                    session = livy.sessions.get(int(r["path"].split("/")[2]))
                    if session and session.running and "execute(spark" in session.running.code:
                        return session
            return None

        session_id = wait_for(featurizing, timeout=300, what="the featurization statement to run").id
        time.sleep(2)
        livy.kill_driver(session_id)
        _, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, stderr[-3000:]
    assert f"session {session_id} is dead" in stderr and "failed with" in stderr, stderr[-3000:]
    assert published() == previous  # the previous run, still the current one: no pointer, same files



def test_emr_doctor_checks_a_cluster_through_livy(uploaded, livy):
    """Against the local stack (moto bucket, the Livy double as the cluster's Livy): all pass; a bad bucket fails."""
    healthy = fruits("emr", "doctor", "--bucket", uploaded, "--livy", livy.url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr[-3000:]
    verdicts = [line for line in healthy.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 9 and all(line.startswith("PASS") for line in verdicts), healthy.stdout
    assert "1 image -> 1280 features on an executor" in healthy.stdout and "All checks passed." in healthy.stdout

    broken = fruits("emr", "doctor", "--bucket", "no-such-fruits-bucket", "--livy", livy.url)
    assert broken.returncode == 1
    failed = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2 and all("no-such-fruits-bucket" in line for line in failed), broken.stdout

    nobody = fruits("emr", "doctor", "--bucket", uploaded, "--livy", "http://127.0.0.1:9")
    assert nobody.returncode == 1 and "FAIL  Livy answers at http://127.0.0.1:9" in nobody.stdout

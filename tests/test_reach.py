"""Paths only the driver sees are refused before Spark starts, off ``local[N]`` (``fruits.storage.reach``)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fruits.params import RunParams
from fruits.storage.reach import UnreachablePath, check_reach, master_of, shared_folders

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "spark://10.0.0.5:7077"


def refusal(values: dict, master: str = CLUSTER) -> str:
    with pytest.raises(UnreachablePath) as raised:
        check_reach(values, master)
    return str(raised.value)


@pytest.mark.parametrize("master", ["local[2]", "local", "local[*]", "local-cluster[2,1,1024]"])
def test_a_local_master_accepts_every_path_and_the_demo(master):
    check_reach({"input_path": "images", "output_dir": "/data/out", "train_path": "file:///data/train"}, master)
    check_reach({"input_path": None, "output_dir": "output/demo"}, master)


@pytest.mark.parametrize("master", [CLUSTER, "yarn", "k8s://https://10.0.0.1:443"])
def test_remote_stores_are_reached_by_every_executor(master):
    check_reach({"input_path": "s3://b/fruits/Test", "output_dir": "hdfs://nn:8020/runs",
                 "train_path": "s3a://b/fruits/Training"}, master)


def test_a_local_path_is_refused_naming_the_parameter_and_why():
    message = refusal({"input_path": "/data/Test", "output_dir": "s3://b/out"})
    assert "input_path '/data/Test' is on the driver's disk" in message and "output_dir" not in message
    assert "spark://10.0.0.5:7077" in message and "shared_paths" in message and "docs/emr-paths.md" in message


def test_a_relative_path_is_refused_saying_spark_and_python_disagree():
    message = refusal({"input_path": "s3://b/Test", "output_dir": "output/demo"}, "yarn")
    assert "output_dir 'output/demo' is relative" in message and "HDFS" in message and "working folder" in message


def test_a_file_uri_and_a_local_train_path_are_refused_too():
    message = refusal({"input_path": "file:///data/Test", "output_dir": "s3://b/out", "train_path": "/data/Training"})
    assert "input_path 'file:///data/Test'" in message and "train_path '/data/Training'" in message


def test_local_paths_under_a_declared_shared_mount_are_accepted():
    shared = {"shared_paths": "/mnt/efs, /shared/nfs/"}
    check_reach({**shared, "input_path": "/mnt/efs/fruits/Test", "output_dir": "file:///shared/nfs/runs"}, CLUSTER)
    check_reach({**shared, "input_path": "/mnt/efs", "output_dir": "/mnt/efs/fruits/../runs"}, CLUSTER)
    message = refusal({**shared, "input_path": "/mnt/efs-other/Test", "output_dir": "/mnt/efs/../data/runs"})
    assert "input_path '/mnt/efs-other/Test'" in message and "output_dir '/mnt/efs/../data/runs'" in message


def test_the_demo_is_refused_unless_its_images_are_on_a_shared_mount(monkeypatch, tmp_path):
    monkeypatch.setenv("FRUITS_DEMO_DATA", str(tmp_path / "demo"))
    message = refusal({"input_path": None, "output_dir": "s3://b/out"})
    assert "input_path is None" in message and "demo" in message and str(tmp_path / "demo") in message
    check_reach({"input_path": None, "output_dir": "s3://b/out", "shared_paths": str(tmp_path)}, CLUSTER)


@pytest.mark.parametrize("bad", ["relative/dir", "s3://b/shared", "/mnt/efs,,/x", " "])
def test_shared_paths_must_be_absolute_local_folders(bad):
    with pytest.raises(ValueError, match="shared_paths"):
        RunParams(shared_paths=bad).validate()
    assert shared_folders("/mnt/efs") == ["/mnt/efs"]


def test_run_params_are_checked_as_a_mapping_and_the_master_comes_from_the_notebook():
    with pytest.raises(UnreachablePath):
        check_reach(RunParams(input_path="/data/Test", output_dir="s3://b/out"), "yarn")

    class Context:
        master = "yarn"

    class Session:
        sparkContext = Context()

    assert master_of({"master": "local[2]", "spark": Session()}) == "local[2]"  # the local notebook
    assert master_of({"spark": Session()}) == "yarn"  # the PySpark (Livy) kernel
    with pytest.raises(ValueError, match="master"):
        master_of({})


@pytest.fixture
def silent_master():
    """A port that listens like a Spark master and records whether anything ever connected."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)

        def contacted() -> bool:
            try:
                listener.accept()[0].close()
                return True
            except socket.timeout:
                return False

        yield f"spark://127.0.0.1:{listener.getsockname()[1]}", contacted


def test_fruits_run_refuses_a_local_input_for_a_cluster_master_before_spark_starts(tmp_path, silent_master):
    master, contacted = silent_master
    images, output = tmp_path / "images", tmp_path / "out"
    (images / "apple").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "fruits.cli", "run", "--input", str(images), "--output",
                             str(output), "-p", "master", master, "-p", "weights", "random"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"input_path '{images}' is on the driver's disk" in result.stderr
    assert f"output_dir '{output}' is on the driver's disk" in result.stderr
    assert "Running" not in result.stdout and not output.exists()  # no kernel, no notebook, nothing written
    assert not contacted()


def test_the_local_notebook_refuses_in_its_checks_cell_before_its_session_cell(tmp_path, silent_master):
    """papermill straight on the notebook (no CLI check): the refusal is the prepare cell's, Spark never starts."""
    import nbformat
    import papermill

    master, contacted = silent_master
    executed = tmp_path / "executed.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(str(ROOT / "notebooks" / "01-featurize-local.ipynb"), str(executed),
                                   kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                                   parameters={"master": master, "weights": "random",
                                               "output_dir": str(tmp_path / "out")})
    assert raised.value.ename == "UnreachablePath" and "input_path is None" in raised.value.evalue
    cells = nbformat.read(executed, as_version=4).cells
    session = next(c for c in cells if "session" in c.metadata.get("tags", []))
    assert session.execution_count is None  # the session cell never ran
    assert not (tmp_path / "out").exists() and not contacted()


def test_fruits_emr_run_refuses_a_local_input_before_submitting_a_step(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fruits.cli", "emr", "run", "--cluster-id", "j-TEST", "--bucket",
                             "fruits-test-bucket", "--input", str(tmp_path), "--output", "s3://fruits-test-bucket/runs",
                             "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"input_path '{tmp_path}' is on the driver's disk" in result.stderr

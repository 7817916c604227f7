"""The local kernel ends soon after its last cell, and its Spark JVM ends cleanly after it.

``execute_notebook`` gives the local kernel half a second to end instead of jupyter_client's
five (see ``fruits.run.notebook._quick_shutdown_manager``): asked to stop, the kernel
sent SIGTERM to the Spark JVM and slept until jupyter_client's own SIGTERM, 2.6 s later.
The JVM must still finish its shutdown hooks, which stop Spark and delete its temporary
folders: killing the kernel's whole process group at once (papermill's "immediate"
shutdown) left a ``spark-*`` and a ``blockmgr-*`` folder behind after every run. This
test checks that nothing is left running and nothing is left in Spark's local folder.
"""

from __future__ import annotations

import time

import pytest

from fruits.run.notebook import execute_notebook

pytestmark = pytest.mark.spark

NOTEBOOK = '''# %%
import os
from fruits.spark.session import local_spark

spark = local_spark("local[1]")
assert spark.range(5).count() == 5
print("PIDS", os.getpid(), spark.sparkContext._gateway.proc.pid)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_kernel_and_its_spark_jvm_end_and_leave_no_temporary_folder(tmp_path, monkeypatch):
    local_dirs = tmp_path / "spark-local"
    local_dirs.mkdir()
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(local_dirs))  # the kernel's JVM puts its folders here
    source = tmp_path / "spark-notebook.py"
    source.write_text(NOTEBOOK)
    executed = tmp_path / "executed.ipynb"
    execute_notebook(str(source), str(executed), {}, cwd=str(tmp_path), log_output=False)

    import nbformat

    text = "".join(output.get("text", "") for cell in nbformat.read(executed, as_version=4).cells
                   for output in cell.get("outputs", []))
    kernel, jvm = (int(value) for value in text.split("PIDS", 1)[1].split()[:2])
    assert not _alive(kernel)
    deadline = time.monotonic() + 60
    while _alive(jvm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(jvm), f"the Spark JVM {jvm} still runs a minute after its kernel ended"
    assert sorted(path.name for path in local_dirs.iterdir()) == []

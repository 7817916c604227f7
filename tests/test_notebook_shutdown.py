"""The local kernel ends at once after its last cell, and takes its Spark JVM with it.

``execute_notebook`` kills the local kernel instead of asking it to stop: asked, the kernel
sends SIGTERM to its children (the Spark JVM) and waits for them by growing sleeps, so a
run waited 2.6 s for the JVM's shutdown hooks and then for jupyter_client's own SIGTERM.
Killed, the kernel closes the JVM's standard input, on which PySpark's JVM exits by
itself, running the same hooks. This test checks that nothing is left running.
"""

from __future__ import annotations

import os
import time

import pytest

from fruits.report.notebook_run import execute_notebook

pytestmark = pytest.mark.spark

NOTEBOOK = '''# %%
import os
from fruits.session import local_spark

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


def test_kernel_and_its_spark_jvm_are_gone_after_the_run(tmp_path):
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
    assert jvm != os.getpid()
